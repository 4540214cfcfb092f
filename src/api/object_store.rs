//! A Cloud Files (Swift v1) client: just what the transfer engine and the remote pre-flight need.
//!
//! Every call goes through the one retry path ([`crate::http::send_within`], wrapped by
//! [`auth::send`] for the token); uploads send a [`Body::FileRegion`], so a retry re-reads the file
//! and never the network. Object names are percent-encoded per path segment.

use std::path::Path;

use reqwest::StatusCode;
use serde::Deserialize;

use super::Error;
use super::auth::{self, Auth};
use crate::http::{self, Attempts, Body, Idempotency, RetryConfig};
use crate::vhd::{ByteSource, SourceError};

pub use crate::http::RetryHook;

/// One Cloud Files account (a region's `publicURL`) and the token to use with it.
#[derive(Clone)]
pub struct ObjectStore {
    http: reqwest::Client,
    account_url: String,
    auth: Auth,
    retry: RetryConfig,
    on_retry: RetryHook,
    /// The client's read timeout, from which bulk requests' whole-request deadlines are sized.
    read_timeout: std::time::Duration,
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

fn encode(s: &str) -> String {
    super::segment(s)
}

/// The unquoted ETag a successful PUT answered; the service's error otherwise.
async fn stored_etag(what: &str, resp: reqwest::Response) -> Result<String, Error> {
    if !resp.status().is_success() {
        return Err(Error::from_response(what, resp).await);
    }
    Ok(header(&resp, "etag")
        .unwrap_or_default()
        .trim_matches('"')
        .to_string())
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
            on_retry: http::no_hook(),
            read_timeout: std::time::Duration::from_secs(120),
        }
    }

    /// Sizes bulk deadlines for a client whose read timeout is `read` (see
    /// [`http::bulk_deadline`]).
    pub fn with_read_timeout(mut self, read: std::time::Duration) -> Self {
        self.read_timeout = read;
        self
    }

    fn bulk_deadline(&self, len: u64) -> std::time::Duration {
        http::bulk_deadline(self.read_timeout, len)
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

    /// Every request but the one-shot streamed PUT is idempotent here (PUT, GET, HEAD, DELETE).
    async fn send(
        &self,
        build: impl FnMut(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut attempts = Attempts::new(&self.retry);
        auth::send(
            &self.auth,
            &mut attempts,
            Idempotency::Idempotent,
            build,
            &*self.on_retry,
        )
        .await
    }

    fn req(&self, method: reqwest::Method, url: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).header("X-Auth-Token", token)
    }

    /// HEAD an object; `None` when it does not exist.
    pub async fn head(&self, container: &str, name: &str) -> Result<Option<ObjectMeta>, Error> {
        let url = self.object_url(container, name);
        let resp = self
            .send(|t| self.req(reqwest::Method::HEAD, &url, t))
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
        self.fetch_capped(64 << 20, build).await
    }

    async fn fetch_capped(
        &self,
        cap: usize,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<super::Fetched, Error> {
        super::fetch(&self.auth, &self.retry, cap, build, &*self.on_retry).await
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
            .send(|t| {
                self.req(reqwest::Method::GET, &url, t)
                    .header("Range", &range)
                    .timeout(self.bulk_deadline(len))
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

    /// Reads `len` bytes at `offset` of an object whole (small reads: the VHD pre-flight's footer,
    /// header and BAT). Only a 206 is accepted; an answer cut short is fetched again.
    pub async fn fetch_range(
        &self,
        container: &str,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Error> {
        let url = self.object_url(container, name);
        let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
        // One byte more than asked for is allowed in, so an over-long answer is seen as such.
        let cap = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1);
        let mut attempts = Attempts::new(&self.retry);
        loop {
            let sent = std::time::Instant::now();
            let resp = auth::send(
                &self.auth,
                &mut attempts,
                Idempotency::Idempotent,
                |t| {
                    self.req(reqwest::Method::GET, &url, t)
                        .header("Range", &range)
                },
                &*self.on_retry,
            )
            .await?;
            // The status first: a 200 would be the whole object, however large.
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {}
                StatusCode::OK => {
                    return Err(Error::Unexpected {
                        url: http::redact(&url),
                        detail: format!(
                            "asked for {range} and got the whole object (200, not 206)"
                        ),
                    });
                }
                _ => return Err(Error::from_response("object", resp).await),
            }
            let read =
                super::read_or_retry(&mut attempts, resp, cap, sent, &*self.on_retry).await?;
            if let Some(fetched) = read {
                return Ok(fetched.body);
            }
        }
    }

    /// PUTs `len` bytes of `file` at `offset` as an object, with `ETag: md5` so the server refuses
    /// corrupted bytes (422, retried by the policy with the region read again). Returns the ETag the
    /// server answered, which callers compare again.
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
        let body = Body::FileRegion {
            path: file.to_path_buf(),
            offset,
            len,
        };
        let resp = self
            .send(|t| {
                self.req(reqwest::Method::PUT, &url, t)
                    .header("ETag", md5)
                    .header("Content-Length", body.len())
                    .timeout(self.bulk_deadline(len))
                    .body(body.to_reqwest())
            })
            .await?;
        stored_etag("object", resp).await
    }

    /// PUTs a one-shot streamed body with `Content-Length` and, when the md5 is known before the
    /// bytes are, `ETag: md5`: a single attempt, since the body cannot be replayed. The transfer
    /// engine uses it to upload a piece while it is still downloading, and falls back to
    /// [`ObjectStore::put_file_region`] if it fails. Without `md5` the caller compares the
    /// answered ETag with its own md5 of the bytes.
    pub async fn put_stream(
        &self,
        container: &str,
        name: &str,
        body: reqwest::Body,
        len: u64,
        md5: Option<&str>,
    ) -> Result<String, Error> {
        let url = self.object_url(container, name);
        self.auth.ensure_fresh().await?;
        let mut req = self.req(reqwest::Method::PUT, &url, &self.auth.token());
        if let Some(md5) = md5 {
            req = req.header("ETag", md5);
        }
        let resp = req
            .header("Content-Length", len)
            .timeout(self.bulk_deadline(len))
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Unexpected {
                url: http::redact(&url),
                detail: http::root_cause(&e),
            })?;
        self.wait_out_rate_limit(&resp).await;
        stored_etag("object", resp).await
    }

    /// A streamed PUT is not retried here (its body is gone), but a rate limit it meets is treated
    /// like any other: the wait the service asks for (`Retry-After`, within the backoff cap or
    /// the step's long wait) is waited out, shared through the gate when there is one, and
    /// reported, before the caller sends the piece again from its spill file.
    async fn wait_out_rate_limit(&self, resp: &reqwest::Response) {
        let status = resp.status().as_u16();
        if !(http::gate::is_rate_limit(status) || status == 503) {
            return;
        }
        let asked = http::retry::retry_after(resp.headers());
        let delay = asked
            .unwrap_or(self.retry.base)
            .min(self.retry.max.max(self.retry.long_wait));
        if let Some(gate) = &self.retry.gate {
            gate.close_for(delay);
        }
        (self.on_retry)(&http::Retry {
            attempt: 1,
            delay,
            reason: &format!("HTTP {status} (rate limited) on a streamed upload"),
            requested: asked.is_some_and(|a| a > self.retry.max),
        });
        let sleep = tokio::time::sleep(delay);
        match &self.retry.cancel {
            Some(cancel) => {
                tokio::select! {
                    () = sleep => {}
                    () = cancel.cancelled() => {}
                }
            }
            None => sleep.await,
        }
    }

    /// Creates a container (idempotent).
    pub async fn put_container(&self, container: &str) -> Result<(), Error> {
        let url = self.container_url(container);
        let resp = self
            .send(|t| {
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
        let body = Body::Bytes(serde_json::to_vec(manifest).unwrap_or_default().into());
        let resp = self
            .send(|t| {
                self.req(reqwest::Method::PUT, &url, t)
                    .query(&[("multipart-manifest", "put")])
                    .body(body.to_reqwest())
            })
            .await?;
        stored_etag("SLO manifest", resp).await
    }

    pub async fn delete(&self, container: &str, name: &str) -> Result<(), Error> {
        let url = self.object_url(container, name);
        let resp = self
            .send(|t| self.req(reqwest::Method::DELETE, &url, t))
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(Error::from_response("object", resp).await),
        }
    }
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
        // A ranged answer cut short is asked for again (inside `fetch`, on the request's one
        // budget); a wrong length that arrives whole is an error, never padded or truncated.
        let fetched = self
            .store
            .fetch_range(&self.container, &self.name, offset, len as u64)
            .await?;
        if fetched.len() != len {
            return Err(format!(
                "range read returned {} bytes, expected {len}",
                fetched.len()
            )
            .into());
        }
        Ok(fetched)
    }

    fn describe(&self) -> String {
        http::redact(&self.store.object_url(&self.container, &self.name))
    }
}
