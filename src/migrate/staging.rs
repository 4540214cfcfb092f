//! `migrate --from-cloud NAME --image ID|NAME --to REGION`: an OpenStack image into a legacy
//! region, whose import takes only a VHD in Cloud Files (docs/openstack.md).
//!
//! The image is staged on local disk, in the migration's staging directory beside its state file
//! (`<id>.staging/`), because a VHD's block allocation table comes before its data and is known
//! only once the whole disk has been read:
//!
//! - `Exporting` (the route's "download" step): the image is downloaded to `image.<format>` by
//!   parallel ranged reads, synced and its offset saved every 64 MiB, and checked whole against
//!   the image's sha512 and md5 ([`super::from_cloud::download`]); a resume continues from the
//!   offset.
//! - `Exported` ("convert to VHD and check"): raw and qcow2 become a dynamic VHD, `disk.vhd`,
//!   2 MiB block by block in guest order, blocks that read as zeros left out
//!   ([`crate::convert::vhd_write`], [`crate::convert::qcow2_read`]); a VHD image is used as it
//!   is. A killed conversion starts again (it is local and fast). The VHD is then validated the
//!   way XenServer will read it, exactly like a `--vhd` file, and the route goes on as one: the
//!   upload to Cloud Files, the import task, the properties, `--boot`.
//! - Once the upload is complete (`Uploaded`) the staging directory is removed: nothing later
//!   reads it.

use std::path::{Path, PathBuf};

use super::cloud::source_image;
use super::state::{Migration, Step};
use super::to_file::file_error;
use super::{Ctx, Error, Event};
use crate::convert::qcow2_read::{self, Qcow2Reader, ReadAt};
use crate::convert::vhd_write::{self, DynamicVhd, GuestDisk, RawDisk, WriteError};

/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;

/// Refuses, before anything is read, an image whose format imgferry cannot turn into a VHD (once
/// the source image is known; nothing to check on other routes).
pub(super) fn check_source(ctx: &Ctx, m: &Migration) -> Result<(), Error> {
    if m.step != Step::Exporting || m.plan.from_cloud.is_none() {
        return Ok(());
    }
    let cloud = ctx.src_cloud.as_ref().map_or("", |c| c.name.as_str());
    let image = source_image(m)?;
    match image.disk_format.as_str() {
        "raw" | "qcow2" | "vhd" => Ok(()),
        other => Err(Error::Final(format!(
            "image {} in {cloud} is {}: a Rackspace legacy region imports only VHDs, and imgferry \
             makes one from raw or qcow2; convert it (`qemu-img convert -O qcow2`) into a new \
             image first",
            image.id,
            if other.is_empty() {
                "of no disk format"
            } else {
                other
            }
        ))),
    }
}

/// Where the source image is downloaded to.
pub(super) fn download_path(ctx: &Ctx, m: &Migration) -> Result<PathBuf, Error> {
    let format = &source_image(m)?.disk_format;
    Ok(ctx.store.staging_dir(&m.id).join(format!("image.{format}")))
}

/// Downloads the source image into the staging directory, then goes on to convert it.
pub(super) async fn download(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let dir = ctx.store.staging_dir(&m.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| file_error("cannot create the staging directory", &dir, e))?;
    let path = download_path(ctx, m)?;
    super::from_cloud::download(ctx, m, path).await?;
    m.step = Step::Exported;
    Ok(())
}

/// The staged VHD, made from the downloaded image unless an earlier run made it already.
pub(super) async fn vhd(ctx: &Ctx, m: &mut Migration) -> Result<PathBuf, Error> {
    if let Some(path) = &m.facts.staged_vhd {
        return Ok(PathBuf::from(path));
    }
    let image = download_path(ctx, m)?;
    let format = source_image(m)?.disk_format.clone();
    let path = if format == "vhd" {
        image.clone()
    } else {
        let out = ctx.store.staging_dir(&m.id).join("disk.vhd");
        convert(ctx, m, &image, &format, &out).await?;
        out
    };
    m.facts.staged_vhd = Some(path.display().to_string());
    ctx.save(m).await?;
    if path != image {
        let _ = tokio::fs::remove_file(&image).await;
    }
    Ok(path)
}

/// Removes the staging directory once nothing reads it any more.
pub(super) async fn remove(ctx: &Ctx, m: &Migration) {
    let dir = ctx.store.staging_dir(&m.id);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        ctx.emit(Event::Warning {
            message: format!(
                "could not remove the staging directory {}: {e}; delete it by hand",
                dir.display()
            ),
        });
    }
}

