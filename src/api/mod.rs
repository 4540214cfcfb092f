//! Clients of the Rackspace APIs, over the shared HTTP layer ([`crate::http`]).
//!
//! - [`identity`]: Identity v2.0 authentication and the service catalog.
//! - [`auth`]: the shared token, refreshed before expiry and after a 401.
//! - [`compute`]: Cloud Servers (servers, createImage).
//! - [`images`]: Cloud Images (images, export and import tasks).
//! - [`object_store`]: Cloud Files (Swift v1), what the transfer engine needs.
//! - [`keystone`], [`glance`]: an OpenStack cloud's Identity v3 and Image v2 services.
//!
//! [`JsonService`] is the common core of the JSON APIs: every response body is read with a size
//! cap and parsed into typed structs, and anything unexpected becomes [`Error::Unexpected`] naming
//! the endpoint, never a panic.

pub mod auth;
pub mod compute;
pub mod glance;
pub mod identity;
pub mod images;
pub mod keystone;
pub mod neutron;
pub mod object_store;

use crate::http::Idempotency;

/// Characters escaped in a URL path segment: everything but RFC 3986's unreserved set, so an id
/// can never climb out of its path (`../`) or start a query.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `id` as one URL path segment. `.` and `..` are escaped too: they are path steps, not names.
pub fn segment(id: &str) -> String {
    match id {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => percent_encoding::utf8_percent_encode(id, SEGMENT).to_string(),
    }
}

/// What an API call can fail with, by meaning rather than status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} was not found ({url})")]
    NotFound { what: String, url: String },
    #[error("{url} refused the request as conflicting with the resource's state: {message}")]
    Conflict { url: String, message: String },
    #[error("the token was refused at {url}: authentication expired or is not valid")]
    Unauthorized { url: String },
    #[error(
        "the identity service at {url} refused the credentials (HTTP {status}): {message}; check \
         the user name and the API key or password"
    )]
    LoginRefused {
        url: String,
        status: u16,
        message: String,
    },
    /// Ctrl-C or SIGTERM arrived while an answer was being read.
    #[error("interrupted while reading the answer of {url}")]
    Interrupted { url: String },
    /// The endpoint cannot be used as configured (plain http to a remote host, say).
    #[error(transparent)]
    Endpoint(#[from] identity::CatalogError),
    #[error("{url} answered HTTP {status}: {message}")]
    Service {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "{url} answered HTTP {status}, a redirect to {location}; imgferry does not follow \
         redirects (a token must never be sent to another address): check the endpoint URL"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    #[error("{url} answered something unexpected: {detail}")]
    Unexpected { url: String, detail: String },
    /// Every attempt's answer stopped short of its end (a reset, or a peer too slow to finish
    /// within the request's deadline); retried within the request's one budget.
    #[error("{url}: {detail}; gave up after {attempts} attempt(s) in {seconds:.0} s")]
    Incomplete {
        url: String,
        detail: String,
        attempts: u32,
        seconds: f64,
    },
    #[error(transparent)]
    Http(Box<crate::http::Error>),
}

/// The largest JSON response body read from a service. Real answers are a few KiB; a hostile or
/// broken endpoint cannot make imgferry allocate more than this.
const MAX_JSON_BODY: usize = 8 << 20;

/// One JSON service endpoint (a region's compute or image URL) with the shared token.
#[derive(Clone)]
pub struct JsonService {
    pub http: reqwest::Client,
    /// The catalog's publicURL, without a trailing slash.
    pub base: String,
    pub auth: auth::Auth,
    pub retry: crate::http::RetryConfig,
    /// Told of every retry, so waits on a throttled or failing service are visible.
    pub on_retry: crate::http::RetryHook,
}

impl std::fmt::Debug for JsonService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonService")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl JsonService {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        auth: auth::Auth,
        retry: crate::http::RetryConfig,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
            retry,
            on_retry: crate::http::no_hook(),
        }
    }

    /// Reports retries to `hook`.
    pub fn with_retry_hook(mut self, hook: crate::http::RetryHook) -> Self {
        self.on_retry = hook;
        self
    }

    /// One attempt's request; `body` is its content type and bytes.
    fn build(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: Option<(&str, &bytes::Bytes)>,
        token: &str,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method.clone(), url)
            .header("X-Auth-Token", token)
            .header("Accept", "application/json");
        if let Some((content_type, bytes)) = body {
            r = r.header("Content-Type", content_type).body(bytes.clone());
        }
        r
    }

    /// Sends `method url`, with `body` (content type, bytes) when given, through the retry path.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&str, bytes::Bytes)>,
        kind: Idempotency,
    ) -> Result<reqwest::Response, Error> {
        let mut attempts = crate::http::Attempts::new(&self.retry);
        let body = body.as_ref().map(|(t, b)| (*t, b));
        auth::send(
            &self.auth,
            &mut attempts,
            kind,
            |token| self.build(&method, url, body, token),
            &*self.on_retry,
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Sends `method url` with an optional JSON body. [`Idempotency::Creating`] POSTs are never
    /// retried after a timeout (the intent lookup settles them instead).
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
        kind: Idempotency,
    ) -> Result<reqwest::Response, Error> {
        let json = body.map(|b| {
            (
                "application/json",
                serde_json::to_vec(b).unwrap_or_default().into(),
            )
        });
        self.send(method, url, json, kind).await
    }

    /// Sends `body` with its own content type (a JSON patch, say).
    pub async fn send_body(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        kind: Idempotency,
    ) -> Result<reqwest::Response, Error> {
        self.send(method, url, Some((content_type, body)), kind)
            .await
    }

    /// POSTs a request that creates something (never retried where the service may have acted;
    /// the migration settles such failures by lookup). A failure status becomes an error.
    pub async fn create(
        &self,
        what: &str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, Error> {
        let resp = self
            .request(
                reqwest::Method::POST,
                url,
                Some(body),
                Idempotency::Creating,
            )
            .await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(Error::from_response(what, resp).await)
        }
    }

    /// GETs `url` and parses the JSON answer; `None` on 404. An answer cut short is fetched again.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<Option<T>, Error> {
        let fetched = fetch(
            &self.auth,
            &self.retry,
            MAX_JSON_BODY,
            |token| self.build(&reqwest::Method::GET, url, None, token),
            &*self.on_retry,
        )
        .await?;
        match fetched.status {
            404 => Ok(None),
            200..=299 => fetched.json(what).map(Some),
            _ => Err(fetched.into_error(what)),
        }
    }
}

