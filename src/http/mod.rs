//! The shared HTTP layer: one reqwest client per run, a pure retry classifier, decorrelated-jitter
//! backoff with an injectable random source, and `http::Error`, which records what was attempted.
//!
//! Request bodies that may be retried must be re-creatable ([`Body`]: bytes or a file region), so
//! callers pass a closure that builds the request afresh for every attempt. [`send`] is the one
//! retry loop of the crate; the API clients wrap it only to refresh a token after a 401 and to
//! re-read an answer cut short, both drawing on the same [`Attempts`] budget.

pub mod body;
pub mod gate;
pub mod retry;

use std::time::Duration;

pub use body::Body;
pub use gate::Gate;
pub use retry::{Attempts, Backoff, Decision, Idempotency, Outcome, RetryConfig, classify};

/// The slowest average rate a bulk transfer (a segment GET or PUT) may have before it counts as
/// timed out: a peer that dribbles a byte a second cannot hold a connection for ever.
pub const MIN_BULK_RATE: u64 = 64 << 10;

/// The whole-request deadline of an ordinary request (JSON, HEAD, listings): four read timeouts,
/// plus what 256 KiB takes at [`MIN_BULK_RATE`] (4 s). Real answers are a few KiB; a listing of
/// 10,000 names (about 1 MiB) still has 8 minutes at the default 120 s read timeout.
pub fn small_deadline(read: Duration) -> Duration {
    read * 4 + Duration::from_secs((256 << 10) / MIN_BULK_RATE)
}

/// The whole-request deadline of a bulk request of `len` bytes: four read timeouts plus `len` at
/// [`MIN_BULK_RATE`] (a 128 MiB segment: 8 minutes + 34 minutes with the default timeout).
pub fn bulk_deadline(read: Duration, len: u64) -> Duration {
    read * 4 + Duration::from_secs(len / MIN_BULK_RATE)
}

/// Builds the one client a run uses: rustls with certificate verification (there is no option to
/// turn it off), connect and read timeouts, no redirects to other hosts.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    client_with_timeout(Duration::from_secs(120))
}

/// [`client`] with a different read timeout (the time allowed between bytes of an answer); the
/// connect timeout is the smaller of it and 20 s, and every request must finish within
/// [`small_deadline`] unless it sets its own ([`bulk_deadline`]).
pub fn client_with_timeout(read: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let read = read.max(Duration::from_millis(100));
    reqwest::Client::builder()
        .connect_timeout(read.min(Duration::from_secs(20)))
        .read_timeout(read)
        .timeout(small_deadline(read))
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
    /// Ctrl-C or SIGTERM arrived while the request was in flight or waiting to be retried.
    Cancelled,
    /// The service asked to wait longer than the step may (a rate limit): try again after `at`.
    RetryLater {
        status: u16,
        after: Duration,
        at: String,
    },
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "HTTP {s}"),
            Self::Connect(e) => write!(f, "connection failed ({e})"),
            Self::Timeout => write!(f, "timed out"),
            Self::Body(e) => write!(f, "response body failed ({e})"),
            Self::Cancelled => write!(f, "interrupted"),
            Self::RetryLater { status, after, at } => write!(
                f,
                "HTTP {status}: the service asks to wait {} (until {at}), longer than this step \
                 may wait; resume after that",
                humantime::format_duration(Duration::from_secs(after.as_secs()))
            ),
        }
    }
}

impl Error {
    /// Whether the request stopped because the run was interrupted.
    pub fn is_cancelled(&self) -> bool {
        self.cause == Cause::Cancelled
    }

    /// Whether the service refused it for now and said when to come back (it did not act).
    pub fn is_retry_later(&self) -> bool {
        matches!(self.cause, Cause::RetryLater { .. })
    }
}

/// Strips the query from a URL for messages.
pub fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// What a retry hook is told about one retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry<'a> {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    pub delay: Duration,
    pub reason: &'a str,
    /// The wait is the service's own (`Retry-After`, `retryAt`), longer than the backoff cap.
    pub requested: bool,
}

