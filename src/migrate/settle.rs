//! Creating remote resources exactly once (docs/state-machine.md): every creating POST goes through
//! [`create_settled`], which looks the resource up by its intent before it POSTs and again after
//! any failure that may have created it anyway. The intent itself is saved by the caller first.

use super::Event;
use super::state::{Migration, TaskIntent};
use super::wait::{self, Poll};
use super::{Ctx, Error, RegionApi};

/// Finds the server named `name` (an earlier run may have created it) or creates it. The caller
/// has saved the intent.
pub(super) async fn settle_server(
    ctx: &Ctx,
    region: &RegionApi,
    m: &mut Migration,
    name: &str,
    image: &str,
    flavor: &str,
    boot: bool,
) -> Result<String, Error> {
    ctx.save(m).await?;
    let what = format!("server {name} in {}", region.name);
    create_settled(
        ctx,
        m,
        &what,
        async || {
            let found = region.compute.find_servers(name).await?;
            if found.len() > 1 {
                ctx.emit(Event::Warning {
                    message: format!(
                        "{} servers are named {name}; using {}",
                        found.len(),
                        found[0]
                    ),
                });
            }
            Ok(found.into_iter().next())
        },
        async || {
            let created = region.compute.create_server(name, image, flavor).await?;
            if boot && let Some(pass) = created.admin_pass {
                *ctx.admin_pass.lock().unwrap_or_else(|e| e.into_inner()) = Some(pass);
            }
            Ok(created.id)
        },
    )
    .await
}

/// Whether a failed creating POST may have created the resource anyway (a 5xx, a reset, a
/// timeout): only a lookup can tell, so the caller looks before it posts again.
pub(super) fn ambiguous(e: &crate::api::Error) -> bool {
    match e {
        crate::api::Error::Service { status, .. } => *status >= 500 || *status == 408,
        // A transport failure, or an answer cut short or garbled after the service acted.
        crate::api::Error::Http(e) => !e.is_retry_later(),
        crate::api::Error::Unexpected { .. } | crate::api::Error::Incomplete { .. } => true,
        crate::api::Error::NotFound { .. }
        | crate::api::Error::Conflict { .. }
        | crate::api::Error::Unauthorized { .. }
        | crate::api::Error::LoginRefused { .. }
        | crate::api::Error::Interrupted { .. }
        | crate::api::Error::Redirect { .. }
        | crate::api::Error::Endpoint(_) => false,
    }
}

/// The one way imgferry creates a remote resource: look it up by its intent, and POST only when
/// it is not there. A POST that fails ambiguously is followed by another lookup (after a pause),
/// never by a blind second POST; a 409 "busy" is waited out. Gives up after six ambiguous
/// failures, leaving a resumable error.
pub(super) async fn create_settled<T>(
    ctx: &Ctx,
    m: &Migration,
    what: &str,
    mut lookup: impl AsyncFnMut() -> Result<Option<T>, Error>,
    mut post: impl AsyncFnMut() -> Result<T, crate::api::Error>,
) -> Result<T, Error> {
    let p = m.plan.polling;
    let started = std::time::Instant::now();
    let mut failures = 0;
    let mut pause = 1.0_f64;
    loop {
        if let Some(found) = lookup().await? {
            tracing::info!(%what, "found what an earlier attempt created");
            return Ok(found);
        }
        match post().await {
            Ok(v) => return Ok(v),
            Err(crate::api::Error::Conflict { message, .. })
                if started.elapsed().as_secs_f64() < p.deadline_secs =>
            {
                ctx.emit(Event::Waiting {
                    what: what.to_string(),
                    status: format!("busy (409): {message}"),
                });
                wait::pause(ctx, p.server_secs).await?;
            }
            Err(e) if ambiguous(&e) && failures < 5 => {
                failures += 1;
                ctx.emit(Event::Warning {
                    message: format!(
                        "creating {what} failed in a way that may have succeeded ({}); looking it up before trying again",
                        crate::error_chain(&e)
                    ),
                });
                // A request that timed out may still be carried out late, so look for a while
                // (twice the HTTP timeout) before daring a second POST.
                let window = std::time::Instant::now();
                while window.elapsed().as_secs_f64() < ctx.settle_secs {
                    if let Some(found) = lookup().await? {
                        return Ok(found);
                    }
                    wait::pause(ctx, p.server_secs.max(0.25)).await?;
                }
                wait::pause(ctx, pause).await?;
                pause = (pause * 2.0).min(60.0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Finds the snapshot by name or asks for it, waiting out 409 "server busy" answers.
pub(super) async fn settle_snapshot(
    ctx: &Ctx,
    src: &RegionApi,
    m: &Migration,
    server: &str,
    name: &str,
) -> Result<String, Error> {
    let what = format!("image {name} of server {server}");
    let answered = create_settled(
        ctx,
        m,
        &what,
        async || {
            Ok(src
                .images
                .find_images(name)
                .await?
                .first()
                .map(|i| Some(i.id.clone())))
        },
        async || src.compute.create_image(server, name).await,
    )
    .await?;
    if let Some(id) = answered {
        return Ok(id);
    }
    // No Location and no body id: the image is found by its unique name.
    let p = m.plan.polling;
    wait::until(
        ctx,
        &format!("image named {name}"),
        p.server_secs,
        p.deadline_secs,
        async || {
            Ok(match src.images.find_images(name).await?.first() {
                Some(i) => Poll::Ready(i.id.clone()),
                None => Poll::Pending("not listed yet".into()),
            })
        },
    )
    .await
}

/// Finds the task an earlier run may have created for `intent`, or creates it; saves the id.
pub(super) async fn settle_task(
    ctx: &Ctx,
    region: &RegionApi,
    m: &mut Migration,
    kind: &str,
) -> Result<String, Error> {
    fn slot<'a>(m: &'a mut Migration, kind: &str) -> Option<&'a mut TaskIntent> {
        if kind == "export" {
            m.facts.export_task.as_mut()
        } else {
            m.facts.import_task.as_mut()
        }
    }
    let intent = slot(m, kind)
        .cloned()
        .ok_or(Error::Invariant("a task step without its task intent"))?;
    if let Some(id) = intent.id {
        return Ok(id);
    }
    ctx.save(m).await?;
    let what = format!("{kind} task in {}", region.name);
    let id = create_settled(
        ctx,
        m,
        &what,
        async || match region.images.find_task(kind, &intent.input).await {
            Ok(task) => Ok(task.map(|t| t.id)),
            // The task list itself is refused (a cloud stricter than upstream Glance). The caller
            // already looked for what an export leaves behind; there is nothing else to ask.
            Err(crate::api::Error::Service {
                status: 400..=499,
                message,
                ..
            }) if kind == "export" => {
                ctx.emit(Event::Warning {
                    message: format!(
                        "the task list was refused ({message}) and no exported object exists \
                         yet, so the export is requested"
                    ),
                });
                Ok(None)
            }
            Err(e) => Err(e.into()),
        },
        async || Ok(region.images.create_task(kind, &intent.input).await?.id),
    )
    .await?;
    if let Some(i) = slot(m, kind) {
        i.id = Some(id.clone());
    }
    ctx.save(m).await?;
    Ok(id)
}
