//! Waiting for the services: poll at a fixed interval until a check says done, a deadline passes,
//! or Ctrl-C arrives. Every sleep is a safe point to stop at.
//!
//! The status waits of the steps live here too: a server until ACTIVE, an image until active, a
//! task until success or failure.
//!
//! The interval comes from the plan (Rackspace asks for tasks no more often than every 30 s, and
//! servers and images every 10 s); the deadline bounds each wait, not the migration.

use std::time::{Duration, Instant};

use super::Event;
use super::state::Migration;
use super::{Ctx, Error, RegionApi};
use crate::api::images::TaskStatus;

/// What one check saw.
pub enum Poll<T> {
    Ready(T),
    /// Still working, with the status to show.
    Pending(String),
}

/// Sleeps `secs`, or returns [`Error::Interrupted`] if Ctrl-C comes first.
pub async fn pause(ctx: &Ctx, secs: f64) -> Result<(), Error> {
    let d = Duration::from_secs_f64(secs.max(0.0));
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = ctx.cancel.cancelled() => Err(Error::Interrupted),
    }
}

/// Calls `check` every `interval` seconds until it is ready. Status changes are reported.
pub async fn until<T>(
    ctx: &Ctx,
    what: &str,
    interval: f64,
    deadline: f64,
    mut check: impl AsyncFnMut() -> Result<Poll<T>, Error>,
) -> Result<T, Error> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(status) => {
                if status != last {
                    ctx.emit(Event::Waiting {
                        what: what.to_string(),
                        status: status.clone(),
                    });
                    last = status;
                }
            }
        }
        if started.elapsed().as_secs_f64() > deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: deadline,
                status: last,
            });
        }
        pause(ctx, interval).await?;
    }
}

/// Waits until server `id` is ACTIVE; ERROR ends the wait with the server's own fault message.
pub(super) async fn wait_server_active(
    ctx: &Ctx,
    (compute, region): (&crate::api::compute::Compute, &str),
    m: &Migration,
    id: &str,
    name: &str,
) -> Result<crate::api::compute::Server, Error> {
    let p = m.plan.polling;
    let what = format!("server {name} ({id}) in {region}");
    until(ctx, &what, p.server_secs, p.deadline_secs, async || {
        let s = compute
            .get_server(id)
            .await?
            .ok_or_else(|| Error::ResourceFailed {
                what: what.clone(),
                status: "missing".into(),
                message: "the server disappeared".into(),
            })?;
        match s.status.as_str() {
            "ACTIVE" => Ok(Poll::Ready(s)),
            "ERROR" | "DELETED" => Err(Error::ResourceFailed {
                what: what.clone(),
                status: s.status.clone(),
                message: s
                    .fault
                    .as_ref()
                    .map_or_else(|| "no fault message".into(), |f| f.message.clone()),
            }),
            other => Ok(Poll::Pending(other.to_lowercase())),
        }
    })
    .await
}

/// Waits until image `id` is active; `killed` and friends end the wait.
pub(super) async fn wait_image_active(
    ctx: &Ctx,
    src: &RegionApi,
    m: &Migration,
    id: &str,
) -> Result<(), Error> {
    let p = m.plan.polling;
    let what = format!("image {id} in {}", src.name);
    until(ctx, &what, p.server_secs, p.deadline_secs, async || {
        let img = src
            .images
            .get_image(id)
            .await?
            .ok_or_else(|| Error::ResourceFailed {
                what: what.clone(),
                status: "missing".into(),
                message: "no such image in this region".into(),
            })?;
        match img.status.as_str() {
            "active" => Ok(Poll::Ready(())),
            "killed" | "deleted" | "pending_delete" | "deactivated" => Err(Error::ResourceFailed {
                what: what.clone(),
                status: img.status.clone(),
                message: "the image service gave up on this image".into(),
            }),
            other => Ok(Poll::Pending(other.to_string())),
        }
    })
    .await
}

/// Polls task `id` until it succeeds (returning it) or fails (returning its message).
pub(super) async fn wait_task(
    ctx: &Ctx,
    region: &RegionApi,
    m: &Migration,
    kind: &str,
    id: &str,
) -> Result<Result<crate::api::images::Task, String>, Error> {
    let p = m.plan.polling;
    let what = format!("{kind} task {id} in {}", region.name);
    until(ctx, &what, p.task_secs, p.deadline_secs, async || {
        check_task(region, &what, id).await
    })
    .await
}

/// One look at task `id`: ready with the task (success) or its message (failure), or pending
/// with its status. A task that is gone is an error: its record expired.
pub(super) async fn check_task(
    region: &RegionApi,
    what: &str,
    id: &str,
) -> Result<Poll<Result<crate::api::images::Task, String>>, Error> {
    let task = region
        .images
        .get_task(id)
        .await?
        .ok_or_else(|| Error::TaskFailed {
            what: what.to_string(),
            message: "the task is gone (task records expire 48 h after they finish)".into(),
        })?;
    Ok(match task.state() {
        TaskStatus::Success => Poll::Ready(Ok(task)),
        TaskStatus::Failure => Poll::Ready(Err(task
            .message
            .clone()
            .unwrap_or_else(|| "the task failed without a message".into()))),
        TaskStatus::Working => Poll::Pending(task.status.clone()),
    })
}
