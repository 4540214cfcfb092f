//! Byte sources the validator reads from: anything that can answer "these bytes at this offset".
//!
//! The validator only ever asks for a few small regions (footer, footer copy, dynamic header, BAT,
//! batmap), so the same code runs over a local file with positioned reads, a buffer in memory, or
//! HTTP Range requests against an object in Cloud Files.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An error from a byte source, boxed so each source keeps its own error type.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Random access to an object of known length.
pub trait ByteSource: Sync {
    /// The object's length in bytes.
    fn len(&self) -> u64;

    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `len` bytes at `offset`. Callers never ask beyond [`ByteSource::len`].
    fn read_at(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send;

    /// A description for error messages: a path or a URL without credentials.
    fn describe(&self) -> String;
}

/// A byte buffer in memory; used by tests, fuzzing and the simulator.
#[derive(Debug, Clone)]
pub struct MemSource<'a> {
    pub bytes: &'a [u8],
}

impl ByteSource for MemSource<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        let start = usize::try_from(offset)?;
        let end = start.checked_add(len).ok_or("read range overflows")?;
        let slice = self.bytes.get(start..end).ok_or_else(|| {
            format!(
                "read {start}..{end} beyond the {} byte buffer",
                self.bytes.len()
            )
        })?;
        Ok(slice.to_vec())
    }

    fn describe(&self) -> String {
        format!("<{} bytes in memory>", self.bytes.len())
    }
}

/// A local file read with positioned reads on the blocking pool; it is never loaded whole.
#[derive(Debug, Clone)]
pub struct FileSource {
    file: Arc<std::fs::File>,
    len: u64,
    path: PathBuf,
}

impl FileSource {
    /// Opens `path` and records its length. Directories and other non-files are refused here, so
    /// the error names the real problem instead of a confusing read failure later.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory, not a VHD file",
            ));
        }
        Ok(Self {
            file: Arc::new(file),
            len: meta.len(),
            path: path.to_path_buf(),
        })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        let file = Arc::clone(&self.file);
        let read = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, offset).map(|()| buf)
        });
        Ok(read.await??)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Wraps a source and counts what is read through it, so reports and benchmarks can show that
/// validation touches only a few KiB of a multi-GiB image.
#[derive(Debug)]
pub struct Counting<'a, S> {
    inner: &'a S,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl<'a, S: ByteSource> Counting<'a, S> {
    pub fn new(inner: &'a S) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// (reads, bytes) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

impl<S: ByteSource> ByteSource for Counting<'_, S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.inner.read_at(offset, len).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
