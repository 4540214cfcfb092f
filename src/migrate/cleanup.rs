//! `--cleanup staging|all`: delete what imgferry created, and nothing else.
//!
//! - `staging`: the uploaded copy in the destination (its segments and SLO manifest) and, when
//!   imgferry exported it, the exported VHD in the source (its DLO segments and manifest).
//! - `all`: also the source snapshot (in an OpenStack source cloud too) and any source server
//!   imgferry created.
//!
//! A `--to-file` download uploaded nothing; its file is what the user asked for and stays.
//!
//! A given `--image`, `--export` or `--server` is never touched. Every delete tolerates "already
//! gone", so a cleanup interrupted by a kill simply runs again.

use super::state::{Cleanup, Entry, Migration};
use super::{Ctx, Error};

/// Deletes according to the plan, recording each deletion in the facts.
pub async fn run(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let mut done = Vec::new();
    if let Some(t) = m
        .facts
        .transfer
        .as_ref()
        .filter(|_| m.plan.to_file.is_none() && m.plan.to_cloud.is_none())
    {
        let files = &ctx.dst()?.files;
        files.delete(&t.dest_container, &t.dest_name).await?;
        for p in &t.pieces {
            files.delete(&t.dest_container, &p.dest).await?;
        }
        done.push(format!(
            "{}: {}/{} and its {} segments",
            m.plan.to,
            t.dest_container,
            t.dest_name,
            t.pieces.len()
        ));
    }
    if m.facts.exported_by_us
        && let (Some(export), Ok(src)) = (&m.facts.export, ctx.src())
    {
        // The export is a DLO: the manifest names the segment prefix.
        let meta = src.files.head(&export.container, &export.object).await?;
        src.files.delete(&export.container, &export.object).await?;
        if let Some(prefix) = meta.and_then(|m| m.dlo)
            && let Some((container, prefix)) = prefix.split_once('/')
        {
            for seg in src.files.list(container, prefix).await? {
                src.files.delete(container, &seg.name).await?;
            }
        }
        done.push(format!(
            "{}: exported {} and its segments",
            m.plan.from.as_deref().unwrap_or("-"),
            export
        ));
    }
    if m.plan.cleanup == Cleanup::All
        && let Ok(src) = ctx.src()
    {
        if let Some(id) = m.facts.snapshot.as_ref().and_then(|s| s.id.clone()) {
            src.images.delete_image(&id).await?;
            done.push(format!("{}: snapshot {id}", src.name));
        }
        if matches!(m.plan.entry, Entry::CreateServer { .. })
            && let Some(id) = m.facts.created_server.as_ref().and_then(|s| s.id.clone())
        {
            src.compute.delete_server(&id).await?;
            done.push(format!("{}: server {id}", src.name));
        }
    }
    if m.plan.cleanup == Cleanup::All
        && let Some(cloud) = &ctx.src_cloud
        && let Some(id) = m.facts.snapshot.as_ref().and_then(|s| s.id.clone())
    {
        // The snapshot imgferry took of an OpenStack server (`--from-cloud --server`).
        cloud.glance.delete(&id).await?;
        done.push(format!("{}: snapshot {id}", cloud.name));
    }
    m.facts.cleaned = done;
    Ok(())
}
