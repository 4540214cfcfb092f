//! Inspecting what is to be copied: a plain object, a DLO or an SLO in Cloud Files, or a local file.
//!
//! A DLO's content is whatever a container listing returns at GET time, and listings are eventually
//! consistent, so a single DLO GET can silently return a truncated image. Inspection therefore
//! re-lists until two listings agree, the segment sizes add up to the manifest's Content-Length, and
//! the md5 of the concatenated segment md5s equals the manifest's ETag, waiting with backoff in
//! between; after that it fails with an error that says which condition did not hold.

use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::api::object_store::ObjectStore;

/// One segment of the source, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrcSegment {
    pub container: String,
    pub name: String,
    pub bytes: u64,
    /// The md5 the source lists for this segment (unknown for a local file).
    pub md5: Option<String>,
}

/// What kind of thing the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Object,
    Dlo,
    Slo,
    File,
}

/// The inspected source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub kind: Kind,
    pub len: u64,
    /// The object's ETag (for large objects, the md5 of the segment md5s).
    pub etag: Option<String>,
    pub segments: Vec<SrcSegment>,
}

/// Why a source cannot be copied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the source object {0} does not exist")]
    Missing(String),
    #[error(
        "the segment listing of {object} never became consistent after {attempts} listings: {why}; \
         wait for the export to settle and run again"
    )]
    Inconsistent {
        object: String,
        attempts: u32,
        why: String,
    },
    #[error("the SLO manifest of {object} does not match the object: {why}")]
    BadManifest { object: String, why: String },
    #[error("cannot read the local file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] crate::api::Error),
}

/// md5 of the concatenated hex md5s: a large object's ETag.
pub fn etag_of_etags<'a>(md5s: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Md5::new();
    for m in md5s {
        h.update(m.as_bytes());
    }
    hex::encode(h.finalize())
}

/// How often and how long to re-list a DLO before giving up.
#[derive(Debug, Clone, Copy)]
pub struct ListingPolicy {
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for ListingPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_wait: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Inspects `container/name` in `store`.
pub async fn inspect(
    store: &ObjectStore,
    container: &str,
    name: &str,
    policy: ListingPolicy,
) -> Result<Source, Error> {
    let object = format!("{container}/{name}");
    let mut wait = policy.first_wait;
    let mut last_why = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        let meta = store
            .head(container, name)
            .await?
            .ok_or_else(|| Error::Missing(object.clone()))?;
        let result = if let Some(manifest) = &meta.dlo {
            dlo(store, manifest, &meta).await?
        } else if meta.slo {
            return slo(store, container, name, &meta).await;
        } else {
            return Ok(Source {
                kind: Kind::Object,
                len: meta.len,
                etag: Some(meta.etag.clone()),
                segments: vec![SrcSegment {
                    container: container.into(),
                    name: name.into(),
                    bytes: meta.len,
                    md5: Some(meta.etag),
                }],
            });
        };
        match result {
            Ok(source) => return Ok(source),
            Err(why) => {
                tracing::info!(%object, attempt, %why, wait_ms = wait.as_millis() as u64, "segment listing not consistent yet");
                last_why = why;
                if attempt < policy.attempts {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(policy.max_wait);
                }
            }
        }
    }
    Err(Error::Inconsistent {
        object,
        attempts: policy.attempts,
        why: last_why,
    })
}