/// A whole answer: status and body, read with a size cap.
#[derive(Debug)]
pub struct Fetched {
    /// The redacted URL.
    pub url: String,
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Location` of a redirect (which is never followed).
    pub location: Option<String>,
    /// Keystone v3's token, which it answers in a header (`X-Subject-Token`).
    pub subject_token: Option<String>,
}

impl Fetched {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Unexpected {
            url: self.url.clone(),
            detail: format!("the {what} response is not the expected JSON ({e})"),
        })
    }

    /// The error a failure status means.
    pub fn into_error(self, what: &str) -> Error {
        if let Some(e) = Error::redirect(&self.url, self.status, self.location.as_deref()) {
            return e;
        }
        Error::from_parts(
            what,
            self.url,
            self.status,
            &String::from_utf8_lossy(&self.body),
        )
    }
}

/// Why a body could not be read.
enum BodyError {
    /// Larger than the cap: not retried.
    TooLarge(String),
    /// Cut short: worth another request.
    Cut(String),
}

async fn read_body(
    mut resp: reqwest::Response,
    cap: usize,
    sent: std::time::Instant,
) -> Result<Vec<u8>, BodyError> {
    if let Some(n) = resp.content_length().filter(|n| *n > cap as u64) {
        return Err(BodyError::TooLarge(format!(
            "the answer claims {n} bytes, more than the {cap} it may have"
        )));
    }
    // Sized once from the announced length (never past the cap): a growing Vec would hold up to
    // twice a large answer while it reallocates.
    let announced = resp
        .content_length()
        .map_or(0, |n| n.min(cap as u64) as usize);
    let mut body = Vec::with_capacity(announced);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(BodyError::TooLarge(format!(
                        "the answer is larger than {cap} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            // The request's whole deadline passed while the answer was still arriving (a peer
            // that dribbles): not a cut connection, and said as what it is.
            Err(e) if e.is_timeout() => {
                return Err(BodyError::Cut(format!(
                    "the answer did not complete within {:.0} s ({} bytes had arrived)",
                    sent.elapsed().as_secs_f64(),
                    body.len()
                )));
            }
            Err(e) => {
                return Err(BodyError::Cut(format!(
                    "the answer was cut short after {} bytes ({})",
                    body.len(),
                    crate::http::root_cause(&e)
                )));
            }
        }
    }
}

/// Sends an idempotent request built by `build` (given the current token) and reads its whole
/// body (at most `cap` bytes). A body cut short (a reset mid-answer) sends the request again.
/// Failures to get an answer and failures to read it draw on one budget of attempts, so a read is
/// tried at most `max_retries + 1` times (plus one after a 401).
pub async fn fetch(
    auth: &auth::Auth,
    retry: &crate::http::RetryConfig,
    cap: usize,
    mut build: impl FnMut(&str) -> reqwest::RequestBuilder,
    on_retry: &crate::http::OnRetry,
) -> Result<Fetched, Error> {
    let mut attempts = crate::http::Attempts::new(retry);
    loop {
        let kind = Idempotency::Idempotent;
        let sent = std::time::Instant::now();
        let resp = auth::send(auth, &mut attempts, kind, &mut build, on_retry).await?;
        if let Some(fetched) = read_or_retry(&mut attempts, resp, cap, sent, on_retry).await? {
            return Ok(fetched);
        }
    }
}

/// [`fetch`] without a token: the identity service's own requests.
pub async fn fetch_anonymous(
    retry: &crate::http::RetryConfig,
    cap: usize,
    mut build: impl FnMut() -> reqwest::RequestBuilder,
    on_retry: &crate::http::OnRetry,
) -> Result<Fetched, Error> {
    let mut attempts = crate::http::Attempts::new(retry);
    loop {
        let kind = Idempotency::Idempotent;
        let sent = std::time::Instant::now();
        let resp = crate::http::send_within(&mut attempts, kind, &mut build, on_retry).await?;
        if let Some(fetched) = read_or_retry(&mut attempts, resp, cap, sent, on_retry).await? {
            return Ok(fetched);
        }
    }
}

/// Reads an answer whole; `None` when it was cut short and, after the backoff delay, the request
/// should be sent again within the same budget.
pub(crate) async fn read_or_retry(
    attempts: &mut crate::http::Attempts,
    resp: reqwest::Response,
    cap: usize,
    sent: std::time::Instant,
    on_retry: &crate::http::OnRetry,
) -> Result<Option<Fetched>, Error> {
    let url = crate::http::redact(resp.url().as_str());
    let status = resp.status().as_u16();
    let location = location(&resp);
    let subject_token = subject_token(&resp);
    let interrupted = |url: String| Error::Interrupted { url };
    let Some(read) = attempts.or_cancel(read_body(resp, cap, sent)).await else {
        return Err(interrupted(url));
    };
    match read {
        Ok(body) => Ok(Some(Fetched {
            url,
            status,
            body,
            location,
            subject_token,
        })),
        Err(BodyError::Cut(detail)) => {
            let Some(delay) = attempts.retry_after(crate::http::Decision::Retry(None)) else {
                return Err(Error::Incomplete {
                    url,
                    detail,
                    attempts: attempts.made(),
                    seconds: attempts.elapsed().as_secs_f64(),
                });
            };
            let attempt = attempts.made();
            tracing::info!(%url, attempt, delay_ms = delay.as_millis() as u64, %detail, "retrying");
            on_retry(&crate::http::Retry {
                attempt,
                delay,
                reason: &detail,
                requested: false,
            });
            match attempts.or_cancel(tokio::time::sleep(delay)).await {
                Some(()) => Ok(None),
                None => Err(interrupted(url)),
            }
        }
        Err(BodyError::TooLarge(detail)) => Err(Error::Unexpected { url, detail }),
    }
}

/// Keystone v3's `X-Subject-Token`, registered as a secret the moment it is read.
fn subject_token(resp: &reqwest::Response) -> Option<String> {
    let token = resp
        .headers()
        .get("x-subject-token")?
        .to_str()
        .ok()?
        .to_string();
    crate::secrets::register(&token);
    Some(token)
}

/// The `Location` header of an answer, if it has a readable one.
fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a response body of at most [`MAX_JSON_BODY`] bytes and parses it as `T`. For answers to
/// requests that are not repeated (creating POSTs); reads use [`fetch`].
pub async fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    resp: reqwest::Response,
) -> Result<T, Error> {
    let url = crate::http::redact(resp.url().as_str());
    let status = resp.status().as_u16();
    let location = location(&resp);
    match read_body(resp, MAX_JSON_BODY, std::time::Instant::now()).await {
        Ok(body) => Fetched {
            url,
            status,
            body,
            location,
            subject_token: None,
        }
        .json(what),
        Err(BodyError::Cut(d) | BodyError::TooLarge(d)) => Err(Error::Unexpected {
            url,
            detail: format!("the {what} response: {d}"),
        }),
    }
}

impl Error {
    /// What kind of failure this is: refused credentials are [`Class::Auth`], an unusable
    /// endpoint is [`Class::Usage`], everything else may pass on a later run.
    pub fn class(&self) -> crate::exit_code::Class {
        use crate::exit_code::Class;
        match self {
            Error::Unauthorized { .. } | Error::LoginRefused { .. } => Class::Auth,
            Error::Endpoint(_) | Error::Redirect { .. } => Class::Usage,
            Error::Http(e) if e.is_cancelled() => Class::Interrupted,
            Error::Interrupted { .. } => Class::Interrupted,
            _ => Class::Failed,
        }
    }
}

impl From<crate::http::Error> for Error {
    fn from(e: crate::http::Error) -> Self {
        Self::Http(Box::new(e))
    }
}

impl Error {
    /// Builds the error for a final failure status, keeping the service's message (bodies may be
    /// JSON, HTML or plain text; none of that is trusted to parse).
    pub async fn from_response(what: &str, resp: reqwest::Response) -> Self {
        let url = crate::http::redact(resp.url().as_str());
        let status = resp.status().as_u16();
        if let Some(e) = Self::redirect(&url, status, location(&resp).as_deref()) {
            return e;
        }
        let body = crate::http::read_capped(resp, 64 * 1024).await;
        Self::from_parts(what, url, status, &body)
    }

    /// The error for a 3xx answer, naming where it pointed.
    fn redirect(url: &str, status: u16, location: Option<&str>) -> Option<Self> {
        (300..400).contains(&status).then(|| Self::Redirect {
            url: url.to_string(),
            status,
            location: location.map_or_else(
                || "nowhere (no Location header)".into(),
                crate::http::redact,
            ),
        })
    }

    /// Builds the error for a final failure status from an answer already read.
    pub fn from_parts(what: &str, url: String, status: u16, body: &str) -> Self {
        match status {
            401 => Self::Unauthorized { url },
            409 => Self::Conflict {
                url,
                message: short_message(body),
            },
            404 => Self::NotFound {
                what: what.to_string(),
                url,
            },
            _ => Self::Service {
                url,
                status,
                message: short_message(body),
            },
        }
    }
}

/// A short, single-line version of an error body: the `message` of a JSON fault if there is one,
/// otherwise the text with markup removed.
pub fn short_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(m) = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|f| f["message"].as_str())
    {
        // One line, as the name says: a service's message may hold line breaks or controls.
        return crate::text::escape_controls(m).into_owned();
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::short_message;

    #[test]
    fn messages_from_json_html_and_text() {
        assert_eq!(
            short_message(r#"{"badRequest": {"code": 400, "message": "bad"}}"#),
            "bad"
        );
        assert_eq!(
            short_message("<html><h1>Not Found</h1><p>Gone.</p></html>"),
            "Not Found Gone."
        );
        assert_eq!(short_message("plain\ntext"), "plain text");
        assert_eq!(short_message(""), "");
    }
}
