//! `migrate --from-cloud NAME --image ID|NAME`: the source is an image of an OpenStack cloud's
//! Glance (docs/openstack.md).
//!
//! - `Planned`: the image is found (by id, else by its one name), must be `active`, and what its
//!   bytes must be is recorded: size, `os_hash_value` (sha512) and `checksum` (md5). Nothing is
//!   created in the source cloud.
//! - With `--to-cloud`, the image is streamed into the destination ([`super::to_cloud`]) by
//!   parallel ranged reads (`GET /v2/images/{id}/file` with `Range`, answered 206), unchanged, or
//!   converted when it is a VHD.
//! - Into a legacy region, it is downloaded the same way into a staging directory, then made a
//!   VHD ([`super::staging`]).
//! - With `--to-file`, it is written to `PATH.part` in order by parallel ranged reads
//!   ([`download`]); every 64 MiB the file is synced and the offset saved, so a resume continues
//!   from there (the part already written is read back for the digests). The whole must match
//!   the image's sha512 and md5 before the file is renamed to `PATH`.

use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::cloud::{source_glance, source_image as image};
use super::state::{CloudImage, Migration, Step};
use super::stream::{Digests, PIECE};
use super::to_file::file_error;
use super::{Ctx, Error, Event};
use crate::api::glance::Glance;
use crate::transfer;

/// How much is written between syncs (and saves of the offset).
const SYNC_EVERY: u64 = 64 << 20;

/// Finds the source image and records what its bytes must be.
pub(super) async fn resolve_image(ctx: &Ctx, m: &mut Migration, wanted: &str) -> Result<(), Error> {
    let cloud = ctx
        .src_cloud
        .as_ref()
        .ok_or(Error::Invariant("a --from-cloud step without its cloud"))?;
    let mut found = cloud.glance.resolve(wanted).await?;
    let image = match found.len() {
        0 => {
            return Err(Error::Final(format!(
                "no image {wanted} in {} (by id or name) that this project can see",
                cloud.name
            )));
        }
        1 => found.remove(0),
        n => {
            let ids: Vec<&str> = found.iter().map(|i| i.id.as_str()).collect();
            return Err(Error::Final(format!(
                "{n} images are named {wanted} in {}: {}; give the id with --image",
                cloud.name,
                ids.join(", ")
            )));
        }
    };
    if image.status != "active" {
        return Err(Error::Final(format!(
            "image {} in {} is {}, not active: only an active image has data to move",
            image.id, cloud.name, image.status
        )));
    }
    let size = image
        .size
        .ok_or_else(|| Error::Final(format!("image {} in {} has no size", image.id, cloud.name)))?;
    let sha512 = image
        .os_hash_value
        .clone()
        .filter(|_| image.os_hash_algo.as_deref() == Some("sha512"));
    if sha512.is_none() && image.checksum.is_none() {
        ctx.emit(Event::Warning {
            message: format!(
                "image {} in {} has neither os_hash_value nor checksum: its bytes cannot be \
                 checked against the source's own digests",
                image.id, cloud.name
            ),
        });
    }
    let name = image.name.clone().unwrap_or_default();
    if m.plan.name.is_empty() {
        m.plan.name = if name.is_empty() {
            image.id.clone()
        } else {
            name.clone()
        };
    }
    m.facts.source_image = Some(image.id.clone());
    m.facts.source_cloud_image = Some(CloudImage {
        id: image.id,
        name,
        disk_format: image.disk_format.unwrap_or_default(),
        size,
        sha512,
        md5: image.checksum,
    });
    let ext = m
        .facts
        .source_cloud_image
        .as_ref()
        .map_or("img".to_string(), |i| extension(&i.disk_format).to_string());
    super::to_file::name_in_directory(&mut m.plan, &ext)?;
    if m.plan.to_file.is_some() {
        m.facts.downloaded = Some(0);
        m.step = Step::Transferring;
    } else if m.plan.to_cloud.is_none() {
        // Into a legacy region: staged as a VHD first (`staging::check_source` vets the format).
        m.facts.downloaded = Some(0);
        m.step = Step::Exporting;
    } else {
        super::to_cloud::check_format(ctx, m).await?;
        m.step = Step::Inspected;
    }
    Ok(())
}