/// Converts the downloaded `image` (`format`: raw or qcow2) into a dynamic VHD at `out`, by way of
/// `out.part`; a conversion cut short leaves only the `.part`, which the next run rewrites.
async fn convert(
    ctx: &Ctx,
    m: &Migration,
    image: &Path,
    format: &str,
    out: &Path,
) -> Result<(), Error> {
    let file = std::fs::File::open(image)
        .map_err(|e| file_error("cannot open the downloaded image", image, e))?;
    let len = file
        .metadata()
        .map_err(|e| file_error("cannot read the downloaded image", image, e))?
        .len();
    let (mut disk, blocks): (Box<dyn GuestDisk + Send>, u64) = match format {
        "qcow2" => {
            let mut q = Qcow2Reader::open(At { file, len }).map_err(|e| bad(m, e))?;
            let blocks = q
                .allocated_blocks(DynamicVhd::block_size())
                .map_err(|e| bad(m, e))?;
            (Box::new(q), blocks)
        }
        _ => (
            Box::new(RawDisk(At { file, len })),
            len.div_ceil(DynamicVhd::block_size()),
        ),
    };
    // The most the VHD can take: every block the image holds, and its metadata.
    let needed = blocks * (DynamicVhd::block_size() + 4096) + (8 << 20);
    super::to_file::check_room(out, needed)?;
    let part = super::to_file::part_path(out);
    let seconds = super::state::unix_now().saturating_sub(VHD_EPOCH);
    let id: [u8; 16] = {
        use md5::Digest;
        md5::Md5::digest(m.id.as_bytes()).into()
    };
    let layout = DynamicVhd::new(disk.size(), id, u32::try_from(seconds).unwrap_or(u32::MAX));
    let (cancel, at, name) = (ctx.cancel.clone(), part.clone(), m.id.clone());
    let written = tokio::task::spawn_blocking(move || -> Result<_, WriteError> {
        use std::os::unix::fs::FileExt;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&at)
            .map_err(WriteError::Out)?;
        let len = vhd_write::write(
            disk.as_mut(),
            layout,
            &mut |offset, bytes| out.write_all_at(bytes, offset),
            &|| cancel.is_cancelled(),
        )?;
        if let Some(len) = len {
            out.set_len(len).map_err(WriteError::Out)?;
            out.sync_all().map_err(WriteError::Out)?;
        }
        Ok(len)
    })
    .await
    .map_err(|_| Error::Invariant("the conversion task stopped"))?;
    match written {
        Ok(Some(bytes)) => {
            tracing::debug!(migration = %name, bytes, "staged VHD written");
        }
        Ok(None) => return Err(Error::Interrupted),
        Err(WriteError::Out(e)) => {
            return Err(file_error("cannot write the staged VHD", &part, e));
        }
        Err(WriteError::Image(e)) => return Err(bad(m, e)),
    }
    rename_synced(&part, out).await
}

/// Renames the finished `part` to `out` (replacing what a run killed before saving left there)
/// and syncs the directory, so the rename survives a crash.
async fn rename_synced(part: &Path, out: &Path) -> Result<(), Error> {
    let (from, to) = (part.to_path_buf(), out.to_path_buf());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::rename(&from, &to)?;
        if let Some(dir) = to.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|_| Error::Invariant("the rename task stopped"))?
    .map_err(|e| file_error("cannot rename the staged VHD to", out, e))
}

/// A downloaded image that cannot be read as its format says: the image is what it is, so a
/// resume would meet the same bytes.
fn bad(m: &Migration, e: qcow2_read::Error) -> Error {
    let image = source_image(m).map_or_else(|_| "the source image".into(), |i| i.id.clone());
    match e {
        qcow2_read::Error::Io(e) => Error::File {
            what: "cannot read the downloaded image",
            path: format!("image {image}"),
            source: e,
        },
        e => Error::Final(format!("image {image} cannot be converted to a VHD: {e}")),
    }
}

/// The downloaded file, read at offsets.
struct At {
    file: std::fs::File,
    len: u64,
}

impl ReadAt for At {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        buf.fill(0);
        if offset >= self.len {
            return Ok(());
        }
        let n = buf.len().min((self.len - offset) as usize);
        self.file.read_exact_at(&mut buf[..n], offset)
    }

    fn size(&self) -> u64 {
        self.len
    }
}
