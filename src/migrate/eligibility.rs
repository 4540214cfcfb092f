//! What the cloud will refuse late, refused early: before imaging, and in `--dry-run`. Each rule
//! names its source (docs/real-cloud.md) and what to do instead; a refusal is final (exit 3).
//!
//! - Only the owner may export an image, and not one whose `com.rackspace__1__options` is not
//!   "0" (licensed: Windows, Red Hat). Cloud Images FAQ (rackerlabs/rackspace-how-to
//!   `content/cloud-images/cloud-images-faq.md`); the service's own refusals are in
//!   openstack-archive/cloudcafe `cloudcafe/glance/common/constants.py`.
//! - A server that boots from a volume has no system disk in its image ("Cloud server images do
//!   not include Cloud Block Storage volumes … even if the volume is used as the boot volume",
//!   Rackspace's cloud-server-image-limitations page); createImage is not offered for OnMetal
//!   (docs-cloud-servers createImage).
//! - Compute v1 and Memory v1 flavors have no local disk and "must be booted from volume",
//!   image-based builds are not supported (docs-cloud-servers boot-from-volume); any flavor's disk
//!   must hold the image (Nova's `FlavorDiskSmallerThanImage`).

use super::state::{Entry, Plan};
use super::{Ctx, Error};
use crate::api::identity::IMAGE_ADMIN_ROLES;
use crate::api::images::{self, Image};

const FAQ: &str = "Cloud Images FAQ (rackspace-how-to cloud-images-faq.md)";
const LIMITS: &str = "Rackspace's cloud server image limitations (docs.rackspace.com)";
const CREATE_IMAGE: &str = "Cloud Servers API, createImage (docs-cloud-servers)";
const BFV: &str = "Cloud Servers API, boot from volume (docs-cloud-servers)";
const NOVA: &str = "OpenStack Nova, FlavorDiskSmallerThanImage";
const CLOUDCAFE: &str = "Rackspace's export refusals (openstack-archive/cloudcafe glance constants.py), Cloud Images FAQ";
const MIMIC: &str = "Rackspace's flavor_classes image property (rackerlabs/mimic rackspace_images.py); enforcement assumed";

fn refused(rule: String, source: &'static str, advice: &str) -> Error {
    Error::Refused {
        rule,
        from: source,
        advice: advice.to_string(),
    }
}

/// Checks the account's roles, the source and the boot flavor of `plan` against the rules above.
/// Returns what it saw of the source ("server … (web-1) is ACTIVE"), for the dry run to show.
pub async fn check(ctx: &Ctx, plan: &Plan) -> Result<Option<String>, Error> {
    check_roles(ctx, plan)?;
    servicenet_reachable(ctx, plan).await?;
    let (seen, source) = match &plan.entry {
        Entry::Server { id } => {
            let (seen, source) = check_server(ctx, id).await?;
            (Some(seen), source)
        }
        Entry::Image { id } | Entry::CreateServer { image: id, .. } => {
            // Only an image exported as it is must be the account's own.
            let owned = matches!(plan.entry, Entry::Image { .. });
            let i = image(ctx, id, owned).await?;
            let seen = format!(
                "image {id} ({}) is {}",
                i.name.as_deref().unwrap_or_default(),
                i.status
            );
            let disk_gb = i.min_disk.filter(|d| *d > 0 && owned);
            let what = format!("image {id} has min_disk {} GB", disk_gb.unwrap_or_default());
            let source = Source {
                disk_gb,
                what,
                image: Some(i),
            };
            (Some(seen), source)
        }
        Entry::Export { .. } | Entry::Vhd { .. } => (None, Source::default()),
    };
    if let Some(gb) = source.disk_gb
        && plan.to_file.is_none()
    {
        importable(ctx, plan, gb, &source.what)?;
    }
    if let Some(flavor) = plan.boot.as_ref().filter(|_| plan.to_cloud.is_none()) {
        // A boot in an OpenStack cloud is checked against its Nova (`cloud_boot::check`).
        check_boot(ctx, flavor, source.disk_gb.map(|gb| gb << 30)).await?;
        if let Some(image) = &source.image {
            boot_class(ctx, plan, flavor, image)?;
        }
    }
    Ok(seen)
}

/// What the source needs: the disk its export will have (GB), said how it is known, and the image
/// whose properties travel with it.
#[derive(Default)]
struct Source {
    disk_gb: Option<u64>,
    what: String,
    image: Option<Image>,
}

