//! The fault middleware: every request is matched against the fault plan before (and its answer
//! after) the service handles it.

use super::*;

/// Which service and region a path belongs to, for fault matching.
fn classify(path: &str) -> (faults::Service, Option<&str>) {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or("");
    match (first, parts.next()) {
        ("identity", _) => (faults::Service::Identity, None),
        (region, Some("servers")) => (faults::Service::Compute, Some(region)),
        (region, Some("images")) => (faults::Service::Images, Some(region)),
        (region, _) => (faults::Service::Files, Some(region)),
    }
}

/// Runs every request through the fault plan: failures answer at once, delays wait, token expiry
/// happens before the request is handled, and body shaping wraps the response (and, for a throttle,
/// the request body too, so uploads are paced like downloads).
pub(super) async fn apply_faults(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    // Rules match the decoded path, however the client chose to escape it.
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    if path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let (service, region) = classify(&path);
    let method = req.method().to_string();
    let target = faults::Target {
        service,
        region,
        method: &method,
        path: &path,
    };
    let (actions, link) = shared.faults.check(&target);
    for action in &actions {
        match action {
            faults::Action::Fail {
                status,
                retry_after_secs,
            } => {
                tracing::debug!(%path, status, "simulated failure");
                return faults::failure(service, *status, *retry_after_secs);
            }
            faults::Action::Delay { ms } => {
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await
            }
            faults::Action::Echo { status } => return echo(*status, req).await,
            faults::Action::ExpireTokens => shared.tokens.expire_all(),
            faults::Action::FailImport { code } => shared.faults.fail_next_import(*code),
            _ => {}
        }
    }
    let rate = actions
        .iter()
        .filter_map(|a| match a {
            faults::Action::Throttle { bytes_per_sec } => Some(*bytes_per_sec),
            _ => None,
        })
        .chain(link)
        .min();
    let req = match rate {
        Some(rate) => {
            let (parts, body) = req.into_parts();
            let paced = faults::throttle(Box::pin(body.into_data_stream()), rate);
            Request::from_parts(parts, Body::from_stream(paced))
        }
        None => req,
    };
    let resp = next.run(req).await;
    for action in &actions {
        if let faults::Action::DelayResponse { ms } = action {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
        }
    }
    let resp = faults::drop_listing_entries(resp, &actions).await;
    faults::shape_body(resp, &actions, link)
}

/// The answer of [`faults::Action::Echo`]: the request's headers and (at most 64 KiB of) body in
/// a JSON fault message.
async fn echo(status: u16, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers: Vec<String> = parts
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let body = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let message = format!(
        "bad request {} {} headers [{}] body {}",
        parts.method,
        parts.uri,
        headers.join("; "),
        String::from_utf8_lossy(&body)
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(
            serde_json::json!({"badRequest": {"code": status.as_u16(), "message": message}}),
        ),
    )
        .into_response()
}
