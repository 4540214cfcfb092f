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
use crate::api::images::Image;

const FAQ: &str = "Cloud Images FAQ (rackspace-how-to cloud-images-faq.md)";
const LIMITS: &str = "Rackspace's cloud server image limitations (docs.rackspace.com)";
const CREATE_IMAGE: &str = "Cloud Servers API, createImage (docs-cloud-servers)";
const BFV: &str = "Cloud Servers API, boot from volume (docs-cloud-servers)";
const NOVA: &str = "OpenStack Nova, FlavorDiskSmallerThanImage";

fn refused(rule: String, source: &'static str, advice: &str) -> Error {
    Error::Refused {
        rule,
        from: source,
        advice: advice.to_string(),
    }
}

/// Checks the source and the boot flavor of `plan` against the rules above. Returns what it saw
/// of the source ("server … (web-1) is ACTIVE"), for the dry run to show.
pub async fn check(ctx: &Ctx, plan: &Plan) -> Result<Option<String>, Error> {
    let (seen, needed_gb) = match &plan.entry {
        Entry::Server { id } => {
            let (seen, disk) = check_server(ctx, id).await?;
            (Some(seen), disk)
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
            (Some(seen), i.min_disk.filter(|d| *d > 0 && owned))
        }
        Entry::Export { .. } | Entry::Vhd { .. } => (None, None),
    };
    if let Some(flavor) = &plan.boot {
        check_boot(ctx, flavor, needed_gb.map(|gb| gb << 30)).await?;
    }
    Ok(seen)
}

/// The source server: it exists, has its system disk in its image, is not OnMetal, and was built
/// from an image that may be exported. Returns what was seen, and its flavor's disk in GB (what
/// its image needs).
async fn check_server(ctx: &Ctx, id: &str) -> Result<(String, Option<u64>), Error> {
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
    if let Some(base) = src.images.get_image(&base).await? {
        exportable(&base, None)?;
    }
    let disk = src.compute.get_flavor(&flavor).await?.map(|f| f.disk);
    let seen = format!("server {id} ({}) is {}", server.name, server.status);
    Ok((seen, disk.filter(|d| *d > 0)))
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
    let dst = &ctx.dst;
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
