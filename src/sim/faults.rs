//! Faults as data: rules that make the simulator misbehave the way real clouds do, settable from
//! Rust tests ([`super::SimHandle::set_faults`]) and from `sim serve --faults FILE.json`.
//!
//! A rule matches requests by service, region, method and a path substring, and fires on the Nth
//! match (1-based) and the `times − 1` matches after it. Actions: fail with a status (optionally with
//! `Retry-After`), reset the connection after K body bytes, delay, throttle, flip a byte of the body,
//! expire every token, or make the next import task fail with a documented code. A plan-wide
//! `throttle_bytes_per_sec` models a WAN link for every connection.
//!
//! ```json
//! {"throttle_bytes_per_sec": 16777216,
//!  "rules": [{"service": "files", "method": "GET", "path_contains": ".vhd-00002", "nth": 1,
//!             "action": {"kind": "reset_after", "bytes": 1048576}},
//!            {"service": "compute", "nth": 2, "times": 3,
//!             "action": {"kind": "fail", "status": 413, "retry_after_secs": 1}}]}
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// The service a request is for, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Identity,
    Compute,
    Images,
    Files,
}

/// What a firing rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Answer with this status and a body shaped as the service shapes it; 413 from compute carries
    /// `overLimit.retryAt`, and `retry_after_secs` also sets `Retry-After`.
    Fail {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Send the first `bytes` of the response body, then drop the connection.
    ResetAfter { bytes: u64 },
    /// Wait before handling the request.
    Delay { ms: u64 },
    /// Handle the request, then wait before answering: the service has acted but the client does
    /// not know yet. The window where a crash or a timeout tempts a client to create twice.
    DelayResponse { ms: u64 },
    /// Send the response body at this rate.
    Throttle { bytes_per_sec: u64 },
    /// XOR the response body byte at `offset` with 0xFF.
    FlipByte { offset: u64 },
    /// Expire every token now, then handle the request (which then fails with 401).
    ExpireTokens,
    /// Make the next import task fail with this documented code.
    FailImport { code: u16 },
    /// Leave out of a JSON container listing every entry whose name contains this: a listing that
    /// lags behind the objects (Cloud Files listings are eventually consistent).
    DropListingEntry { name_contains: String },
    /// Answer with this status and a body that echoes the request: its headers (the token among
    /// them) and its body (credentials, for a login). What a careless proxy or service does.
    Echo { status: u16 },
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub service: Option<Service>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    /// The decoded path ends with this (`/exports` matches a container listing, not its objects).
    #[serde(default)]
    pub path_suffix: Option<String>,
    /// Fire on the Nth matching request (1-based)…
    #[serde(default = "one")]
    pub nth: u64,
    /// …and on this many matches in total from there.
    #[serde(default = "one")]
    pub times: u64,
    pub action: Action,
}

fn one() -> u64 {
    1
}

/// A set of rules and an optional link-wide throttle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub throttle_bytes_per_sec: Option<u64>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Plan {
    /// A plan of `rules` and no link-wide throttle.
    pub fn with_rules(rules: Vec<Rule>) -> Self {
        Self {
            throttle_bytes_per_sec: None,
            rules,
        }
    }
}

/// The live fault state: the plan, a match counter per rule, and a pending import failure.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<(Plan, Vec<u64>)>,
    import_failure: Mutex<Option<u16>>,
}

/// What a request is, for matching.
pub struct Target<'a> {
    pub service: Service,
    pub region: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
}

impl Rule {
    /// A rule doing `action` to the first request of `method` to `service` (any region, any path);
    /// narrow and repeat it with the methods below.
    pub fn new(service: Service, method: &str, action: Action) -> Self {
        Self {
            service: Some(service),
            region: None,
            method: Some(method.to_string()),
            path_contains: None,
            path_suffix: None,
            nth: 1,
            times: 1,
            action,
        }
    }

    pub fn in_region(mut self, region: &str) -> Self {
        self.region = Some(region.to_string());
        self
    }

    /// Only requests whose decoded path contains `part`.
    pub fn path(mut self, part: &str) -> Self {
        self.path_contains = Some(part.to_string());
        self
    }

