//! Carrying the image's identity across. An import keeps only `name` (docs-cloud-images, import
//! task: "Including any other property will cause the operation to fail"), so once the imported
//! image is active imgferry copies the source image's user-settable properties onto it with
//! Glance's JSON patch (`PATCH /v2/images/{id}`), and adds two of its own: where the image came
//! from and which migration moved it. cloud-image-transfer.sh re-applies `os_distro` for the same
//! reason: managed-service automation reads it.
//!
//! Then, whatever was restored, the image must carry `vm_mode`: XenServer starts an image without
//! it as PV, and a PVHVM guest then fails in its bootloader while Nova reports ACTIVE
//! (rackerlabs/support-how-to `content/cloud-images/preparing-an-image-for-import-into-the-
//! rackspace-opencloud.md`; nova `nova/virt/xenapi/vm_utils.py` `determine_vm_mode`).
//!
//! Idempotent: the imported image is read first and a property already holding the value is left
//! alone, so a resumed run adds nothing twice (`add` of an existing property is a 409 in Glance).
//! A property the service refuses (400, 403, 409, 413: malformed, reserved, in conflict, over the
//! property quota) is a warning listed in the report, and the others are still restored.

use serde_json::{Map, Value, json};

use super::state::Migration;
use super::{Ctx, Error, Event};

/// The property imgferry sets to `<region>/<image id>` of the source image.
pub const SOURCE_KEY: &str = "imgferry_source";
/// The property imgferry sets to the migration id.
pub const MIGRATION_KEY: &str = "imgferry_migration";
/// XenServer's virtualisation mode of the image: `hvm` or `xen` (PV).
pub const VM_MODE_KEY: &str = "vm_mode";
/// The `vm_mode` set when neither the source image nor `--vm-mode` gives one: every current
/// Rackspace Linux and Windows image is PVHVM (openstacksdk `openstack/config/vendors/
/// rackspace.json` sets `vm_mode: hvm` on every image it imports).
pub const DEFAULT_VM_MODE: &str = "hvm";

/// What Glance and Nova manage themselves, and what Rackspace reserves (add and replace answer
/// 403: `os_type`, `image_type`, `user_id`, `owner`, `location`; openstack-archive/cloudroast
/// `cloudroast/glance/generators.py`): never sent.
const MANAGED: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "tags",
    "created_at",
    "updated_at",
    "file",
    "self",
    "schema",
    "container_format",
    "disk_format",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "owner",
    "locations",
    "location",
    "direct_url",
    "stores",
    "image_type",
    "os_type",
    "instance_uuid",
    "base_image_ref",
    "user_id",
    "owner_id",
    "image_location",
    "image_state",
];

/// The properties XenServer boots by: restored before all others.
const BOOT_KEYS: &[&str] = &[VM_MODE_KEY, "img_config_drive"];

/// Core attributes a user may set that hold integers (GB and MB).
const INTEGERS: &[&str] = &["min_disk", "min_ram"];

/// The properties of `source` a user may set: string values, not managed or reserved, not
/// Rackspace's protected `com.rackspace*` ones, not Nova's `instance_type_*` bookkeeping; and
/// `min_disk`/`min_ram` when they are above zero.
pub fn restorable(source: &Map<String, Value>) -> Vec<(String, Value)> {
    source
        .iter()
        .filter(|(k, _)| {
            !MANAGED.contains(&k.as_str())
                && !k.starts_with("com.rackspace")
                && !k.starts_with("instance_type_")
        })
        .filter_map(|(k, v)| {
            if INTEGERS.contains(&k.as_str()) {
                v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), json!(n)))
            } else {
                v.as_str().map(|s| (k.clone(), json!(s)))
            }
        })
        .collect()
}

