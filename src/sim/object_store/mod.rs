//! Cloud Files (Swift v1) as the simulator serves it: containers, objects stored in files under the
//! data directory, HEAD, single Range GETs (206, 416), the `ETag` request check (422), dynamic and
//! static large objects, the object size limit (413), JSON listings with limit/marker/prefix, and
//! bulk delete. Shapes follow rackerlabs/docs-cloud-files `api-docs/storage-api-reference/`.
//!
//! Files: [`routes`] (account, container and object requests, bulk delete), [`objects`] (plain
//! objects: PUT with ETag and size checks, GET with ranges, DELETE), [`slo`] (static large object
//! manifests and how any manifest resolves into pieces), [`listing`] (container listings),
//! [`ranges`] (Range headers and streaming pieces).
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

mod listing;
mod objects;
mod ranges;
mod routes;
mod slo;

/// Upstream Swift's default object size limit (openstack/swift `swift/common/constraints.py`, `MAX_FILE_SIZE`).
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
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
