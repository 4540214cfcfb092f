//! A Cloud Files (Swift v1) client: just what the transfer engine and the remote pre-flight need.
//!
//! Every call goes through [`crate::http::send`] with the retry policy; uploads read their body
//! from a file region, so a retry re-reads the file and never the network. Object names are
//! percent-encoded per path segment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::Error;
use super::auth::{self, Auth};
use crate::http::{self, RetryConfig};
use crate::vhd::{ByteSource, SourceError};

/// Called on every retry with (attempt, delay, reason); the transfer engine turns it into events.
pub type RetryHook = Arc<dyn Fn(u32, Duration, &str) + Send + Sync>;

/// One Cloud Files account (a region's `publicURL`) and the token to use with it.
#[derive(Clone)]
pub struct ObjectStore {
    http: reqwest::Client,
    account_url: String,
    auth: Auth,
    retry: RetryConfig,
    on_retry: RetryHook,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("account_url", &self.account_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What a HEAD tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    /// Unquoted.
    pub etag: String,
    /// `container/prefix` of a DLO manifest.
    pub dlo: Option<String>,
    pub slo: bool,
}

/// A container listing entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Listed {
    pub name: String,
    pub bytes: u64,
    pub hash: String,
}

/// An SLO manifest entry as `?multipart-manifest=get` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SloEntry {
    /// `/container/object`.
    pub name: String,
    pub hash: String,
    pub bytes: u64,
}

