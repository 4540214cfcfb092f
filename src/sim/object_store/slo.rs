//! Static large objects: the manifest PUT with Swift's checks, and how any object (plain, DLO
//! or SLO) resolves into the pieces that hold its bytes.

use super::*;

/// One entry of an SLO manifest as a client PUTs it.
#[derive(Deserialize)]
pub(super) struct ManifestEntry {
    path: String,
    etag: Option<String>,
    size_bytes: Option<u64>,
}

impl Store {
    /// Swift's checks of each manifest entry against the stored segment: it exists and is a plain
    /// object, its ETag and size match when given, and all but the last are at least 1 MiB.
    /// Returns the segments and the (path, reason) of every entry that fails.
    fn check_segments(
        &self,
        region: &str,
        entries: &[ManifestEntry],
    ) -> (Vec<SloSegment>, Vec<(String, String)>) {
        let mut segments = Vec::new();
        let mut errors: Vec<(String, String)> = Vec::new();
        let accounts = self.accounts();
        for (i, e) in entries.iter().enumerate() {
            let path = e.path.trim_start_matches('/');
            let Some((c, o)) = path.split_once('/') else {
                errors.push((e.path.clone(), "400 Bad Request".into()));
                continue;
            };
            let found = accounts
                .get(region)
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
                    format!("Too Small; each segment must be at least {MIN_SLO_SEGMENT} bytes."),
                ));
            }
            segments.push(SloSegment {
                container: c.to_string(),
                name: o.to_string(),
                etag: obj.etag.clone(),
                bytes: obj.bytes,
            });
        }
        (segments, errors)
    }

    pub(super) async fn put_slo(
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
        let Ok(entries) = serde_json::from_slice::<Vec<ManifestEntry>>(&raw) else {
            return swift_error(StatusCode::BAD_REQUEST, "Manifest must be valid JSON.");
        };
        if entries.is_empty() || entries.len() > MAX_SLO_SEGMENTS {
            return swift_error(
                StatusCode::BAD_REQUEST,
                &format!("Manifest must have between 1 and {MAX_SLO_SEGMENTS} segments."),
            );
        }
        let (segments, errors) = self.check_segments(req.region, &entries);
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
    pub(super) fn resolve(&self, region: &str, obj: &Object) -> (Vec<Piece>, u64, String) {
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
}