/// Both sides' users may do what the plan asks of them: the source user exports (a task), the
/// destination user imports (a task) and sets properties. Refused with exit 5, naming the user.
/// A login answer that lists no roles at all is not judged.
fn check_roles(ctx: &Ctx, plan: &Plan) -> Result<(), Error> {
    let exports = matches!(
        plan.entry,
        Entry::Server { .. } | Entry::Image { .. } | Entry::CreateServer { .. }
    );
    let mut sides = Vec::new();
    if exports && let Some(src) = &ctx.src {
        sides.push((src, "export the image (an export task)"));
    }
    if let Some(dst) = ctx.dst.as_ref().filter(|_| plan.to_file.is_none()) {
        sides.push((
            dst,
            "import the image (an import task) and set its properties",
        ));
    }
    for (region, needs) in sides {
        let allowed = region.roles.is_empty()
            || region
                .roles
                .iter()
                .any(|r| IMAGE_ADMIN_ROLES.contains(&r.as_str()));
        if !allowed {
            return Err(Error::NotPermitted(format!(
                "user {} of the account used in {} may not {needs}: that needs one of the roles \
                 {} (it has {}); nothing was created\n  rule from: {FAQ}\n  what to do: ask the \
                 account's admin for the cloudImages:admin role, or use the account owner's \
                 credentials",
                region.user.as_deref().unwrap_or("(unnamed)"),
                region.name,
                IMAGE_ADMIN_ROLES.join(", "),
                region.roles.join(", ")
            )));
        }
    }
    Ok(())
}

/// How long a ServiceNet probe waits for a TCP connection. ServiceNet answers at once from
/// inside its data center; from anywhere else the address is unroutable and a connection would
/// hang until the HTTP timeout of every request.
const SERVICENET_PROBE: std::time::Duration = std::time::Duration::from_secs(3);

