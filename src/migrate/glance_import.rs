//! `glance-direct`: the interoperable import, for a cloud that refuses `PUT /v2/images/{id}/file`
//! (or when `--upload-method glance-direct` asks for it). The bytes are streamed into the image's
//! staging area exactly as an upload would be, then imported (docs/openstack.md):
//!
//! - `PUT /v2/images/{id}/stage` makes the image `uploading`; a cut stage puts it back to
//!   `queued` (seen against real Glance 33), so a resume stages it again whole.
//! - `uploading` with a `size` is a whole stage: a resume imports it, then checks Glance's digests
//!   against the source's, computed again (nothing is sent twice).
//! - `POST /v2/images/{id}/import` with `{"method": {"name": "glance-direct"}}` is answered 202;
//!   the image is `importing`, then `active`. A failed import leaves it `importing` for good,
//!   with the store named in `os_glance_failed_import`, and the task's message in `GET
//!   /v2/images/{id}/tasks` (real Glance 33, for data that is not its declared format: "Task
//!   failed due to Internal Error"). imgferry then deletes the image, says why, and a resume
//!   creates a new one.

use super::state::{Migration, Step};
use super::{Ctx, Error, Event};
use crate::api::glance::Glance;

/// The import method imgferry uses.
pub const METHOD: &str = "glance-direct";

/// Starts the import of the staged data (unless it has begun) and waits for the image to be
/// `active`. On a failed import the image is deleted and the migration goes back to creating one.
pub(super) async fn import_and_wait(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    id: &str,
) -> Result<(), Error> {
    let status = glance.get(id).await?.map(|i| i.status);
    if status.as_deref() == Some("uploading")
        && let Err(e) = glance.import(id, METHOD).await
    {
        // The answer may have been lost after Glance acted: its status says.
        let now = glance.get(id).await?.map(|i| i.status);
        if !matches!(now.as_deref(), Some("importing" | "active")) {
            return Err(e.into());
        }
    }
    wait(ctx, m, glance, id).await
}

/// Waits for the import to end, polling the image at the plan's server interval.
async fn wait(ctx: &Ctx, m: &mut Migration, glance: &Glance, id: &str) -> Result<(), Error> {
    let interval = std::time::Duration::from_secs_f64(m.plan.polling.server_secs.clamp(0.01, 10.0));
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs_f64(m.plan.polling.deadline_secs);
    loop {
        let image = glance.get(id).await?;
        let (status, failed) = match &image {
            Some(i) => (
                i.status.as_str(),
                i.rest
                    .get("os_glance_failed_import")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default(),
            ),
            None => ("deleted", ""),
        };
        match status {
            "active" => return Ok(()),
            "importing" if failed.is_empty() => {}
            _ => return failed_import(ctx, m, glance, id, status, failed).await,
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the import of image {id}"),
                seconds: m.plan.polling.deadline_secs,
                status: status.to_string(),
            });
        }
        ctx.emit(Event::Waiting {
            what: format!("the import of image {id}"),
            status: status.into(),
        });
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
}

/// An import that failed (the image stuck `importing` with a failed store, back to `queued`, or
/// gone): the task's message is read, the image deleted, and the migration sent back to create a
/// new one, which a resume does.
async fn failed_import(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    id: &str,
    status: &str,
    failed: &str,
) -> Result<(), Error> {
    let message = glance
        .tasks(id)
        .await
        .ok()
        .and_then(|tasks| {
            tasks
                .into_iter()
                .rev()
                .find(|t| t.status == "failure")
                .and_then(|t| t.message)
        })
        .unwrap_or_else(|| "the image service gave no reason".into());
    let state = if failed.is_empty() {
        status.to_string()
    } else {
        format!("{status}, failed in store {failed}")
    };
    if let Err(e) = glance.delete(id).await {
        ctx.emit(Event::Warning {
            message: format!(
                "could not delete image {id}, left {state} by its failed import: {}; delete it \
                 yourself",
                crate::error_chain(&e)
            ),
        });
    }
    m.facts.glance_image = None;
    m.step = Step::Inspected;
    Err(Error::TaskFailed {
        what: format!("the glance-direct import of image {id} ({state}; the image was deleted)"),
        message: format!(
            "{message}; `imgferry resume {}` uploads into a new image",
            m.id
        ),
    })
}