/// Lists a DLO's segments twice and checks them against the manifest. `Err(why)` means "not yet".
async fn dlo(
    store: &ObjectStore,
    manifest: &str,
    meta: &crate::api::object_store::ObjectMeta,
) -> Result<Result<Source, String>, Error> {
    let (seg_container, prefix) = manifest.split_once('/').unwrap_or((manifest, ""));
    let seg_container = percent_encoding::percent_decode_str(seg_container)
        .decode_utf8_lossy()
        .into_owned();
    let prefix = percent_encoding::percent_decode_str(prefix)
        .decode_utf8_lossy()
        .into_owned();
    let first = store.list(&seg_container, &prefix).await?;
    let second = store.list(&seg_container, &prefix).await?;
    if first != second {
        return Ok(Err(format!(
            "two listings differ ({} and {} segments)",
            first.len(),
            second.len()
        )));
    }
    // Swift computes a DLO's HEAD from the same listing, so a lagging listing can look
    // self-consistent. Exports number their segments `-00001…`: a gap in the numbers is a segment
    // the listing does not show yet. (A missing *last* segment is caught by the VHD pre-flight: the
    // object would not end with a footer.)
    if let Some(gap) = numbering_gap(&prefix, first.iter().map(|l| l.name.as_str())) {
        return Ok(Err(format!("segment {gap} is missing from the listing")));
    }
    let sum: u64 = first.iter().map(|l| l.bytes).sum();
    if sum != meta.len {
        return Ok(Err(format!(
            "segments add up to {sum} bytes but the manifest says {}",
            meta.len
        )));
    }
    let etag = etag_of_etags(first.iter().map(|l| l.hash.as_str()));
    if etag != meta.etag {
        return Ok(Err(format!(
            "md5 of the segment md5s is {etag} but the manifest ETag is {}",
            meta.etag
        )));
    }
    Ok(Ok(Source {
        kind: Kind::Dlo,
        len: meta.len,
        etag: Some(meta.etag.clone()),
        segments: first
            .into_iter()
            .map(|l| SrcSegment {
                container: seg_container.clone(),
                name: l.name,
                bytes: l.bytes,
                md5: Some(l.hash),
            })
            .collect(),
    }))
}

/// For segments named `<prefix><number>`, the first number that is skipped.
fn numbering_gap<'a>(prefix: &str, names: impl Iterator<Item = &'a str>) -> Option<u64> {
    let numbers: Option<Vec<u64>> = names
        .map(|n| n.strip_prefix(prefix)?.parse().ok())
        .collect();
    let numbers = numbers?;
    let first = *numbers.first()?;
    numbers
        .iter()
        .enumerate()
        .find(|(i, n)| **n != first + *i as u64)
        .map(|(i, _)| first + i as u64)
}

async fn slo(
    store: &ObjectStore,
    container: &str,
    name: &str,
    meta: &crate::api::object_store::ObjectMeta,
) -> Result<Source, Error> {
    let object = format!("{container}/{name}");
    let entries = store.slo_manifest(container, name).await?;
    let mut segments = Vec::with_capacity(entries.len());
    for e in &entries {
        let path = e.name.trim_start_matches('/');
        let (c, o) = path.split_once('/').ok_or_else(|| Error::BadManifest {
            object: object.clone(),
            why: format!("segment path {} has no container", e.name),
        })?;
        segments.push(SrcSegment {
            container: c.into(),
            name: o.into(),
            bytes: e.bytes,
            md5: Some(e.hash.clone()),
        });
    }
    let sum: u64 = segments.iter().map(|s| s.bytes).sum();
    let etag = etag_of_etags(entries.iter().map(|e| e.hash.as_str()));
    if sum != meta.len || etag != meta.etag {
        return Err(Error::BadManifest {
            object,
            why: format!(
                "{sum} bytes and ETag {etag} from the manifest, {} and {} from HEAD",
                meta.len, meta.etag
            ),
        });
    }
    Ok(Source {
        kind: Kind::Slo,
        len: meta.len,
        etag: Some(meta.etag.clone()),
        segments,
    })
}

/// A local file as a source of one segment.
pub fn local_file(path: &Path) -> Result<Source, Error> {
    let len = std::fs::metadata(path)
        .map_err(|source| Error::File {
            path: path.display().to_string(),
            source,
        })?
        .len();
    Ok(Source {
        kind: Kind::File,
        len,
        etag: None,
        segments: vec![SrcSegment {
            container: String::new(),
            name: path.display().to_string(),
            bytes: len,
            md5: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::numbering_gap;

    #[test]
    fn gaps_in_export_numbering_are_found() {
        let names = ["x.vhd-00001", "x.vhd-00002", "x.vhd-00004"];
        assert_eq!(numbering_gap("x.vhd-", names.into_iter()), Some(3));
        assert_eq!(numbering_gap("x.vhd-", names[..2].iter().copied()), None);
        assert_eq!(
            numbering_gap("x.vhd-", ["x.vhd-a"].into_iter()),
            None,
            "other naming: no opinion"
        );
    }
}