/// Called on every retry, so the user sees why a run is slow.
pub type OnRetry = dyn Fn(&Retry<'_>) + Send + Sync;
pub type RetryHook = std::sync::Arc<OnRetry>;

/// A hook that reports nothing.
pub fn no_hook() -> RetryHook {
    std::sync::Arc::new(|_| {})
}

/// Sends a request built by `build`, retrying as [`classify`] decides. Returns the first response
/// that is not retried: a success, or a final failure status for the caller to interpret. A
/// retryable failure that runs out of attempts is an [`Error`] carrying the status and body.
pub async fn send(
    cfg: &RetryConfig,
    kind: Idempotency,
    build: impl FnMut() -> reqwest::RequestBuilder,
    on_retry: &crate::http::OnRetry,
) -> Result<reqwest::Response, Error> {
    send_within(&mut Attempts::new(cfg), kind, build, on_retry).await
}

/// [`send`] drawing from an existing budget, so that a caller that also retries failures to read
/// the answer (`api::fetch`) shares one count of attempts with this loop.
pub async fn send_within(
    attempts: &mut Attempts,
    kind: Idempotency,
    mut build: impl FnMut() -> reqwest::RequestBuilder,
    on_retry: &crate::http::OnRetry,
) -> Result<reqwest::Response, Error> {
    loop {
        pass_gate(attempts).await?;
        let attempt = attempts.start();
        let (client, request) = build().build_split();
        let request = request.map_err(|e| {
            Failed {
                method: String::new(),
                url: String::new(),
                attempt,
            }
            .error(
                attempts,
                Cause::Connect(root_cause(&e)),
                None,
                String::new(),
            )
        })?;
        let failed = Failed {
            method: request.method().to_string(),
            url: redact(request.url().as_str()),
            attempt,
        };
        let call = logged(&failed, try_once(&client, request));
        let Some(tried) = attempts.or_cancel(call).await else {
            return Err(failed.error(attempts, Cause::Cancelled, None, String::new()));
        };
        let decision = classify(&tried.outcome, kind);
        if let Some(delay) = attempts.retry_after(decision) {
            if let Outcome::Status { status, .. } = tried.outcome
                && gate::is_rate_limit(status)
            {
                attempts.close_gate(delay);
            }
            let why = tried.outcome.reason();
            let (method, url) = (&failed.method, &failed.url);
            tracing::info!(%method, %url, attempt, delay_ms = delay.as_millis() as u64, %why, "retrying");
            on_retry(&Retry {
                attempt,
                delay,
                reason: &why,
                requested: delay > attempts.max_delay(),
            });
            if attempts
                .or_cancel(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return Err(failed.error(attempts, Cause::Cancelled, None, String::new()));
            }
            continue;
        }
        if let Some(after) = attempts.too_long(decision) {
            let status = match &tried.outcome {
                Outcome::Status { status, .. } => *status,
                _ => 0,
            };
            let at = clock_after(after);
            let cause = Cause::RetryLater { status, after, at };
            return Err(failed.error(attempts, cause, Some(status), String::new()));
        }
        let (cause, status, body) = match (tried.result, decision) {
            (Tried::Answer(resp), Decision::Done | Decision::Fail) => return Ok(resp),
            (Tried::Answer(resp), Decision::Retry(_)) => {
                let status = resp.status().as_u16();
                let body = read_capped(resp, 64 * 1024).await;
                (Cause::Status(status), Some(status), body)
            }
            (Tried::OverLimit(body), _) => (Cause::Status(413), Some(413), body),
            (Tried::Failed(e), _) if e.is_timeout() => (Cause::Timeout, None, String::new()),
            (Tried::Failed(e), _) => (Cause::Connect(root_cause(&e)), None, String::new()),
        };
        return Err(failed.error(attempts, cause, status, body));
    }
}

/// `-vv`: every request imgferry makes, its answer and how long it took. The URL is the redacted
/// one; headers, where tokens travel, are never logged.
async fn logged(request: &Failed, attempt: impl Future<Output = Attempt>) -> Attempt {
    let sent = std::time::Instant::now();
    let tried = attempt.await;
    tracing::debug!(
        "{} {} -> {} in {:.3} s",
        request.method,
        request.url,
        match &tried.outcome {
            Outcome::Status { status, .. } => status.to_string(),
            other => other.reason(),
        },
        sent.elapsed().as_secs_f64()
    );
    tried
}

/// Waits while a rate limit another request of the fleet met holds this one too.
async fn pass_gate(attempts: &Attempts) -> Result<(), Error> {
    match attempts.or_cancel(attempts.pass_gate()).await {
        Some(()) => Ok(()),
        None => Err(Failed {
            method: String::new(),
            url: String::new(),
            attempt: attempts.made(),
        }
        .error(attempts, Cause::Cancelled, None, String::new())),
    }
}

/// What a final error says about the request that failed.
struct Failed {
    method: String,
    url: String,
    attempt: u32,
}

impl Failed {
    fn error(&self, attempts: &Attempts, cause: Cause, status: Option<u16>, body: String) -> Error {
        Error {
            method: self.method.clone(),
            url: self.url.clone(),
            attempts: self.attempt,
            elapsed: attempts.elapsed(),
            cause,
            status,
            body: body.chars().take(300).collect(),
        }
    }
}

/// The UTC time `after` from now, as people read it (`2026-11-29 17:05 UTC`).
pub fn clock_after(after: Duration) -> String {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(after).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(jiff::Timestamp::MAX);
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// One attempt's result and how the retry policy sees it.
struct Attempt {
    result: Tried,
    outcome: Outcome,
}

enum Tried {
    Answer(reqwest::Response),
    /// A 413 without `Retry-After`, whose body (read to find `overLimit.retryAt`) is kept.
    OverLimit(String),
    Failed(reqwest::Error),
}

async fn try_once(client: &reqwest::Client, request: reqwest::Request) -> Attempt {
    match client.execute(request).await {
        // A 413 without Retry-After may say when in its body (`overLimit.retryAt`); reading it
        // consumes the response, so a final 413 becomes an Error carrying the body.
        Ok(resp)
            if resp.status().as_u16() == 413 && retry::retry_after(resp.headers()).is_none() =>
        {
            let body = read_capped(resp, 64 * 1024).await;
            let retry_after = retry::parse_retry_at(&body, std::time::SystemTime::now());
            Attempt {
                result: Tried::OverLimit(body),
                outcome: Outcome::Status {
                    status: 413,
                    retry_after,
                },
            }
        }
        Ok(resp) => Attempt {
            outcome: Outcome::Status {
                status: resp.status().as_u16(),
                retry_after: retry::retry_after(resp.headers()),
            },
            result: Tried::Answer(resp),
        },
        Err(e) => Attempt {
            outcome: if e.is_timeout() {
                Outcome::Timeout
            } else if e.is_connect() {
                Outcome::Connect
            } else {
                Outcome::Reset
            },
            result: Tried::Failed(e),
        },
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
