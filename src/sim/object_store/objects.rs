//! Plain objects: PUT (streamed to a data file, hashed, size and ETag checked), GET and HEAD
//! with ranges, DELETE.

use super::ranges::{RangeAnswer, clip, content_stream, parse_range};
use super::*;

impl Store {
    /// Streams the body to a new data file while hashing it, enforcing the size limit and the
    /// client's `ETag`, then swaps it in.
    pub(super) async fn put_object(
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
        let Some(kind) = manifest_kind(req.headers) else {
            let _ = tokio::fs::remove_file(&path).await;
            return swift_error(
                StatusCode::BAD_REQUEST,
                "X-Object-Manifest must be in the format container/prefix",
            );
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

    pub(super) async fn write_body(
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

    pub(super) fn new_file_path(&self, region: &str) -> PathBuf {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        self.root.join(region).join(format!("{n:012}.obj"))
    }

    /// Stores `object`, removing the data file of any object it replaces.
    pub(super) async fn insert(&self, region: &str, container: &str, name: &str, object: Object) {
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

    pub(super) fn lookup(&self, region: &str, container: &str, name: &str) -> Option<Object> {
        self.accounts()
            .get(region)?
            .containers
            .get(container)?
            .get(name)
            .cloned()
    }

    pub(super) fn get_object(
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

    pub(super) async fn delete_object(
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
    pub(super) async fn remove(&self, region: &str, container: &str, name: &str) -> Option<Object> {
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
}

/// A plain object, or a DLO manifest when `X-Object-Manifest: container/prefix` is sent; `None`
/// when that header is malformed.
fn manifest_kind(headers: &HeaderMap) -> Option<Kind> {
    match headers
        .get("x-object-manifest")
        .and_then(|v| v.to_str().ok())
    {
        Some(m) => m.split_once('/').map(|(c, p)| Kind::Dlo {
            container: percent_decode(c),
            prefix: percent_decode(p),
        }),
        None => Some(Kind::Plain),
    }
}
