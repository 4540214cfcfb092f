//! The transfer engine: copies an image between Cloud Files accounts (or from a local file) in
//! parallel, pipelined, verified, resumable segments (docs/architecture.md).
//!
//! ```text
//! inspect ─► plan ─► pipeline: ┌ whole source segment: GET streamed into the spill file and, at
//!                              │   the same time, a PUT with ETag = the source md5 (the destination
//!                              │   verifies the bytes; locally hashed only if it cannot)
//!                              ├ split piece or range: the same stream, hashed on the way; the
//!                              │   returned ETag is compared with that md5
//!                              └ fetched again or after a failed stream: GET → spill (md5) →
//!                                  check → PUT from the spill file with ETag; compare the ETag
//!                    in-order hasher: whole-image SHA-256 and MD5, state saved per piece
//!        ─► commit: SLO manifest, ETag = md5 of segment md5s, HEAD confirms the size
//! ```
//!
//! Invariants: at most `concurrency` pieces hold a connection, a piece gives its connection back as
//! soon as its network work ends, and spill files exist only for the `concurrency + 1` pieces after
//! the last hashed one (a [`Budget`] shared by a fleet bounds them across its members), so local
//! disk stays within `(concurrency + 1) × segment size` and memory within a fixed budget of stream
//! buffers. The in-order hasher runs beside the piece tasks, never in their way. The
//! per-piece table and the hasher states are in [`TransferState`], which the caller persists after
//! every change, so a resumed run re-sends at most the pieces that were in flight.

mod commit;
mod context;
pub mod digest;
mod file_dest;
mod piece;
mod pipeline;
pub mod plan;
mod read_back;
pub mod source;
pub mod state_file;
mod tee;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::object_store::ObjectStore;

pub use pipeline::{copy_pieces, run};
pub use plan::Piece;
pub use source::{ListingPolicy, Source, inspect};

/// A place in Cloud Files.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub store: ObjectStore,
    pub container: String,
    pub name: String,
}

/// Where the copy goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Pieces uploaded as segments and committed as a static large object.
    Store(Endpoint),
    /// A local file, written in place and sparse (see [`file_dest`]); the caller renames it.
    File(PathBuf),
}

impl From<Endpoint> for Destination {
    fn from(e: Endpoint) -> Self {
        Destination::Store(e)
    }
}

/// Where the source bytes are read from.
#[derive(Debug, Clone)]
pub enum SourceAccess {
    /// The source segments live in this account.
    Store(ObjectStore),
    /// A local file, read directly with no spill.
    File(PathBuf),
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pieces in flight at once.
    pub concurrency: usize,
    /// Where spill files go.
    pub work_dir: PathBuf,
    /// Re-downloads of a piece whose bytes fail their check before giving up.
    pub integrity_retries: u32,
    /// Limits shared with other transfers (a fleet's). `None`: this transfer's own
    /// `concurrency` connections and `concurrency + 1` spill files.
    pub budget: Option<Budget>,
}

/// What the transfers of a fleet share: the connections (`--concurrency`) and the pieces that may
/// wait on local disk for their transfer's in-order hasher.
///
/// The two are apart so that a connection is handed back the moment a piece's network work ends:
/// holding it until the hasher has read the piece kept a whole wave of connections idle while the
/// backlog was hashed, which is where a large single transfer lost a tenth of its throughput.
#[derive(Debug, Clone)]
pub struct Budget {
    /// A piece holds one from its first request until its last byte is sent.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// A piece holds one from its first byte until the in-order hasher has consumed it, which
    /// bounds spill files across every transfer that shares them.
    pub spill: Arc<tokio::sync::Semaphore>,
}

impl Budget {
    /// `connections` shared by transfers of which at most `parallel` run at once: each running
    /// transfer may have one piece waiting for (or being read by) its hasher beyond those on the
    /// wire, so spill is bounded by `(connections + parallel)` pieces.
    pub fn new(connections: usize, parallel: usize) -> Self {
        let connections = connections.max(1);
        Self {
            connections: Arc::new(tokio::sync::Semaphore::new(connections)),
            spill: Arc::new(tokio::sync::Semaphore::new(connections + parallel.max(1))),
        }
    }
}

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total: u64,
        pieces: usize,
        already_done: u64,
        segment_size: u64,
    },
    Progress {
        done: u64,
        total: u64,
    },
    PieceDone {
        index: usize,
        bytes: u64,
        uploaded: bool,
    },
    Retry {
        what: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    Committed {
        etag: String,
        sha256: String,
        md5: String,
    },
}

pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// Why the caller could not save the transfer state (the store's own error, boxed: the engine
/// does not know where its state lives).
pub type PersistError = Box<dyn std::error::Error + Send + Sync>;

/// Saves a snapshot of the transfer state; called after every change. Asynchronous so the caller
/// can write (and fsync) off the runtime's workers.
pub type Persist<'a> = &'a mut (
            dyn FnMut(
    TransferState,
) -> futures::future::BoxFuture<'static, Result<(), PersistError>>
                + Send
        );

/// The verified result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub bytes: u64,
    pub segments: usize,
    pub manifest_etag: String,
    pub sha256: String,
    pub md5: String,
}

/// Where the in-order hasher was when the current source segment started, so a split source
/// segment that fails its md5 check can be redone from its first piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentStart {
    pub piece: usize,
    pub digest: digest::DigestState,
}

/// Everything needed to continue a transfer after a kill. Serialised into the migration state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferState {
    pub source: Source,
    pub dest_container: String,
    pub dest_name: String,
    pub segment_size: u64,
    pub pieces: Vec<Piece>,
    /// Pieces consumed by the in-order hasher.
    pub hashed: usize,
    pub digest: digest::DigestState,
    pub segment_start: Option<SegmentStart>,
    /// Set once the manifest is committed and verified.
    pub manifest_etag: Option<String>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
}

impl TransferState {
    /// A fresh state for copying `source` to `dest_container/dest_name`.
    pub fn new(
        source: Source,
        dest_container: &str,
        dest_name: &str,
        segment_size: u64,
    ) -> Result<Self, plan::Error> {
        let size = plan::effective_segment_size(segment_size, &source)?;
        let pieces = plan::plan(&source, dest_name, size)?;
        Ok(Self {
            source,
            dest_container: dest_container.to_string(),
            dest_name: dest_name.to_string(),
            segment_size: size,
            pieces,
            hashed: 0,
            digest: digest::Digests::default().save(),
            segment_start: None,
            manifest_etag: None,
            sha256: None,
            md5: None,
        })
    }

    pub fn is_done(&self) -> bool {
        self.manifest_etag.is_some()
    }

    /// The most local disk the spill files of a run with `concurrency` pieces in flight can take:
    /// `concurrency + 1` of the largest pieces (the in-order hasher's window), at most the image.
    pub fn spill_budget(&self, concurrency: usize) -> u64 {
        let largest = self.pieces.iter().map(|p| p.len).max().unwrap_or(0);
        let window = u64::try_from(concurrency.max(1) + 1).unwrap_or(u64::MAX);
        largest.saturating_mul(window).min(self.source.len)
    }

    /// Bytes of pieces that are uploaded.
    pub fn uploaded_bytes(&self) -> u64 {
        self.pieces
            .iter()
            .filter(|p| p.uploaded.is_some())
            .map(|p| p.len)
            .sum()
    }
}

/// Why a transfer stopped. All of them leave a resumable state behind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Plan(#[from] plan::Error),
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    #[error("integrity check failed for {what}: found {found}, expected {expected}")]
    Integrity {
        what: String,
        found: String,
        expected: String,
    },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] digest::StateError),
    #[error("cannot save the transfer state")]
    Persist(#[source] PersistError),
    #[error("a transfer task stopped unexpectedly")]
    Task(#[source] tokio::task::JoinError),
    /// A fact the engine guarantees is missing: a bug, or a state file edited by hand.
    #[error("internal error in the transfer state: {0}")]
    Invariant(String),
    #[error("piece {index} was cut short: {got} of {want} bytes")]
    Short { index: usize, got: u64, want: u64 },
}

impl Error {
    /// What kind of failure this is; refused tokens and unusable endpoints keep their class.
    pub fn class(&self) -> crate::exit_code::Class {
        match self {
            Error::Api(e) => e.class(),
            Error::Source(source::Error::Api(e)) => e.class(),
            _ => crate::exit_code::Class::Failed,
        }
    }
}