/// Characters escaped in a path segment: everything but RFC 3986's unreserved set.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl ObjectStore {
    pub fn new(http: reqwest::Client, account_url: &str, auth: Auth, retry: RetryConfig) -> Self {
        Self {
            http,
            account_url: account_url.trim_end_matches('/').to_string(),
            auth,
            retry,
            on_retry: Arc::new(|_, _, _| {}),
        }
    }

    /// Reports retries to `hook`.
    pub fn with_retry_hook(mut self, hook: RetryHook) -> Self {
        self.on_retry = hook;
        self
    }

    pub fn account_url(&self) -> &str {
        &self.account_url
    }

    pub fn object_url(&self, container: &str, name: &str) -> String {
        let name: Vec<String> = name.split('/').map(encode).collect();
        format!(
            "{}/{}/{}",
            self.account_url,
            encode(container),
            name.join("/")
        )
    }

    fn container_url(&self, container: &str) -> String {
        format!("{}/{}", self.account_url, encode(container))
    }

    async fn send(
        &self,
        idempotent: bool,
        build: impl FnMut(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        auth::send(&self.auth, &self.retry, idempotent, build, &*self.on_retry).await
    }

    fn req(&self, method: reqwest::Method, url: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).header("X-Auth-Token", token)
    }

    /// HEAD an object; `None` when it does not exist.
    pub async fn head(&self, container: &str, name: &str) -> Result<Option<ObjectMeta>, Error> {
        let url = self.object_url(container, name);
        let resp = self
            .send(true, |t| self.req(reqwest::Method::HEAD, &url, t))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let len = header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::Unexpected {
                        url: http::redact(&url),
                        detail: "HEAD without a valid Content-Length".into(),
                    })?;
                Ok(Some(ObjectMeta {
                    len,
                    etag: header(&resp, "etag")
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_string(),
                    dlo: header(&resp, "x-object-manifest"),
                    slo: header(&resp, "x-static-large-object")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                }))
            }
            _ => Err(Error::from_response("object", resp).await),
        }
    }

    /// Every object in `container` whose name starts with `prefix`, following `marker` pages.
    pub async fn list(&self, container: &str, prefix: &str) -> Result<Vec<Listed>, Error> {
        let mut all: Vec<Listed> = Vec::new();
        loop {
            let marker = all.last().map(|l| l.name.clone()).unwrap_or_default();
            let url = self.container_url(container);
            let query = [
                ("format", "json"),
                ("prefix", prefix),
                ("marker", marker.as_str()),
                ("limit", "10000"),
            ];
            let fetched = self
                .fetch(|t| self.req(reqwest::Method::GET, &url, t).query(&query))
                .await?;
            let page: Vec<Listed> = match fetched.status {
                204 => return Ok(all),
                200..=299 => fetched.json("listing")?,
                _ => return Err(fetched.into_error("container")),
            };
            let n = page.len();
            all.extend(page);
            if n < 10_000 {
                return Ok(all);
            }
        }
    }

    /// The segment list of an SLO manifest.
    pub async fn slo_manifest(&self, container: &str, name: &str) -> Result<Vec<SloEntry>, Error> {
        let url = self.object_url(container, name);
        let fetched = self
            .fetch(|t| {
                self.req(reqwest::Method::GET, &url, t)
                    .query(&[("multipart-manifest", "get")])
            })
            .await?;
        if !(200..300).contains(&fetched.status) {
            return Err(fetched.into_error("SLO manifest"));
        }
        fetched.json("SLO manifest")
    }

    /// An idempotent request whose whole answer (at most 64 MiB: a listing of 10,000 names, or an
    /// SLO manifest of 1000 entries, is far smaller) is read, re-sent if the answer is cut short.
    async fn fetch(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<super::Fetched, Error> {
        let build = &build;
        super::fetch(&self.retry, 64 << 20, || {
            auth::send(&self.auth, &self.retry, true, build, &*self.on_retry)
        })
        .await
    }

    /// GETs `len` bytes at `offset` of an object. A ranged read answered with anything but 206 is an
    /// error: a 200 would silently deliver the wrong bytes.
    pub async fn get_range(
        &self,
        container: &str,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<reqwest::Response, Error> {
        let url = self.object_url(container, name);
        let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
        let resp = self
            .send(true, |t| {
                self.req(reqwest::Method::GET, &url, t)
                    .header("Range", &range)
            })
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => Ok(resp),
            StatusCode::OK => Err(Error::Unexpected {
                url: http::redact(&url),
                detail: format!("asked for {range} and got the whole object (200, not 206)"),
            }),
            _ => Err(Error::from_response("object", resp).await),
        }
    }

    /// PUTs `len` bytes of `file` at `offset` as an object, with `ETag: md5` so the server refuses
    /// corrupted bytes (422). Returns the ETag the server answered, which callers compare again.
    pub async fn put_file_region(
        &self,
        container: &str,
        name: &str,
        file: &Path,
        offset: u64,
        len: u64,
        md5: &str,
    ) -> Result<String, Error> {
        let url = self.object_url(container, name);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let body = file_body(file.to_path_buf(), offset, len)
                .await
                .map_err(|e| Error::Unexpected {
                    url: http::redact(&url),
                    detail: format!("cannot read {}: {e}", file.display()),
                })?;
            let mut body = Some(body);
            self.auth.ensure_fresh().await?;
            let token = self.auth.token();
            // The body is a one-shot stream, so transport-level retries happen here, re-reading the
            // file each time, rather than inside http::send.
            let resp = http::send(
                &RetryConfig {
                    max_retries: 0,
                    ..self.retry.clone()
                },
                true,
                || {
                    let b = body
                        .take()
                        .unwrap_or_else(|| reqwest::Body::from(Vec::new()));
                    self.req(reqwest::Method::PUT, &url, &token)
                        .header("ETag", md5)
                        .header("Content-Length", len)
                        .body(b)
                },
                &*self.on_retry,
            )
            .await;
            let retry = match &resp {
                Ok(r) if r.status().is_success() => {
                    return Ok(r
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string());
                }
                // A refused token is refreshed once per refusal; the retry re-reads the file.
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    self.auth.refresh_after_401(&token).await?
                }
                Ok(r) => matches!(r.status().as_u16(), 408 | 422 | 429 | 498 | 500..=599),
                Err(_) => true,
            };
            if !retry || attempt > self.retry.max_retries {
                return match resp {
                    Ok(r) => Err(Error::from_response("object", r).await),
                    Err(e) => Err(e.into()),
                };
            }
            let why = match &resp {
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => e.cause.to_string(),
            };
            let delay = http::Backoff::new(&self.retry).next(None) * attempt;
            tracing::info!(url = %http::redact(&url), attempt, delay_ms = delay.as_millis() as u64, %why, "retrying upload from the spill file");
            (self.on_retry)(attempt, delay, &why);
            tokio::time::sleep(delay.min(self.retry.max)).await;
        }
    }

    /// PUTs a one-shot streamed body with `ETag: md5` and `Content-Length`: a single attempt, since
    /// the body cannot be replayed. The transfer engine uses it to upload a segment while it is
    /// still downloading, and falls back to [`ObjectStore::put_file_region`] if it fails.
    pub async fn put_stream(
        &self,
        container: &str,
        name: &str,
        body: reqwest::Body,
        len: u64,
        md5: &str,
    ) -> Result<String, Error> {
        let url = self.object_url(container, name);
        self.auth.ensure_fresh().await?;
        let resp = self
            .req(reqwest::Method::PUT, &url, &self.auth.token())
            .header("ETag", md5)
            .header("Content-Length", len)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Unexpected {
                url: http::redact(&url),
                detail: http::root_cause(&e),
            })?;
        if !resp.status().is_success() {
            return Err(Error::from_response("object", resp).await);
        }
        Ok(header(&resp, "etag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// Creates a container (idempotent).
    pub async fn put_container(&self, container: &str) -> Result<(), Error> {
        let url = self.container_url(container);
        let resp = self
            .send(true, |t| {
                self.req(reqwest::Method::PUT, &url, t)
                    .header("Content-Length", 0)
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("container", resp).await)
        }
    }

    /// PUTs an SLO manifest (no ETag header: Rackspace and upstream disagree on its meaning, so the
    /// returned ETag is checked instead). Returns the unquoted ETag.
    pub async fn put_slo(
        &self,
        container: &str,
        name: &str,
        manifest: &serde_json::Value,
    ) -> Result<String, Error> {
        let url = self.object_url(container, name);
        let body = serde_json::to_vec(manifest).unwrap_or_default();
        let resp = self
            .send(true, |t| {
                self.req(reqwest::Method::PUT, &url, t)
                    .query(&[("multipart-manifest", "put")])
                    .body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Error::from_response("SLO manifest", resp).await);
        }
        Ok(header(&resp, "etag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    pub async fn delete(&self, container: &str, name: &str) -> Result<(), Error> {
        let url = self.object_url(container, name);
        let resp = self
            .send(true, |t| self.req(reqwest::Method::DELETE, &url, t))
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(Error::from_response("object", resp).await),
        }
    }
}

/// A request body streaming `len` bytes of `file` from `offset`.
async fn file_body(file: PathBuf, offset: u64, len: u64) -> std::io::Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(&file).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
    Ok(reqwest::Body::wrap_stream(stream))
}

/// An object read by HTTP Range requests: what the remote VHD pre-flight validates.
pub struct RemoteObject<'a> {
    pub store: &'a ObjectStore,
    pub container: String,
    pub name: String,
    pub len: u64,
}

impl ByteSource for RemoteObject<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        // A ranged answer cut short is asked for again; a wrong length that arrives whole is an
        // error, never padded or truncated.
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let resp = self
                .store
                .get_range(&self.container, &self.name, offset, len as u64)
                .await?;
            match resp.bytes().await {
                Ok(bytes) if bytes.len() == len => return Ok(bytes.to_vec()),
                Ok(bytes) => {
                    return Err(format!(
                        "range read returned {} bytes, expected {len}",
                        bytes.len()
                    )
                    .into());
                }
                Err(e) if attempt <= self.store.retry.max_retries => {
                    tracing::info!(attempt, error = %http::root_cause(&e), "ranged read cut short; retrying");
                    tokio::time::sleep(http::Backoff::new(&self.store.retry).next(None)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn describe(&self) -> String {
        http::redact(&self.store.object_url(&self.container, &self.name))
    }
}