    /// Only requests whose decoded path ends with `suffix`.
    pub fn suffix(mut self, suffix: &str) -> Self {
        self.path_suffix = Some(suffix.to_string());
        self
    }

    /// Fire from the `nth` match (1-based) on, `times` times in all.
    pub fn firing(mut self, nth: u64, times: u64) -> Self {
        self.nth = nth;
        self.times = times;
        self
    }

    /// Any method.
    pub fn any_method(mut self) -> Self {
        self.method = None;
        self
    }

    fn matches(&self, t: &Target<'_>) -> bool {
        self.service.is_none_or(|s| s == t.service)
            && self
                .region
                .as_deref()
                .is_none_or(|r| t.region.is_some_and(|tr| tr.eq_ignore_ascii_case(r)))
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(t.method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| t.path.contains(p))
            && self
                .path_suffix
                .as_deref()
                .is_none_or(|p| t.path.ends_with(p))
    }
}

impl Faults {
    /// Replaces the plan and resets the counters.
    pub fn set(&self, plan: Plan) {
        let n = plan.rules.len();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (plan, vec![0; n]);
    }

    /// Counts this request against every matching rule and returns the actions that fire, plus the
    /// plan-wide throttle.
    pub fn check(&self, t: &Target<'_>) -> (Vec<Action>, Option<u64>) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (plan, counts) = &mut *guard;
        let mut fired = Vec::new();
        for (rule, count) in plan.rules.iter().zip(counts.iter_mut()) {
            if rule.matches(t) {
                *count += 1;
                if *count >= rule.nth && *count < rule.nth.saturating_add(rule.times) {
                    fired.push(rule.action.clone());
                }
            }
        }
        (fired, plan.throttle_bytes_per_sec)
    }

    pub fn fail_next_import(&self, code: u16) {
        *self
            .import_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(code);
    }

    /// The import failure to apply now, if one was requested (consumed).
    pub fn take_import_failure(&self) -> Option<crate::vhd::ImportCode> {
        let code = self
            .import_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        crate::vhd::ImportCode::from_number(code)
    }
}

/// An error response shaped as `service` shapes it.
pub fn failure(service: Service, status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut resp = match (service, status.as_u16()) {
        (Service::Compute | Service::Identity, 413) => {
            let at = SystemTime::now() + Duration::from_secs(retry_after.unwrap_or(1));
            let body = serde_json::json!({"overLimit": {"code": 413, "message": "OverLimit Retry...",
                "details": "Error Details...", "retryAt": humantime::format_rfc3339_seconds(at).to_string()}});
            (status, axum::Json(body)).into_response()
        }
        (Service::Compute | Service::Identity, code) => {
            let name = if code >= 500 {
                "computeFault"
            } else {
                "badRequest"
            };
            (
                status,
                axum::Json(serde_json::json!({ name: {"code": code, "message": reason}})),
            )
                .into_response()
        }
        (Service::Files, _) => (
            status,
            format!("<html><h1>{reason}</h1><p>Simulated fault.</p></html>"),
        )
            .into_response(),
        (Service::Images, _) => (
            status,
            format!("{} {reason}\n\nSimulated fault.", status.as_u16()),
        )
            .into_response(),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// Removes listing entries named by `DropListingEntry` actions from a JSON listing response.
pub async fn drop_listing_entries(resp: Response, actions: &[Action]) -> Response {
    let drops: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::DropListingEntry { name_contains } => Some(name_contains.as_str()),
            _ => None,
        })
        .collect();
    if drops.is_empty() || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let filtered = match serde_json::from_slice::<Vec<serde_json::Value>>(&bytes) {
        Ok(entries) => serde_json::to_vec(
            &entries
                .into_iter()
                .filter(|e| {
                    let name = e["name"].as_str().unwrap_or_default();
                    !drops.iter().any(|d| name.contains(d))
                })
                .collect::<Vec<_>>(),
        )
        .map(Bytes::from)
        .unwrap_or(bytes),
        Err(_) => bytes,
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(filtered.len()));
    Response::from_parts(parts, Body::from(filtered))
}