/// The JSON Pointer (RFC 6901) of a top-level property: `~` is written `~0` and `/` is `~1`.
pub fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// Sets one property unless `current` already has it. The PATCH is not retried blindly (an `add`
/// that went through answers 409 the second time); after a failure that leaves it unknown whether
/// the service acted (a timeout, a cut connection), the image is read again and the patch made
/// from what it has now, up to three times. A refusal by the service is returned as it is.
async fn set_property(
    images: &crate::api::images::Images,
    image: &str,
    current: &Map<String, Value>,
    key: &str,
    value: &Value,
) -> Result<(), crate::api::Error> {
    let mut has = current.get(key).cloned();
    let mut attempt = 0;
    loop {
        if has.as_ref() == Some(value) {
            return Ok(());
        }
        let op = if has.is_some() { "replace" } else { "add" };
        let patch = json!([{"op": op, "path": pointer(key), "value": value}]);
        attempt += 1;
        match images.patch_image(image, &patch).await {
            Ok(()) => return Ok(()),
            Err(e @ crate::api::Error::Service { .. }) => return Err(e),
            Err(e) if attempt >= 3 => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, key, "a property PATCH ended unknown; reading the image again");
                let now = images
                    .get_image_properties(image)
                    .await?
                    .unwrap_or_default();
                has = now.get(key).cloned();
            }
        }
    }
}

/// Whether the service refused one property in a way that concerns that property alone: a
/// malformed or reserved name, a conflict, or the property quota (Glance's 413).
/// A 413 reaches here as an unretried HTTP error: Nova uses 413 for rate limits, so the HTTP layer
/// does not take it as final, and a PATCH is never re-sent blindly.
fn refused_alone(e: &crate::api::Error) -> Option<(u16, String)> {
    match e {
        crate::api::Error::Service {
            status: status @ (400 | 403 | 409 | 413),
            message,
            ..
        } => Some((*status, message.clone())),
        crate::api::Error::Conflict { message, .. } => Some((409, message.clone())),
        crate::api::Error::Http(h) if h.status == Some(413) => {
            Some((413, crate::api::short_message(&h.body)))
        }
        _ => None,
    }
}

/// What the imported image gets once it is active: the source image's properties (unless
/// `--no-restore-properties`), then `vm_mode` if it still has none. The image is read once; what
/// each PATCH sets is kept in that copy.
pub async fn apply(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let imported = m.facts.imported_image.clone().ok_or(Error::Invariant(
        "setting properties without an imported image",
    ))?;
    let mut current = ctx
        .dst()?
        .images
        .get_image_properties(&imported)
        .await?
        .unwrap_or_default();
    if m.plan.restore_properties {
        restore(ctx, m, &imported, &mut current).await?;
    }
    // Never an image without vm_mode, and never a boot of one.
    ensure_vm_mode(ctx, m, &imported, &current).await
}

/// Properties of an OpenStack image that only a KVM cloud understands, never carried to a legacy
/// region: every `hw_*` (libvirt's device model), and the hypervisor type and version Nova's
/// `ImagePropertiesFilter` schedules by (`img_hv_type`, `hypervisor_type`,
/// `img_hv_requested_version`; openstack/nova `nova/scheduler/filters/image_props_filter.py`):
/// `qemu` or `kvm` there would leave no XenServer host able to boot the image.
pub fn for_xen(props: Vec<(String, Value)>) -> (Vec<(String, Value)>, Vec<String>) {
    let kvm_only = |k: &str| {
        k.starts_with("hw_")
            || matches!(
                k,
                "img_hv_type" | "hypervisor_type" | "img_hv_requested_version"
            )
    };
    let (gone, kept): (Vec<_>, Vec<_>) = props.into_iter().partition(|(k, _)| kvm_only(k));
    (kept, gone.into_iter().map(|(k, _)| k).collect())
}

/// Copies the source image's properties and imgferry's two onto the imported image, whose
/// properties are `current` (updated with what is set).
async fn restore(
    ctx: &Ctx,
    m: &mut Migration,
    imported: &str,
    current: &mut Map<String, Value>,
) -> Result<(), Error> {
    let mut wanted = Vec::new();
    if let (Some(src), Some(image)) = (ctx.src.as_ref(), m.facts.source_image.clone()) {
        if let Some(props) = src.images.get_image_properties(&image).await? {
            wanted = restorable(&props);
        }
        // What the guest needs to boot goes first, before a property quota can fill up.
        wanted.sort_by_key(|(k, _)| !BOOT_KEYS.contains(&k.as_str()));
        wanted.push((SOURCE_KEY.into(), json!(format!("{}/{image}", src.name))));
    }
    if let (Some(src), Some(image)) = (ctx.src_cloud.as_ref(), m.facts.source_image.clone()) {
        if let Some(source) = src.glance.get(&image).await? {
            let (kept, dropped) = for_xen(restorable(&source.rest));
            wanted = kept;
            m.facts.dropped_properties = dropped;
        }
        wanted.push((SOURCE_KEY.into(), json!(format!("{}/{image}", src.name))));
    }
    wanted.push((MIGRATION_KEY.into(), json!(m.id)));
    let (mut restored, mut refused) = (Vec::new(), Vec::new());
    for (key, value) in wanted {
        match set_property(&ctx.dst()?.images, imported, current, &key, &value).await {
            Ok(()) => {
                current.insert(key.clone(), value);
                restored.push(key);
            }
            Err(e) => match refused_alone(&e) {
                Some((status, message)) => {
                    ctx.emit(Event::Warning {
                        message: format!(
                            "the image service refused property {} ({status}): {}",
                            crate::text::escape_controls(&key),
                            crate::text::escape_controls(&message)
                        ),
                    });
                    refused.push(key);
                }
                None => return Err(e.into()),
            },
        }
    }
    m.facts.restored_properties = restored;
    m.facts.refused_properties = refused;
    Ok(())
}