/// The file extension of a Glance disk format.
fn extension(disk_format: &str) -> &str {
    match disk_format {
        "vhd" | "vhdx" | "qcow2" | "raw" | "vmdk" | "vdi" | "iso" => disk_format,
        "ploop" => "hds",
        _ => "img",
    }
}

/// Downloads the source image into `PATH.part` from where the last run stopped, checks it whole
/// against the image's digests, and renames it to `path`.
pub(super) async fn download(ctx: &Ctx, m: &mut Migration, path: PathBuf) -> Result<(), Error> {
    let part = super::to_file::part_path(&path);
    let image = image(m)?.clone();
    let cloud = ctx
        .src_cloud
        .as_ref()
        .map_or(String::new(), |c| c.name.clone());
    let done = m.facts.downloaded.unwrap_or(0);
    if done >= image.size && !part.exists() && path.exists() {
        // Killed after the rename and before the state said so: the file is in place.
        return Ok(());
    }
    super::to_file::check_room(&path, image.size.saturating_sub(done))?;
    let _lock = super::to_file::lock_part(&part, &m.id)?;
    // What a previous run wrote and synced is kept; anything after it is not trusted.
    let digests = {
        let at = part.clone();
        tokio::task::spawn_blocking(move || prefix_digests(&at, done))
            .await
            .map_err(|_| Error::Invariant("the digest task stopped"))?
            .map_err(|e| file_error("cannot read back the partial download", &part, e))?
    };
    ctx.emit(Event::Transfer {
        detail: transfer::Event::Started {
            total: image.size,
            pieces: image.size.div_ceil(PIECE) as usize,
            already_done: done,
            segment_size: PIECE,
        },
    });
    let glance = source_glance(ctx)?.clone();
    let outcome = tokio::select! {
        r = write_from(ctx, m, &glance, &part, done, digests) => Some(r),
        () = ctx.cancel.cancelled() => None,
    };
    let digests = match outcome {
        None => return Err(Error::Interrupted),
        Some(r) => r?,
    };
    if let Err(e) = digests.check(&image, &cloud) {
        // Nothing of it is trusted: the next run downloads it all again.
        m.facts.downloaded = Some(0);
        return Err(e);
    }
    super::to_file::rename_into_place(&part, &path).await?;
    Ok(())
}

/// The digests of the first `len` bytes of `part`, which is cut to that length (created empty
/// when it does not exist).
fn prefix_digests(part: &Path, len: u64) -> std::io::Result<Digests> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)?;
    file.set_len(len)?;
    let mut d = Digests::default();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(d);
        }
        d.update(&buf[..n]);
    }
}

/// Writes the image from `from` to its end into `part`, in order, syncing and saving the offset
/// every [`SYNC_EVERY`] bytes.
async fn write_from(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    part: &Path,
    from: u64,
    mut digests: Digests,
) -> Result<Digests, Error> {
    let size = image(m)?.size;
    let id = image(m)?.id.clone();
    let file = std::sync::Arc::new(
        std::fs::OpenOptions::new()
            .write(true)
            .open(part)
            .map_err(|e| file_error("cannot open the download file", part, e))?,
    );
    let mut pieces = futures::stream::iter((from..size).step_by(PIECE as usize))
        .map(|at| {
            let (glance, id) = (glance.clone(), id.clone());
            async move {
                let bytes = glance.fetch_range(&id, at, PIECE.min(size - at)).await?;
                Ok::<_, Error>((at, bytes))
            }
        })
        .buffered(m.plan.concurrency.max(1));
    let mut synced = from;
    while let Some(piece) = pieces.next().await {
        let (at, bytes) = piece?;
        let end = at + bytes.len() as u64;
        let (file2, sync) = (
            std::sync::Arc::clone(&file),
            end - synced >= SYNC_EVERY || end == size,
        );
        let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<Digests> {
            use std::os::unix::fs::FileExt;
            file2.write_all_at(&bytes, at)?;
            digests.update(&bytes);
            if sync {
                file2.sync_data()?;
            }
            Ok(digests)
        })
        .await
        .map_err(|_| Error::Invariant("a file write stopped"))?
        .map_err(|e| file_error("cannot write the download file", part, e))?;
        digests = hashed;
        if sync {
            synced = end;
            m.facts.downloaded = Some(end);
            ctx.save(m).await?;
        }
        ctx.emit(Event::Transfer {
            detail: transfer::Event::Progress {
                done: end,
                total: size,
            },
        });
    }
    Ok(digests)
}
