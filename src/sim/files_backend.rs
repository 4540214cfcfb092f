//! How the image service reaches a region's Cloud Files: the simulator's own store, or an external
//! OpenStack Swift named with `--object-store REGION=URL` (reached over HTTP, no auth, as the
//! loopback Swift of scripts/swift-saio.sh runs).
//!
//! Export segments are spooled to files first and then handed over (adopted locally, or PUT with an
//! `ETag` remotely), so memory stays small whatever the image size.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::disk::Segment;
use super::object_store::{Piece, Store};
use crate::vhd::{ByteSource, SourceError};

/// One region's Cloud Files, as the image service sees it.
pub enum Backend<'a> {
    Local(&'a Store),
    Remote {
        http: &'a reqwest::Client,
        account_url: String,
    },
}

/// An object opened for reading by an import.
pub enum Object<'a> {
    Local {
        pieces: Vec<Piece>,
        len: u64,
    },
    Remote {
        http: &'a reqwest::Client,
        url: String,
        len: u64,
    },
}

fn object_url(account: &str, container: &str, name: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let name: Vec<String> = name.split('/').map(enc).collect();
    format!("{account}/{}/{}", enc(container), name.join("/"))
}

/// Whether a HEAD of `url` on the external Swift succeeds.
async fn remote_exists(http: &reqwest::Client, url: &str) -> Result<bool, String> {
    let r = http
        .head(url)
        .header("X-Auth-Token", "sim")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.status().is_success())
}

impl Backend<'_> {
    pub async fn container_exists(&self, region: &str, container: &str) -> Result<bool, String> {
        match self {
            Self::Local(store) => Ok(store.container_exists(region, container)),
            Self::Remote { http, account_url } => {
                remote_exists(http, &format!("{account_url}/{container}")).await
            }
        }
    }

    pub async fn object_exists(
        &self,
        region: &str,
        container: &str,
        name: &str,
    ) -> Result<bool, String> {
        match self {
            Self::Local(store) => Ok(store.exists(region, container, name)),
            Self::Remote { http, account_url } => {
                remote_exists(http, &object_url(account_url, container, name)).await
            }
        }
    }

    /// Stores a spooled segment as `container/name`.
    pub async fn store_segment(
        &self,
        region: &str,
        container: &str,
        name: &str,
        seg: Segment,
    ) -> Result<(), String> {
        match self {
            Self::Local(store) => {
                store
                    .adopt(region, container, name, seg.path, seg.bytes, seg.md5)
                    .await;
                Ok(())
            }
            Self::Remote { http, account_url } => {
                let file = tokio::fs::File::open(&seg.path)
                    .await
                    .map_err(|e| e.to_string())?;
                let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
                let r = http
                    .put(object_url(account_url, container, name))
                    .header("X-Auth-Token", "sim")
                    .header("ETag", &seg.md5)
                    .header("Content-Length", seg.bytes)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = tokio::fs::remove_file(&seg.path).await;
                if !r.status().is_success() {
                    return Err(format!("segment PUT answered {}", r.status()));
                }
                Ok(())
            }
        }
    }

    pub async fn put_dlo_manifest(
        &self,
        region: &str,
        container: &str,
        name: &str,
        prefix: &str,
    ) -> Result<(), String> {
        match self {
            Self::Local(store) => {
                store
                    .put_dlo_manifest(region, container, name, prefix)
                    .await;
                Ok(())
            }
            Self::Remote { http, account_url } => {
                let r = http
                    .put(object_url(account_url, container, name))
                    .header("X-Auth-Token", "sim")
                    .header("X-Object-Manifest", format!("{container}/{prefix}"))
                    .header("Content-Length", 0)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("manifest PUT answered {}", r.status()));
                }
                Ok(())
            }
        }
    }

    /// Opens `container/name` for reading, following manifests; `None` when it does not exist.
    pub async fn open(
        &self,
        region: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<Object<'_>>, String> {
        match self {
            Self::Local(store) => Ok(store
                .pieces(region, container, name)
                .map(|(pieces, len)| Object::Local { pieces, len })),
            Self::Remote { http, account_url } => {
                let url = object_url(account_url, container, name);
                let r = http
                    .head(&url)
                    .header("X-Auth-Token", "sim")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let len = r
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or("object HEAD without Content-Length")?;
                Ok(Some(Object::Remote { http, url, len }))
            }
        }
    }
}

impl Object<'_> {
    /// Copies the whole object into `path`, returning its length and md5.
    pub async fn copy_to(&self, path: &Path) -> Result<(u64, String), String> {
        let mut out = tokio::fs::File::create(path)
            .await
            .map_err(|e| e.to_string())?;
        let mut md5 = Md5::new();
        let mut total = 0u64;
        match self {
            Self::Local { pieces, .. } => {
                for p in pieces {
                    // In bounded chunks, so a multi-GiB segment never sits in memory.
                    let mut at = 0;
                    while at < p.len {
                        let n = (p.len - at).min(1 << 20);
                        let bytes = read_piece(p.file.clone(), p.start + at, n)
                            .await
                            .map_err(|e| e.to_string())?;
                        md5.update(&bytes);
                        out.write_all(&bytes).await.map_err(|e| e.to_string())?;
                        at += n;
                        total += n;
                    }
                }
            }
            Self::Remote { http, url, .. } => {
                let r = http
                    .get(url)
                    .header("X-Auth-Token", "sim")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let mut stream = r.bytes_stream();
                while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
                    md5.update(&chunk);
                    total += chunk.len() as u64;
                    out.write_all(&chunk).await.map_err(|e| e.to_string())?;
                }
            }
        }
        out.flush().await.map_err(|e| e.to_string())?;
        Ok((total, hex::encode(md5.finalize())))
    }
}

/// Reads `len` bytes of a file at `start` on the blocking pool. Callers keep `len` small.
async fn read_piece(file: PathBuf, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(file)?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        f.read_exact_at(&mut buf, start)?;
        Ok(buf)
    })
    .await
    .map_err(std::io::Error::other)?
}

impl ByteSource for Object<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::Local { len, .. } | Self::Remote { len, .. } => *len,
        }
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        match self {
            Self::Local { pieces, .. } => {
                let mut out = Vec::with_capacity(len);
                let (mut pos, end) = (0u64, offset + len as u64);
                for p in pieces {
                    let (s, e) = (pos.max(offset), (pos + p.len).min(end));
                    if s < e {
                        out.extend(read_piece(p.file.clone(), p.start + (s - pos), e - s).await?);
                    }
                    pos += p.len;
                }
                Ok(out)
            }
            Self::Remote { http, url, .. } => {
                let range = format!("bytes={offset}-{}", offset + len as u64 - 1);
                let r = http
                    .get(url)
                    .header("X-Auth-Token", "sim")
                    .header("Range", range)
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                    return Err(format!("range read answered {} instead of 206", r.status()).into());
                }
                Ok(r.bytes().await?.to_vec())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Local { .. } => "simulated object".into(),
            Self::Remote { url, .. } => url.clone(),
        }
    }
}
