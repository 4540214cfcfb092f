//! Request bodies that can be sent again. A retry must never depend on bytes that already went
//! out on a broken connection, so every body here is a description (nothing, some bytes, or a
//! region of a local file) from which a fresh `reqwest::Body` is made for each attempt (as
//! object_store clones its payload per attempt the same way).

use std::path::PathBuf;

use futures::TryStreamExt;

/// A replayable request body.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of the file at `path` from `offset`: re-read from disk on every attempt.
    FileRegion {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    /// The number of bytes the body holds (the `Content-Length` to send).
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::FileRegion { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new body for one attempt. A file region is opened lazily, when the request starts to
    /// send it; an open or seek failure ends the body with that error (the attempt then fails as
    /// a broken request and is retried or reported like any other).
    pub fn to_reqwest(&self) -> reqwest::Body {
        match self {
            Body::Empty => reqwest::Body::from(Vec::new()),
            Body::Bytes(b) => reqwest::Body::from(b.clone()),
            Body::FileRegion { path, offset, len } => {
                let (path, offset, len) = (path.clone(), *offset, *len);
                let open = async move {
                    use tokio::io::{AsyncReadExt, AsyncSeekExt};
                    let mut f = tokio::fs::File::open(&path).await?;
                    f.seek(std::io::SeekFrom::Start(offset)).await?;
                    Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
                        f.take(len),
                        256 * 1024,
                    ))
                };
                reqwest::Body::wrap_stream(futures::stream::once(open).try_flatten())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(body: reqwest::Body) -> Vec<u8> {
        body.collect().await.expect("body").to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_file_region_is_read_afresh_for_every_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let body = Body::FileRegion {
            path,
            offset: 2,
            len: 5,
        };
        assert_eq!(body.len(), 5);
        assert_eq!(collect(body.to_reqwest()).await, b"23456");
        assert_eq!(collect(body.to_reqwest()).await, b"23456");
    }
}