/// Each side asked to use ServiceNet can be reached: a TCP connection to its Cloud Files host, as
/// cloud-image-transfer.sh probes the snet host before it starts. Refused with exit 2.
async fn servicenet_reachable(ctx: &Ctx, plan: &Plan) -> Result<(), Error> {
    let mut sides = Vec::new();
    if plan.servicenet.source()
        && let Some(src) = &ctx.src
    {
        sides.push((src, "source"));
    }
    if plan.servicenet.destination()
        && let Some(dst) = &ctx.dst
    {
        sides.push((dst, "destination"));
    }
    for (region, side) in sides {
        let url = region.files.account_url();
        let Some((host, port)) = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
        else {
            continue;
        };
        let connected = tokio::time::timeout(
            SERVICENET_PROBE,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await;
        let why = match connected {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", SERVICENET_PROBE.as_secs()),
        };
        return Err(Error::Usage(format!(
            "Cloud Files over ServiceNet in {} ({host}:{port}) cannot be reached from here \
             ({why}); ServiceNet works only from a server inside that data center, so run \
             imgferry there or leave out --servicenet {side}; nothing was created",
            region.name
        )));
    }
    Ok(())
}

/// An export has the virtual size of the server's root disk (XenAPI grows the VDI to the
/// flavor's `root_gb`: nova `nova/virt/xenapi/vmops.py` `_resize_up_vdis`); over the import limit
/// the import is refused with 413, so the migration is refused before any snapshot, as
/// cloud-image-transfer.sh checks `min_disk` first. `--force` goes ahead with a warning.
fn importable(ctx: &Ctx, plan: &Plan, gb: u64, what: &str) -> Result<(), Error> {
    let bytes = gb << 30;
    if bytes <= plan.max_virtual_size {
        return Ok(());
    }
    let why = format!(
        "{what}, so its export is a VHD of {} virtual, over the import limit of {} \
         (--max-virtual-size)",
        crate::units::size(bytes),
        crate::units::size(plan.max_virtual_size)
    );
    if plan.force {
        ctx.emit(super::Event::Warning {
            message: format!("{why}; going ahead because of --force"),
        });
        return Ok(());
    }
    Err(Error::Rejected {
        code: 413,
        predicted: true,
        message: why,
    })
}

/// The source image's `flavor_classes` admit the `--boot` flavor. No source says whether Nova
/// enforces it, so it is assumed to (docs/real-cloud.md); `--force` goes ahead.
fn boot_class(ctx: &Ctx, plan: &Plan, flavor: &str, image: &Image) -> Result<(), Error> {
    let classes = image.flavor_classes.as_deref();
    if crate::api::compute::flavor_class_allowed(classes, flavor) {
        return Ok(());
    }
    let rule = format!(
        "flavor {flavor} (class {}) is not among the image's flavor_classes \"{}\"",
        crate::api::compute::flavor_class(flavor),
        classes.unwrap_or_default()
    );
    if plan.force {
        ctx.emit(super::Event::Warning {
            message: format!("{rule}; booting anyway because of --force"),
        });
        return Ok(());
    }
    Err(refused(
        rule,
        MIMIC,
        "boot with a flavor of an admitted class (a PV image excludes io1, memory1, compute1 and \
         onmetal), or pass --force if you know the flavor boots it",
    ))
}

/// The source server: it exists, has its system disk in its image, is not OnMetal, and was built
/// from an image that may be exported. Returns what was seen, and what its export needs (its
/// flavor's disk, and the base image whose properties its snapshot carries).
async fn check_server(ctx: &Ctx, id: &str) -> Result<(String, Source), Error> {
    let src = ctx.src()?;
    let server = src.compute.get_server(id).await?.ok_or_else(|| {
        Error::Final(format!(
            "server {id} is not in {} (check the id and --from); nothing was created",
            src.name
        ))
    })?;
    let Some(base) = server.image_id().map(str::to_string) else {
        return Err(refused(
            format!(
                "server {id} boots from a volume, so an image of it holds no system disk to export"
            ),
            LIMITS,
            "copy the volume instead (Cloud Block Storage snapshot), or move a server that boots from its local disk",
        ));
    };
    let flavor = server.flavor_id().unwrap_or_default().to_string();
    if flavor.starts_with("onmetal") {
        return Err(refused(
            format!(
                "server {id} is an OnMetal server ({flavor}): createImage is not offered for OnMetal"
            ),
            CREATE_IMAGE,
            "rebuild the workload on a virtual server and move that one",
        ));
    }
    // Licensing travels from the image a server was built from to its snapshots.
    let base_image = src.images.get_image(&base).await?;
    if let Some(base) = &base_image {
        exportable(base, None)?;
    }
    let flavor_disk = src.compute.get_flavor(&flavor).await?.map(|f| f.disk);
    let seen = format!("server {id} ({}) is {}", server.name, server.status);
    let disk_gb = flavor_disk.filter(|d| *d > 0);
    Ok((
        seen,
        Source {
            disk_gb,
            what: format!(
                "server {id}'s flavor {flavor} has a {} GB root disk",
                disk_gb.unwrap_or_default()
            ),
            image: base_image,
        },
    ))
}

/// The image `id` exists and may be exported (by its owner, when `owned` is asked for).
async fn image(ctx: &Ctx, id: &str, owned: bool) -> Result<Image, Error> {
    let src = ctx.src()?;
    let image = src.images.get_image(id).await?.ok_or_else(|| {
        Error::Final(format!(
            "image {id} is not in {} (check the id and --from); nothing was created",
            src.name
        ))
    })?;
    exportable(&image, owned.then_some(ctx.tenant.as_deref()).flatten())?;
    Ok(image)
}

/// The export rules for one image; `tenant` is checked against the owner when given.
fn exportable(image: &Image, tenant: Option<&str>) -> Result<(), Error> {
    let windows = images::is_windows(image.os_type.as_deref(), image.os_distro.as_deref());
    if windows {
        return Err(refused(
            format!(
                "image {} is a Windows image: Rackspace does not export Windows images (\"The \
                 export of Windows based images is not allowed\")",
                image.id
            ),
            CLOUDCAFE,
            "build a Windows server in the destination region and move the data, not the image",
        ));
    }
    if let Some(options) = image.options.as_deref().filter(|o| *o != "0") {
        return Err(refused(
            format!(
                "image {} cannot be exported: it is licensed or billed \
                 (com.rackspace__1__options is '{options}', not '0'; Windows and Red Hat images are)",
                image.id
            ),
            FAQ,
            "build a server in the destination region from the same base image and move the data, not the image",
        ));
    }
    if let (Some(owner), Some(tenant)) = (image.owner.as_deref(), tenant)
        && owner != tenant
    {
        return Err(refused(
            format!(
                "image {} belongs to account {owner}, not {tenant}: only its owner may export it",
                image.id
            ),
            FAQ,
            "export it from the account that owns it, or build a server from it and move that",
        ));
    }
    Ok(())
}

/// The `--boot` flavor exists in the destination, has a local disk, and the disk holds `needed`
/// bytes when that is known.
pub async fn check_boot(ctx: &Ctx, flavor: &str, needed: Option<u64>) -> Result<(), Error> {
    let dst = ctx.dst()?;
    let Some(f) = dst.compute.get_flavor(flavor).await? else {
        return Err(refused(
            format!("flavor {flavor} is not offered in {}", dst.name),
            BFV,
            "use a flavor id such as general1-2 or io1-15 (`GET /flavors` lists them)",
        ));
    };
    if f.disk == 0 {
        return Err(refused(
            format!(
                "flavor {flavor} ({}) has no local disk: it must boot from a volume, and image-based builds are not supported",
                f.name
            ),
            BFV,
            "boot with a general1-* or io1-* flavor, then resize if needed; or leave out --boot",
        ));
    }
    if let Some(needed) = needed.filter(|n| *n > f.disk << 30) {
        return Err(refused(
            format!(
                "flavor {flavor} has a {} GB disk, smaller than the image needs ({})",
                f.disk,
                crate::units::size(needed)
            ),
            NOVA,
            "pick a flavor with a larger disk (general1-4: 80 GB, general1-8: 160 GB)",
        ));
    }
    Ok(())
}

/// Whether a failed export task's message is one of the service's final refusals (ownership or
/// licensing): running the same export again can never succeed.
pub fn export_refusal(message: &str) -> bool {
    message.contains("may only be exported by the image owner")
        || message.contains("cannot be exported due to licensing or billing restrictions")
}

#[cfg(test)]
mod tests {
    use super::export_refusal;

    #[test]
    fn the_services_own_export_refusals_are_recognised() {
        assert!(export_refusal(
            "An image may only be exported by the image owner."
        ));
        assert!(export_refusal(
            "Image cannot be exported due to licensing or billing restrictions (com.rackspace__1__options: '1')"
        ));
        assert!(!export_refusal("Swift container 'x' was not found"));
    }
}
