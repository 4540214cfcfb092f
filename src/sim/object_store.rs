//! Cloud Files (Swift v1) as the simulator serves it: containers, objects stored in files under the
//! data directory, HEAD, single Range GETs (206, 416), the `ETag` request check (422), dynamic and
//! static large objects, the object size limit (413), JSON listings with limit/marker/prefix, and
//! bulk delete. Shapes follow reference/rackspace-api.md §4.
//!
//! Not modelled: multi-range requests (answered with the whole object and 200, which HTTP allows),
//! conditional requests, object metadata beyond content type, eventual consistency of listings
//! (that arrives with the fault injector), and SLO heartbeats.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::stats::Stats;

/// Upstream Swift's default object size limit (reference/rackspace-api.md §4.3).
pub const MAX_OBJECT_SIZE: u64 = 5_368_709_122;
/// Rackspace's SLO limits (§4.5).
pub const MAX_SLO_SEGMENTS: usize = 1000;
pub const MIN_SLO_SEGMENT: u64 = 1 << 20;
/// Largest SLO manifest body accepted (upstream default).
const MAX_MANIFEST_BYTES: usize = 8 << 20;

/// One stored object. Plain objects and DLO manifests have a data file; SLO manifests describe
/// their segments.
#[derive(Debug, Clone)]
struct Object {
    bytes: u64,
    etag: String,
    content_type: String,
    modified: SystemTime,
    file: Option<PathBuf>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Plain,
    Dlo { container: String, prefix: String },
    Slo(Vec<SloSegment>),
}

#[derive(Debug, Clone, Serialize)]
struct SloSegment {
    container: String,
    name: String,
    etag: String,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Account {
    containers: BTreeMap<String, BTreeMap<String, Object>>,
}

/// The Cloud Files of every region the simulator serves.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    max_object_size: u64,
    accounts: Mutex<BTreeMap<String, Account>>,
    next_file: AtomicU64,
    stats: Arc<Stats>,
}

/// A request as the router hands it over.
pub struct Request<'a> {
    pub region: &'a str,
    pub method: &'a Method,
    pub container: Option<&'a str>,
    pub object: Option<&'a str>,
    pub query: &'a BTreeMap<String, String>,
    pub headers: &'a HeaderMap,
}

/// Swift's error bodies are small HTML documents.
fn swift_error(status: StatusCode, text: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = format!("<html><h1>{title}</h1><p>{text}</p></html>");
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn not_found() -> Response {
    swift_error(StatusCode::NOT_FOUND, "The resource could not be found.")
}

fn md5_hex(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_ref());
    }
    hex::encode(h.finalize())
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// One piece of a (possibly large) object's content: a byte range of a data file.
#[derive(Debug, Clone)]
pub struct Piece {
    pub file: PathBuf,
    pub start: u64,
    pub len: u64,
}

