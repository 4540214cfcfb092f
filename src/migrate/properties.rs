//! Carrying the image's identity across. An import keeps only `name` (docs-cloud-images, import
//! task: "Including any other property will cause the operation to fail"), so once the imported
//! image is active imgferry copies the source image's user-settable properties onto it with
//! Glance's JSON patch (`PATCH /v2/images/{id}`), and adds two of its own: where the image came
//! from and which migration moved it. cloud-image-transfer.sh re-applies `os_distro` for the same
//! reason: managed-service automation reads it.
//!
//! Idempotent: the imported image is read first and a property already holding the value is left
//! alone, so a resumed run adds nothing twice (`add` of an existing property is a 409 in Glance).
//! A property the service refuses (403: protected or read-only) is a warning, not a failure.

use serde_json::{Map, Value, json};

use super::state::Migration;
use super::{Ctx, Error, Event};

/// The property imgferry sets to `<region>/<image id>` of the source image.
pub const SOURCE_KEY: &str = "imgferry_source";
/// The property imgferry sets to the migration id.
pub const MIGRATION_KEY: &str = "imgferry_migration";

/// What Glance and Nova manage themselves: never copied.
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
    "min_disk",
    "min_ram",
    "owner",
    "locations",
    "direct_url",
    "stores",
    "image_type",
    "instance_uuid",
    "base_image_ref",
    "user_id",
    "owner_id",
    "image_location",
    "image_state",
];

/// The properties of `source` a user may set: string values, not managed, not Rackspace's
/// protected `com.rackspace*` ones, not Nova's `instance_type_*` bookkeeping.
pub fn restorable(source: &Map<String, Value>) -> Vec<(String, String)> {
    source
        .iter()
        .filter(|(k, _)| {
            !MANAGED.contains(&k.as_str())
                && !k.starts_with("com.rackspace")
                && !k.starts_with("instance_type_")
        })
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// Sets one property unless `current` already has it. The PATCH is not retried blindly (an `add`
/// that went through answers 409 the second time); after a failure that leaves it unknown whether
/// the service acted (a timeout, a cut connection), the image is read again and the patch made
/// from what it has now, up to three times. A refusal by the service is returned as it is.
async fn set_property(
    ctx: &Ctx,
    image: &str,
    current: &Map<String, Value>,
    key: &str,
    value: &str,
) -> Result<(), crate::api::Error> {
    let mut has = current.get(key).and_then(Value::as_str).map(str::to_string);
    let mut present = current.contains_key(key);
    let mut attempt = 0;
    loop {
        if has.as_deref() == Some(value) {
            return Ok(());
        }
        let op = if present { "replace" } else { "add" };
        let patch = json!([{"op": op, "path": format!("/{key}"), "value": value}]);
        attempt += 1;
        match ctx.dst.images.patch_image(image, &patch).await {
            Ok(()) => return Ok(()),
            Err(e @ crate::api::Error::Service { .. }) => return Err(e),
            Err(e) if attempt >= 3 => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, key, "a property PATCH ended unknown; reading the image again");
                let now = ctx
                    .dst
                    .images
                    .get_image_properties(image)
                    .await?
                    .unwrap_or_default();
                has = now.get(key).and_then(Value::as_str).map(str::to_string);
                present = now.contains_key(key);
            }
        }
    }
}

/// Copies the source image's properties and imgferry's two onto the imported image.
pub async fn restore(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let imported = m.facts.imported_image.clone().ok_or(Error::Invariant(
        "restoring properties without an imported image",
    ))?;
    let mut wanted = Vec::new();
    if let (Some(src), Some(image)) = (ctx.src.as_ref(), m.facts.source_image.clone()) {
        if let Some(props) = src.images.get_image_properties(&image).await? {
            wanted = restorable(&props);
        }
        wanted.push((SOURCE_KEY.into(), format!("{}/{image}", src.name)));
    }
    wanted.push((MIGRATION_KEY.into(), m.id.clone()));
    let current = ctx
        .dst
        .images
        .get_image_properties(&imported)
        .await?
        .unwrap_or_default();
    let (mut restored, mut refused) = (Vec::new(), Vec::new());
    for (key, value) in wanted {
        match set_property(ctx, &imported, &current, &key, &value).await {
            Ok(()) => restored.push(key),
            Err(crate::api::Error::Service {
                status: 403,
                message,
                ..
            }) => {
                ctx.emit(Event::Warning {
                    message: format!("the image service refused property {key}: {message}"),
                });
                refused.push(key);
            }
            Err(e) => return Err(e.into()),
        }
    }
    m.facts.restored_properties = restored;
    m.facts.refused_properties = refused;
    Ok(())
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
        got.sort();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["org.openstack__1__os_distro", "os_distro", "team"]);
    }
}
