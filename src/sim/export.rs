//! The export task's work in the simulator: Rackspace's refusals, then the image's VHD written
//! as a DLO (`<uuid>.vhd` over `<uuid>.vhd-00001…`) in the receiving container, segment by
//! segment and manifest last.
//!
//! With an export rate (`sim serve --export-rate`), segments appear one at a time over the task's
//! duration, as a real export streams them: a listed segment is a complete object (Swift lists an
//! object only once its PUT has completed), but the export is not done until the manifest exists
//! and the task says so. A rewrite fault stores one segment damaged first and rewrites it after
//! the next one, to prove a pipelined copy re-checks what it copied early (docs/simulator.md).

use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::cloud::Image;
use super::cloud::new_id;
use super::disk::{Disk, Segment, SegmentWriter};

/// Writes the image's VHD as a DLO (`<uuid>.vhd` over `<uuid>.vhd-00001…`) in the container.
/// Rackspace's refusals of an export, in the words of its own tests (openstack-archive/cloudcafe
/// `cloudcafe/glance/common/constants.py`): only the owner may export, and not an image whose
/// `com.rackspace__1__options` is not "0" (licensed: Windows, Red Hat; Cloud Images FAQ). A
/// volume-backed snapshot holds no disk; no source says what the task then answers, so it fails.
pub(super) fn export_allowed(image: &Image, tenant: &str) -> Result<(), String> {
    if image.owner != tenant {
        return Err("An image may only be exported by the image owner.".into());
    }
    if image.options != "0" {
        return Err(format!(
            "Image cannot be exported due to licensing or billing restrictions \
             (com.rackspace__1__options: '{}')",
            image.options
        ));
    }
    let windows = crate::api::images::is_windows(
        image.properties.get("os_type").map(String::as_str),
        image
            .properties
            .get("org.openstack__1__os_distro")
            .map(String::as_str),
    );
    if windows {
        return Err(
            "The export of Windows based images is not allowed. Distribution of Windows \
                    code is not allowed in the Service Provider License Agreement."
                .into(),
        );
    }
    if image.volume_backed {
        return Err("Image has no disk to export: its server boots from a volume".into());
    }
    Ok(())
}

pub(super) async fn export(shared: &Shared, region: &str, input: &Value) -> Result<Value, String> {
    let (Some(image_id), Some(container)) = (
        input["image_uuid"].as_str(),
        input["receiving_swift_container"].as_str(),
    ) else {
        return Err("Invalid input: image_uuid and receiving_swift_container are required".into());
    };
    if container.contains(['/', '?', '.']) {
        return Err(format!("Invalid container name: {container}"));
    }
    let image = shared
        .cloud
        .with(region, |r| {
            r.images
                .get(image_id)
                .filter(|i| i.status() == "active")
                .cloned()
        })
        .ok_or_else(|| format!("Requested image for export was not found: {image_id}"))?;
    export_allowed(&image, shared.tenant_of(region))?;
    let disk = image.disk;
    let files = shared.files(region);
    if !files.container_exists(region, container).await? {
        return Err(format!("Swift container '{container}' was not found"));
    }
    let name = format!("{image_id}.vhd");
    if files.object_exists(region, container, &name).await? {
        return Err(format!(
            "Swift already has an object with id '{name}' in container '{container}'"
        ));
    }
    let spool = shared.store.spool_dir(region).join(new_id());
    let segments = write_segments(disk, spool.clone(), shared.export_segment_size).await?;
    if shared.export.manifest_first {
        files
            .put_dlo_manifest(region, container, &name, &format!("{name}-"))
            .await?;
    }
    let written = store_progressively(shared, region, container, &name, segments).await;
    let _ = tokio::fs::remove_dir_all(&spool).await;
    written?;
    if !shared.export.manifest_first {
        files
            .put_dlo_manifest(region, container, &name, &format!("{name}-"))
            .await?;
    }
    Ok(json!({"export_location": format!("{container}/{name}")}))
}

async fn write_segments(
    disk: Disk,
    dir: std::path::PathBuf,
    size: u64,
) -> Result<Vec<super::disk::Segment>, String> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let mut w = SegmentWriter::new(&dir, "seg-", size);
        disk.write_to(&mut w)?;
        w.finish()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("export failed writing segments: {e}"))
}

/// Stores the segments in order, at the export rate if there is one; the segment the rewrite
/// fault names is first stored with one byte flipped and rewritten after the next one.
async fn store_progressively(
    shared: &Shared,
    region: &str,
    container: &str,
    name: &str,
    segments: Vec<Segment>,
) -> Result<(), String> {
    let files = shared.files(region);
    let mut rewrite: Option<(String, Segment)> = None;
    // Paced by deadline from the start: segment i is stored when the rate has written every byte
    // up to its end, however long storing the ones before took (a sleep per segment would add
    // the storing time, and the export would write slower than its rate whenever the machine
    // is busy, as it is with a copy running beside it on the same cores).
    let started = tokio::time::Instant::now();
    let mut written = 0u64;
    let mut numbered: Vec<(usize, Segment)> = segments.into_iter().enumerate().collect();
    if shared.export.reverse_order {
        numbered.reverse();
    }
    for (i, seg) in numbered {
        written += seg.bytes;
        if let Some(rate) = shared.export.rate {
            let due = Duration::from_secs_f64(written as f64 / rate.max(1) as f64);
            tokio::time::sleep_until(started + due).await;
        }
        let object = format!("{name}-{:05}", i + 1);
        if shared.export.rewrite_segment == Some(i + 1) {
            let damaged = damaged_copy(&seg).await?;
            files
                .store_segment(region, container, &object, damaged)
                .await?;
            rewrite = Some((object, seg));
            continue;
        }
        files.store_segment(region, container, &object, seg).await?;
        if let Some((object, good)) = rewrite.take() {
            files
                .store_segment(region, container, &object, good)
                .await?;
        }
    }
    if let Some((object, good)) = rewrite.take() {
        files
            .store_segment(region, container, &object, good)
            .await?;
    }
    Ok(())
}

/// A copy of `seg` with its first byte flipped, and its md5.
async fn damaged_copy(seg: &Segment) -> Result<Segment, String> {
    let mut bytes = tokio::fs::read(&seg.path)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(b) = bytes.first_mut() {
        *b ^= 0xff;
    }
    let path = seg.path.with_extension("damaged");
    tokio::fs::write(&path, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    use md5::Digest;
    Ok(Segment {
        path,
        bytes: seg.bytes,
        md5: hex::encode(md5::Md5::digest(&bytes)),
    })
}