impl Store {
    pub fn new(root: PathBuf, max_object_size: u64, stats: Arc<Stats>) -> Self {
        Self {
            root,
            max_object_size,
            accounts: Mutex::new(BTreeMap::new()),
            next_file: AtomicU64::new(0),
            stats,
        }
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Account>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves one Cloud Files request.
    pub async fn handle(&self, req: Request<'_>, body: Body) -> Response {
        match (req.container, req.object) {
            (None, _) => self.account(&req, body).await,
            (Some(c), None) => self.container(&req, c),
            (Some(c), Some(o)) => self.object(&req, c, o, body).await,
        }
    }

    async fn account(&self, req: &Request<'_>, body: Body) -> Response {
        match *req.method {
            Method::GET | Method::HEAD => {
                self.stats.request(req.method.as_str(), "account");
                let list: Vec<serde_json::Value> = {
                    let accounts = self.accounts();
                    let containers = accounts.get(req.region).map(|a| &a.containers);
                    containers
                        .into_iter()
                        .flatten()
                        .map(|(name, objs)| {
                            serde_json::json!({"name": name, "count": objs.len(), "bytes": objs.values().map(|o| o.bytes).sum::<u64>()})
                        })
                        .collect()
                };
                let mut resp = axum::Json(list.clone()).into_response();
                resp.headers_mut()
                    .insert("x-account-container-count", list.len().into());
                resp
            }
            Method::DELETE if req.query.contains_key("bulk-delete") => {
                self.stats.request("DELETE", "bulk-delete");
                self.bulk_delete(req.region, body).await
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    fn container(&self, req: &Request<'_>, name: &str) -> Response {
        self.stats.request(req.method.as_str(), "container");
        let mut accounts = self.accounts();
        let account = accounts.entry(req.region.to_string()).or_default();
        match *req.method {
            Method::PUT => {
                if name.is_empty() || name.len() > 256 || name.contains('/') {
                    return swift_error(StatusCode::BAD_REQUEST, "Container name is invalid.");
                }
                if account.containers.contains_key(name) {
                    return StatusCode::ACCEPTED.into_response();
                }
                account.containers.insert(name.to_string(), BTreeMap::new());
                self.stats
                    .created("container", format!("{}/{name}", req.region));
                StatusCode::CREATED.into_response()
            }
            // Metadata updates are accepted and ignored: nothing imgferry or the tests need reads them.
            Method::POST => match account.containers.get(name) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => not_found(),
            },
            Method::DELETE => match account.containers.get(name) {
                None => not_found(),
                Some(objs) if !objs.is_empty() => swift_error(
                    StatusCode::CONFLICT,
                    "There was a conflict when trying to complete your request.",
                ),
                Some(_) => {
                    account.containers.remove(name);
                    StatusCode::NO_CONTENT.into_response()
                }
            },
            Method::HEAD | Method::GET => {
                let Some(objs) = account.containers.get(name) else {
                    return not_found();
                };
                let count = objs.len();
                // SLO manifests count only their own (manifest) bytes, like Swift.
                let used: u64 = objs
                    .values()
                    .filter(|o| !matches!(o.kind, Kind::Slo(_)))
                    .map(|o| o.bytes)
                    .sum();
                let mut resp = if *req.method == Method::HEAD {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    listing(objs, req.query)
                };
                let h = resp.headers_mut();
                h.insert("x-container-object-count", count.into());
                h.insert("x-container-bytes-used", used.into());
                resp
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    async fn object(&self, req: &Request<'_>, container: &str, name: &str, body: Body) -> Response {
        let manifest_op = req.query.get("multipart-manifest").map(String::as_str);
        match (req.method.clone(), manifest_op) {
            (Method::PUT, Some("put")) => {
                self.stats.request("PUT", "slo-manifest");
                self.put_slo(req, container, name, body).await
            }
            (Method::PUT, _) => {
                self.stats.request("PUT", "object");
                self.put_object(req, container, name, body).await
            }
            (Method::GET | Method::HEAD, op) => {
                self.stats.request(req.method.as_str(), "object");
                self.get_object(req, container, name, op == Some("get"))
            }
            (Method::POST, _) => {
                self.stats.request("POST", "object");
                match self.lookup(req.region, container, name) {
                    Some(_) => StatusCode::ACCEPTED.into_response(),
                    None => not_found(),
                }
            }
            (Method::DELETE, op) => {
                self.stats.request("DELETE", "object");
                self.delete_object(req.region, container, name, op == Some("delete"))
                    .await
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    /// Where the image service writes export segments before adopting them as objects.
    pub fn spool_dir(&self, region: &str) -> PathBuf {
        self.root.join(region).join("spool")
    }

    /// Takes over a finished file as object `container/name` (the image service's export path).
    pub async fn adopt(
        &self,
        region: &str,
        container: &str,
        name: &str,
        file: PathBuf,
        bytes: u64,
        etag: String,
    ) {
        let path = self.new_file_path(region);
        let file = match tokio::fs::rename(&file, &path).await {
            Ok(()) => path,
            Err(_) => file,
        };
        let object = Object {
            bytes,
            etag,
            content_type: "application/octet-stream".into(),
            modified: SystemTime::now(),
            file: Some(file),
            kind: Kind::Plain,
        };
        self.insert(region, container, name, object).await;
    }

    /// Creates a DLO manifest `container/name` over `manifest_container/prefix`.
    pub async fn put_dlo_manifest(&self, region: &str, container: &str, name: &str, prefix: &str) {
        let object = Object {
            bytes: 0,
            etag: md5_hex([b""]),
            content_type: "application/octet-stream".into(),
            modified: SystemTime::now(),
            file: None,
            kind: Kind::Dlo {
                container: container.to_string(),
                prefix: prefix.to_string(),
            },
        };
        self.insert(region, container, name, object).await;
    }

    /// Whether an object exists.
    pub fn exists(&self, region: &str, container: &str, name: &str) -> bool {
        self.lookup(region, container, name).is_some()
    }

    /// The content of an object as file pieces, with its length, following DLO and SLO manifests.
    pub fn pieces(&self, region: &str, container: &str, name: &str) -> Option<(Vec<Piece>, u64)> {
        let obj = self.lookup(region, container, name)?;
        let (pieces, total, _) = self.resolve(region, &obj);
        Some((pieces, total))
    }

    pub fn container_exists(&self, region: &str, container: &str) -> bool {
        self.accounts()
            .get(region)
            .is_some_and(|a| a.containers.contains_key(container))
    }

    /// Streams the body to a new data file while hashing it, enforcing the size limit and the
    /// client's `ETag`, then swaps it in.
    async fn put_object(
        &self,
        req: &Request<'_>,
        container: &str,
        name: &str,
        body: Body,
    ) -> Response {
        if !self.container_exists(req.region, container) {
            return not_found();
        }
        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = req
            .headers
            .get(header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if declared.is_none() && !chunked {
            return swift_error(
                StatusCode::LENGTH_REQUIRED,
                "Missing Content-Length header.",
            );
        }
        if declared.is_some_and(|n| n > self.max_object_size) {
            return swift_error(StatusCode::PAYLOAD_TOO_LARGE, "Your request is too large.");
        }
        let path = self.new_file_path(req.region);
        let written = match self.write_body(req.region, &path, body).await {
            Ok(w) => w,
            Err(resp) => {
                let _ = tokio::fs::remove_file(&path).await;
                return resp;
            }
        };
        let (bytes, etag) = written;
        if declared.is_some_and(|n| n != bytes) {
            let _ = tokio::fs::remove_file(&path).await;
            return swift_error(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "Client disconnected.",
            );
        }
        if let Some(expected) = req.headers.get(header::ETAG).and_then(|v| v.to_str().ok())
            && expected.trim_matches('"') != etag
        {
            let _ = tokio::fs::remove_file(&path).await;
            return swift_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unable to process the contained instructions",
            );
        }
        let kind = match req
            .headers
            .get("x-object-manifest")
            .and_then(|v| v.to_str().ok())
        {
            Some(m) => match m.split_once('/') {
                Some((c, p)) => Kind::Dlo {
                    container: percent_decode(c),
                    prefix: percent_decode(p),
                },
                None => {
                    let _ = tokio::fs::remove_file(&path).await;
                    return swift_error(
                        StatusCode::BAD_REQUEST,
                        "X-Object-Manifest must be in the format container/prefix",
                    );
                }
            },
            None => Kind::Plain,
        };
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let object = Object {
            bytes,
            etag: etag.clone(),
            content_type,
            modified: SystemTime::now(),
            file: Some(path),
            kind,
        };
        self.insert(req.region, container, name, object).await;
        let mut resp = StatusCode::CREATED.into_response();
        resp.headers_mut().insert(header::ETAG, header_value(&etag));
        resp
    }

    async fn write_body(
        &self,
        region: &str,
        path: &PathBuf,
        body: Body,
    ) -> Result<(u64, String), Response> {
        let io_error = |_| {
            swift_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An error occurred writing the object.",
            )
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        }
        let mut file = tokio::fs::File::create(path).await.map_err(io_error)?;
        let mut hasher = Md5::new();
        let mut bytes = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                swift_error(
                    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                    "Client disconnected.",
                )
            })?;
            bytes += chunk.len() as u64;
            self.stats.bytes_in(region, chunk.len() as u64);
            if bytes > self.max_object_size {
                return Err(swift_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Your request is too large.",
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        Ok((bytes, hex::encode(hasher.finalize())))
    }

    fn new_file_path(&self, region: &str) -> PathBuf {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        self.root.join(region).join(format!("{n:012}.obj"))
    }

    /// Stores `object`, removing the data file of any object it replaces.
    async fn insert(&self, region: &str, container: &str, name: &str, object: Object) {
        let replaced = {
            let mut accounts = self.accounts();
            let objs = accounts
                .entry(region.to_string())
                .or_default()
                .containers
                .entry(container.to_string())
                .or_default();
            objs.insert(name.to_string(), object)
        };
        match replaced {
            Some(old) => {
                if let Some(f) = old.file {
                    let _ = tokio::fs::remove_file(f).await;
                }
            }
            None => self
                .stats
                .created("object", format!("{region}/{container}/{name}")),
        }
    }

    async fn put_slo(
        &self,
        req: &Request<'_>,
        container: &str,
        name: &str,
        body: Body,
    ) -> Response {
        if !self.container_exists(req.region, container) {
            return not_found();
        }
        let Ok(raw) = axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await else {
            return swift_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Manifest File > 8388608 bytes",
            );
        };
        self.stats.bytes_in(req.region, raw.len() as u64);
        #[derive(Deserialize)]
        struct Entry {
            path: String,
            etag: Option<String>,
            size_bytes: Option<u64>,
        }
        let Ok(entries) = serde_json::from_slice::<Vec<Entry>>(&raw) else {
            return swift_error(StatusCode::BAD_REQUEST, "Manifest must be valid JSON.");
        };
        if entries.is_empty() || entries.len() > MAX_SLO_SEGMENTS {
            return swift_error(
                StatusCode::BAD_REQUEST,
                &format!("Manifest must have between 1 and {MAX_SLO_SEGMENTS} segments."),
            );
        }
        let mut segments = Vec::new();
        let mut errors: Vec<(String, String)> = Vec::new();
        {
            let accounts = self.accounts();
            for (i, e) in entries.iter().enumerate() {
                let path = e.path.trim_start_matches('/');
                let Some((c, o)) = path.split_once('/') else {
                    errors.push((e.path.clone(), "400 Bad Request".into()));
                    continue;
                };
                let found = accounts
                    .get(req.region)
                    .and_then(|a| a.containers.get(c))
                    .and_then(|objs| objs.get(o))
                    .filter(|obj| matches!(obj.kind, Kind::Plain));
                let Some(obj) = found else {
                    errors.push((e.path.clone(), "404 Not Found".into()));
                    continue;
                };
                if e.etag
                    .as_deref()
                    .is_some_and(|t| t.trim_matches('"') != obj.etag)
                {
                    errors.push((e.path.clone(), "Etag Mismatch".into()));
                }
                if e.size_bytes.is_some_and(|s| s != obj.bytes) {
                    errors.push((e.path.clone(), "Size Mismatch".into()));
                }
                if i + 1 < entries.len() && obj.bytes < MIN_SLO_SEGMENT {
                    errors.push((
                        e.path.clone(),
                        format!(
                            "Too Small; each segment must be at least {MIN_SLO_SEGMENT} bytes."
                        ),
                    ));
                }
                segments.push(SloSegment {
                    container: c.to_string(),
                    name: o.to_string(),
                    etag: obj.etag.clone(),
                    bytes: obj.bytes,
                });
            }
        }
        if !errors.is_empty() {
            let text: Vec<String> = errors
                .iter()
                .map(|(p, why)| format!("{p}, {why}"))
                .collect();
            return swift_error(
                StatusCode::BAD_REQUEST,
                &format!("Errors:<br>{}", text.join("<br>")),
            );
        }
        let etag = md5_hex(segments.iter().map(|s| s.etag.as_bytes()));
        let object = Object {
            bytes: segments.iter().map(|s| s.bytes).sum(),
            etag: etag.clone(),
            content_type: "application/octet-stream".into(),
            modified: SystemTime::now(),
            file: None,
            kind: Kind::Slo(segments),
        };
        self.insert(req.region, container, name, object).await;
        let mut resp = StatusCode::CREATED.into_response();
        resp.headers_mut()
            .insert(header::ETAG, header_value(&format!("\"{etag}\"")));
        resp
    }

    /// The pieces an object's content is made of, its total length and its ETag as GET reports it.
    fn resolve(&self, region: &str, obj: &Object) -> (Vec<Piece>, u64, String) {
        match &obj.kind {
            Kind::Plain => {
                let pieces = obj
                    .file
                    .iter()
                    .map(|f| Piece {
                        file: f.clone(),
                        start: 0,
                        len: obj.bytes,
                    })
                    .collect();
                (pieces, obj.bytes, obj.etag.clone())
            }
            Kind::Dlo { container, prefix } => {
                // Whatever the listing holds right now: a missing segment silently shortens the
                // object, exactly the hazard the transfer engine guards against.
                let accounts = self.accounts();
                let segs: Vec<(PathBuf, u64, String)> = accounts
                    .get(region)
                    .and_then(|a| a.containers.get(container))
                    .into_iter()
                    .flat_map(|objs| objs.range(prefix.clone()..))
                    .take_while(|(n, _)| n.starts_with(prefix.as_str()))
                    .filter_map(|(_, o)| o.file.clone().map(|f| (f, o.bytes, o.etag.clone())))
                    .collect();
                let total = segs.iter().map(|s| s.1).sum();
                let etag = format!("\"{}\"", md5_hex(segs.iter().map(|s| s.2.as_bytes())));
                let pieces = segs
                    .into_iter()
                    .map(|(file, len, _)| Piece {
                        file,
                        start: 0,
                        len,
                    })
                    .collect();
                (pieces, total, etag)
            }
            Kind::Slo(segments) => {
                let accounts = self.accounts();
                let pieces = segments
                    .iter()
                    .filter_map(|s| {
                        let o = accounts
                            .get(region)?
                            .containers
                            .get(&s.container)?
                            .get(&s.name)?;
                        Some(Piece {
                            file: o.file.clone()?,
                            start: 0,
                            len: o.bytes,
                        })
                    })
                    .collect();
                (pieces, obj.bytes, format!("\"{}\"", obj.etag))
            }
        }
    }

    fn lookup(&self, region: &str, container: &str, name: &str) -> Option<Object> {
        self.accounts()
            .get(region)?
            .containers
            .get(container)?
            .get(name)
            .cloned()
    }

    fn get_object(
        &self,
        req: &Request<'_>,
        container: &str,
        name: &str,
        manifest: bool,
    ) -> Response {
        let Some(obj) = self.lookup(req.region, container, name) else {
            return not_found();
        };
        if manifest && let Kind::Slo(segments) = &obj.kind {
            let list: Vec<serde_json::Value> = segments
                    .iter()
                    .map(|s| serde_json::json!({"name": format!("/{}/{}", s.container, s.name), "hash": s.etag, "bytes": s.bytes}))
                    .collect();
            let mut resp = axum::Json(list).into_response();
            resp.headers_mut()
                .insert("x-static-large-object", HeaderValue::from_static("True"));
            return resp;
        }
        let (pieces, total, etag) = if manifest && matches!(obj.kind, Kind::Dlo { .. }) {
            (Vec::new(), 0, obj.etag.clone())
        } else {
            self.resolve(req.region, &obj)
        };
        let range = req.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let (status, start, len) = match range.map(|r| parse_range(r, total)) {
            None | Some(RangeAnswer::Whole) => (StatusCode::OK, 0, total),
            Some(RangeAnswer::Part(s, l)) => (StatusCode::PARTIAL_CONTENT, s, l),
            Some(RangeAnswer::Unsatisfiable) => {
                let mut resp = swift_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "The Range requested is not available.",
                );
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{total}")),
                );
                return resp;
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, header_value(&etag));
        headers.insert(header::CONTENT_LENGTH, len.into());
        headers.insert(header::CONTENT_TYPE, header_value(&obj.content_type));
        headers.insert(
            header::LAST_MODIFIED,
            header_value(&http_date(obj.modified)),
        );
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        match &obj.kind {
            Kind::Dlo { container, prefix } => {
                headers.insert(
                    "x-object-manifest",
                    header_value(&format!("{container}/{prefix}")),
                );
            }
            Kind::Slo(_) => {
                headers.insert("x-static-large-object", HeaderValue::from_static("True"));
            }
            Kind::Plain => {}
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let end = start + len - 1;
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{total}")),
            );
        }
        if *req.method == Method::HEAD {
            return (status, headers).into_response();
        }
        let stats = Arc::clone(&self.stats);
        let region = req.region.to_string();
        let body = content_stream(clip(pieces, start, len))
            .inspect_ok(move |b| stats.bytes_out(&region, b.len() as u64));
        (status, headers, Body::from_stream(body)).into_response()
    }

    async fn delete_object(
        &self,
        region: &str,
        container: &str,
        name: &str,
        with_segments: bool,
    ) -> Response {
        let Some(obj) = self.remove(region, container, name).await else {
            return not_found();
        };
        if let (true, Kind::Slo(segments)) = (with_segments, &obj.kind) {
            let mut deleted = 1;
            for s in segments {
                if self.remove(region, &s.container, &s.name).await.is_some() {
                    deleted += 1;
                }
            }
            return axum::Json(serde_json::json!({
                "Number Deleted": deleted, "Number Not Found": 0,
                "Response Status": "200 OK", "Response Body": "", "Errors": [],
            }))
            .into_response();
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// Removes an object and its data file, returning what was removed.
    async fn remove(&self, region: &str, container: &str, name: &str) -> Option<Object> {
        let removed = {
            let mut accounts = self.accounts();
            accounts
                .get_mut(region)
                .and_then(|a| a.containers.get_mut(container))
                .and_then(|objs| objs.remove(name))
        };
        if let Some(f) = removed.as_ref().and_then(|o| o.file.clone()) {
            let _ = tokio::fs::remove_file(f).await;
        }
        removed
    }

    async fn bulk_delete(&self, region: &str, body: Body) -> Response {
        let Ok(raw) = axum::body::to_bytes(body, 10_000 * 1100).await else {
            return swift_error(StatusCode::PAYLOAD_TOO_LARGE, "Your request is too large.");
        };
        let (mut deleted, mut not_found, mut errors) = (0u64, 0u64, Vec::<(String, String)>::new());
        for line in String::from_utf8_lossy(&raw)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(10_000)
        {
            let path = percent_decode(line.trim());
            let path = path.trim_start_matches('/');
            match path.split_once('/') {
                Some((c, o)) => {
                    if self.remove(region, c, o).await.is_some() {
                        deleted += 1;
                    } else {
                        not_found += 1;
                    }
                }
                None => {
                    let mut accounts = self.accounts();
                    let account = accounts.entry(region.to_string()).or_default();
                    match account.containers.get(path) {
                        None => not_found += 1,
                        Some(objs) if !objs.is_empty() => {
                            errors.push((format!("/{path}"), "409 Conflict".into()))
                        }
                        Some(_) => {
                            account.containers.remove(path);
                            deleted += 1;
                        }
                    }
                }
            }
        }
        let status = if errors.is_empty() {
            "200 OK"
        } else {
            "400 Bad Request"
        };
        axum::Json(serde_json::json!({
            "Number Deleted": deleted, "Number Not Found": not_found,
            "Response Status": status, "Response Body": "", "Errors": errors,
        }))
        .into_response()
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A container listing, JSON or plain text, honouring prefix, marker, end_marker and limit.
fn listing(objs: &BTreeMap<String, Object>, query: &BTreeMap<String, String>) -> Response {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let marker = query.get("marker").cloned().unwrap_or_default();
    let end_marker = query.get("end_marker");
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10_000)
        .min(10_000);
    let names = objs
        .range::<String, _>((
            std::ops::Bound::Excluded(marker),
            std::ops::Bound::Unbounded,
        ))
        .filter(|(n, _)| n.starts_with(prefix))
        .take_while(|(n, _)| end_marker.is_none_or(|e| *n < e))
        .take(limit);
    let json = query.get("format").is_some_and(|f| f == "json");
    if json {
        let items: Vec<serde_json::Value> = names
            .map(|(n, o)| {
                let (hash, bytes) = match o.kind {
                    // A DLO manifest lists as 0 bytes with the md5 of nothing.
                    Kind::Dlo { .. } => (md5_hex([b""]), 0),
                    _ => (o.etag.clone(), o.bytes),
                };
                serde_json::json!({"name": n, "hash": hash, "bytes": bytes, "content_type": o.content_type,
                    "last_modified": humantime::format_rfc3339_micros(o.modified).to_string().trim_end_matches('Z')})
            })
            .collect();
        return axum::Json(items).into_response();
    }
    let text: String = names.map(|(n, _)| format!("{n}\n")).collect();
    if text.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

enum RangeAnswer {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range against an object of `total` bytes. Multiple ranges and
/// malformed headers are answered with the whole object, as HTTP permits.
fn parse_range(header: &str, total: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(suffix)) if a.is_empty() => {
            if suffix == 0 || total == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                let len = suffix.min(total);
                RangeAnswer::Part(total - len, len)
            }
        }
        (Some(start), end) if b.is_empty() || end.is_some() => {
            if start >= total {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.unwrap_or(total - 1).min(total - 1);
            if end < start {
                return RangeAnswer::Whole;
            }
            RangeAnswer::Part(start, end - start + 1)
        }
        _ => RangeAnswer::Whole,
    }
}

/// Restricts a list of pieces to the byte range `start..start + len` of their concatenation.
fn clip(pieces: Vec<Piece>, start: u64, len: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let (mut pos, end) = (0u64, start + len);
    for p in pieces {
        let (p_start, p_end) = (pos, pos + p.len);
        pos = p_end;
        let (s, e) = (p_start.max(start), p_end.min(end));
        if s < e {
            out.push(Piece {
                file: p.file,
                start: p.start + (s - p_start),
                len: e - s,
            });
        }
    }
    out
}

/// Streams the pieces' bytes in order, reading each file region as it is reached.
fn content_stream(pieces: Vec<Piece>) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::iter(pieces)
        .map(|p| {
            futures::stream::once(async move {
                let mut file = tokio::fs::File::open(&p.file).await?;
                file.seek(SeekFrom::Start(p.start)).await?;
                Ok::<_, std::io::Error>(ReaderStream::with_capacity(file.take(p.len), 64 * 1024))
            })
            .try_flatten()
        })
        .flatten()
}
