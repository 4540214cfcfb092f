//! The shared HTTP layer: one reqwest client per run, a pure retry classifier, decorrelated-jitter
//! backoff with an injectable random source, and `http::Error`, which records what was attempted.
//!
//! Request bodies that may be retried must be re-creatable (a file region or bytes), so callers
//! pass a closure that builds the request afresh for every attempt.

pub mod retry;

use std::time::{Duration, Instant};

pub use retry::{Backoff, Decision, Outcome, RetryConfig, classify};

/// Builds the one client a run uses: rustls with certificate verification (there is no option to
/// turn it off), connect and read timeouts, no redirects to other hosts.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    client_with_timeout(Duration::from_secs(120))
}

/// [`client`] with a different read timeout (the time allowed between bytes of an answer); the
/// connect timeout is the smaller of it and 20 s.
pub fn client_with_timeout(read: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let read = read.max(Duration::from_millis(100));
    reqwest::Client::builder()
        .connect_timeout(read.min(Duration::from_secs(20)))
        .read_timeout(read)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("imgferry/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A request that failed for good, after retries where they were allowed.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url} failed after {attempts} attempt(s) in {elapsed:.1?}: {cause}")]
pub struct Error {
    pub method: String,
    /// The URL with any query string removed (queries never carry secrets here, but stay short).
    pub url: String,
    pub attempts: u32,
    pub elapsed: Duration,
    pub cause: Cause,
    /// The final HTTP status, when there was one.
    pub status: Option<u16>,
    /// The start of the final response body, for service error messages.
    pub body: String,
}

/// The last thing that went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Status(u16),
    Connect(String),
    Timeout,
    Body(String),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "HTTP {s}"),
            Self::Connect(e) => write!(f, "connection failed ({e})"),
            Self::Timeout => write!(f, "timed out"),
            Self::Body(e) => write!(f, "response body failed ({e})"),
        }
    }
}

impl Error {
    pub fn is_status(&self, status: u16) -> bool {
        self.status == Some(status)
    }
}

/// Strips the query from a URL for messages.
pub fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Sends a request built by `build`, retrying as [`classify`] decides. Returns the first response
/// that is not retried: a success, or a final failure status for the caller to interpret. A
/// retryable failure that runs out of attempts is an [`Error`] carrying the status and body.
pub async fn send(
    cfg: &RetryConfig,
    idempotent: bool,
    mut build: impl FnMut() -> reqwest::RequestBuilder,
    on_retry: &(dyn Fn(u32, Duration, &str) + Send + Sync),
) -> Result<reqwest::Response, Error> {
    let started = Instant::now();
    let mut backoff = Backoff::new(cfg);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (client, request) = build().build_split();
        let request = request.map_err(|e| Error {
            method: String::new(),
            url: String::new(),
            attempts: attempt,
            elapsed: started.elapsed(),
            cause: Cause::Connect(root_cause(&e)),
            status: None,
            body: String::new(),
        })?;
        let (method, url) = (request.method().to_string(), redact(request.url().as_str()));
        // A 413 without Retry-After may say when in its body (`overLimit.retryAt`); reading it
        // consumes the response, so a final 413 becomes an Error carrying the body.
        let (result, over_limit_body) = match client.execute(request).await {
            Ok(resp)
                if resp.status().as_u16() == 413
                    && retry::retry_after(resp.headers()).is_none() =>
            {
                (None, Some(read_capped(resp, 64 * 1024).await))
            }
            other => (Some(other), None),
        };
        let outcome = match (&result, &over_limit_body) {
            (Some(Ok(resp)), _) => Outcome::Status {
                status: resp.status().as_u16(),
                retry_after: retry::retry_after(resp.headers()),
            },
            (Some(Err(e)), _) if e.is_timeout() => Outcome::Timeout,
            (Some(Err(e)), _) if e.is_connect() => Outcome::Connect,
            (Some(Err(_)), _) => Outcome::Reset,
            (None, body) => Outcome::Status {
                status: 413,
                retry_after: body
                    .as_deref()
                    .and_then(|b| retry::parse_retry_at(b, std::time::SystemTime::now())),
            },
        };
        let decision = classify(&outcome, idempotent);
        if let Decision::Retry(hint) = decision
            && attempt <= cfg.max_retries
            && started.elapsed() < cfg.retry_timeout
        {
            let delay = backoff.next(hint);
            let why = match &outcome {
                Outcome::Status { status, .. } => format!("HTTP {status}"),
                Outcome::Timeout => "timeout".into(),
                Outcome::Connect => "cannot connect".into(),
                Outcome::Reset => "connection reset".into(),
            };
            tracing::info!(%method, %url, attempt, max = cfg.max_retries, delay_ms = delay.as_millis() as u64, %why, "retrying");
            on_retry(attempt, delay, &why);
            tokio::time::sleep(delay).await;
            continue;
        }
        let Some(result) = result else {
            let body = over_limit_body.unwrap_or_default();
            return Err(Error {
                method,
                url,
                attempts: attempt,
                elapsed: started.elapsed(),
                cause: Cause::Status(413),
                status: Some(413),
                body: body.chars().take(300).collect(),
            });
        };
        let (cause, status, body) = match (result, decision) {
            (Ok(resp), Decision::Done | Decision::Fail) => return Ok(resp),
            (Ok(resp), Decision::Retry(_)) => {
                let status = resp.status().as_u16();
                let body: String = read_capped(resp, 64 * 1024)
                    .await
                    .chars()
                    .take(300)
                    .collect();
                (Cause::Status(status), Some(status), body)
            }
            (Err(e), _) if e.is_timeout() => (Cause::Timeout, None, String::new()),
            (Err(e), _) => (Cause::Connect(root_cause(&e)), None, String::new()),
        };
        return Err(Error {
            method,
            url,
            attempts: attempt,
            elapsed: started.elapsed(),
            cause,
            status,
            body,
        });
    }
}

/// Reads at most `cap` bytes of a response body as text (an error body is never trusted to be
/// small).
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> String {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The innermost cause of an error, for a short message.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