/// Makes sure the imported image carries `vm_mode`: kept when it has one (restored from the
/// source image), else set from `--vm-mode` or [`DEFAULT_VM_MODE`]. Records the mode and where
/// it came from. A refusal is an error when a boot follows (the guest could not start; the boot
/// is not attempted), and a warning otherwise.
async fn ensure_vm_mode(
    ctx: &Ctx,
    m: &mut Migration,
    imported: &str,
    current: &Map<String, Value>,
) -> Result<(), Error> {
    if let Some(mode) = current
        .get(VM_MODE_KEY)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        let from = if m.plan.restore_properties && m.facts.source_image.is_some() {
            "the source image"
        } else {
            "the image"
        };
        m.facts.vm_mode = Some((mode.to_string(), from.to_string()));
        return Ok(());
    }
    let (mode, from) = match &m.plan.vm_mode {
        Some(mode) => (mode.clone(), "--vm-mode"),
        None => (DEFAULT_VM_MODE.to_string(), "the default (--vm-mode)"),
    };
    match set_property(
        &ctx.dst()?.images,
        imported,
        current,
        VM_MODE_KEY,
        &json!(mode),
    )
    .await
    {
        Ok(()) => {
            m.facts.vm_mode = Some((mode, from.to_string()));
            Ok(())
        }
        Err(e) => {
            let Some((status, message)) = refused_alone(&e) else {
                return Err(e.into());
            };
            let what = format!(
                "the image service refused to set vm_mode={mode} on image {imported} ({status}: \
                 {message}); XenServer starts an image without vm_mode as PV, and a PVHVM guest \
                 then fails in its bootloader"
            );
            if m.plan.boot.is_some() {
                return Err(Error::Unbootable(format!(
                    "{what}; the boot was not attempted\n  what to do: set it yourself \
                     (`glance image-update --property vm_mode={mode} {imported}`) and run \
                     `imgferry resume {}`",
                    m.id
                )));
            }
            ctx.emit(Event::Warning {
                message: format!("{what}; set vm_mode before booting from it"),
            });
            m.facts.refused_properties.push(VM_MODE_KEY.into());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_settable_properties_are_copied() {
        let source = json!({
            "id": "x", "name": "web", "status": "active", "min_disk": 40, "owner": "1",
            "os_distro": "ubuntu", "org.openstack__1__os_distro": "org.ubuntu",
            "com.rackspace__1__options": "0", "instance_uuid": "s", "image_type": "snapshot",
            "instance_type_flavorid": "general1-2", "team": "web", "tags": [],
        });
        let mut got = restorable(source.as_object().unwrap());
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "min_disk",
                "org.openstack__1__os_distro",
                "os_distro",
                "team"
            ]
        );
        assert_eq!(got[0].1, json!(40), "min_disk stays an integer");
    }

    #[test]
    fn reserved_properties_are_never_sent() {
        let source = json!({"os_type": "linux", "image_type": "base", "user_id": "u",
            "owner": "1", "location": "x", "vm_mode": "hvm", "min_ram": 0});
        let got = restorable(source.as_object().unwrap());
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["vm_mode"]);
    }

    #[test]
    fn property_names_become_json_pointers() {
        assert_eq!(pointer("a/b"), "/a~1b");
        assert_eq!(pointer("x~0y"), "/x~00y");
        assert_eq!(pointer("~/"), "/~0~1");
        assert_eq!(pointer("os_distro"), "/os_distro");
    }
}