/// Applies the body-shaping actions (reset, throttle, flip) to a response.
pub fn shape_body(resp: Response, actions: &[Action], link_throttle: Option<u64>) -> Response {
    let mut reset = None;
    let mut rate = link_throttle;
    let mut flip = None;
    for a in actions {
        match a {
            Action::ResetAfter { bytes } => reset = Some(*bytes),
            Action::Throttle { bytes_per_sec } => {
                rate = Some(rate.map_or(*bytes_per_sec, |r| r.min(*bytes_per_sec)))
            }
            Action::FlipByte { offset } => flip = Some(*offset),
            _ => {}
        }
    }
    if reset.is_none() && rate.is_none() && flip.is_none() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let mut stream: ByteStream = Box::pin(body.into_data_stream());
    if let Some(offset) = flip {
        stream = Box::pin(flip_byte(stream, offset));
    }
    if let Some(limit) = reset {
        stream = Box::pin(cut_after(stream, limit));
    }
    if let Some(rate) = rate {
        stream = throttle(stream, rate);
    }
    Response::from_parts(parts, Body::from_stream(stream))
}

fn flip_byte(s: ByteStream, offset: u64) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send {
    let mut pos = 0u64;
    s.map(move |chunk| {
        let chunk = chunk?;
        let start = pos;
        pos += chunk.len() as u64;
        if (start..pos).contains(&offset) {
            let mut v = chunk.to_vec();
            v[(offset - start) as usize] ^= 0xFF;
            return Ok(Bytes::from(v));
        }
        Ok(chunk)
    })
}

fn cut_after(s: ByteStream, limit: u64) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send {
    // States: still sending; at the limit (the next poll is the reset, even if the body had no
    // more bytes, so a one-chunk JSON answer is cut too); finished.
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        Sending(u64),
        Limit,
        Done,
    }
    futures::stream::unfold((s, At::Sending(0)), move |(mut s, at)| async move {
        match at {
            At::Done => None,
            At::Limit => {
                // An error mid-body makes hyper drop the connection: the client sees a reset.
                // Pause first so the K bytes (and the headers) are really flushed to the client,
                // rather than dropped with the connection.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Err(axum::Error::new("simulated connection reset")),
                    (s, At::Done),
                ))
            }
            At::Sending(sent) => match s.next().await {
                None => None,
                Some(Err(e)) => Some((Err(e), (s, At::Done))),
                Some(Ok(chunk)) => {
                    let room = limit.saturating_sub(sent);
                    if (chunk.len() as u64) < room {
                        let n = chunk.len() as u64;
                        Some((Ok(chunk), (s, At::Sending(sent + n))))
                    } else {
                        Some((Ok(chunk.slice(..room as usize)), (s, At::Limit)))
                    }
                }
            },
        }
    })
}

/// Paces a body to `rate` bytes per second, in pieces of at most 64 KiB.
pub fn throttle(s: ByteStream, rate: u64) -> ByteStream {
    let rate = rate.max(1);
    let start = Instant::now();
    // Pieces of about a sixteenth of a second's worth (at most 64 KiB): at a few bytes a second
    // the answer dribbles in byte by byte, as a slow peer's does, instead of arriving whole late.
    let size = usize::try_from(rate / 16)
        .unwrap_or(usize::MAX)
        .clamp(1, 64 * 1024);
    let pieces = s.flat_map(move |chunk| {
        let parts: Vec<Result<Bytes, axum::Error>> = match chunk {
            Err(e) => vec![Err(e)],
            Ok(b) => (0..b.len())
                .step_by(size)
                .map(|i| Ok(b.slice(i..(i + size).min(b.len()))))
                .collect(),
        };
        futures::stream::iter(parts)
    });
    Box::pin(pieces.scan(0u64, move |sent, piece| {
        let n = piece.as_ref().map_or(0, |b| b.len() as u64);
        *sent += n;
        let due = start + Duration::from_secs_f64(*sent as f64 / rate as f64);
        async move {
            tokio::time::sleep_until(due.into()).await;
            Some(piece)
        }
    }))
}
