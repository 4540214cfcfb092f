//! The transfer engine: copies an image between Cloud Files accounts (or from a local file) in
//! parallel, pipelined, verified, resumable segments (DESIGN §3).
//!
//! ```text
//! inspect ─► plan ─► pipeline: ┌ whole source segment: GET streamed into the spill file and, at
//!                              │   the same time, a PUT with ETag = the source md5 (the destination
//!                              │   verifies the bytes; locally hashed only if it cannot)
//!                              └ split piece or range: GET → spill (md5) → check → PUT from the
//!                                  spill file with ETag; compare the returned ETag
//!                    in-order hasher: whole-image SHA-256 and MD5, state saved per piece
//!        ─► commit: SLO manifest, ETag = md5 of segment md5s, HEAD confirms the size
//! ```
//!
//! Invariants: at most `concurrency` pieces are in flight and spill files exist only for the
//! `concurrency + 1` pieces after the last hashed one, so local disk stays within
//! `(concurrency + 1) × segment size` and memory within a fixed budget of stream buffers. The
//! per-piece table and the hasher states are in [`TransferState`], which the caller persists after
//! every change, so a resumed run re-sends at most the pieces that were in flight.

pub mod copy;
pub mod digest;
pub mod plan;
pub mod source;

use serde::{Deserialize, Serialize};

pub use copy::{Endpoint, Event, Options, Outcome, SourceAccess, run};
pub use plan::Piece;
pub use source::{ListingPolicy, Source, inspect};

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
    #[error("cannot save the transfer state: {0}")]
    Persist(String),
    #[error("piece {index} was cut short: {got} of {want} bytes")]
    Short { index: usize, got: u64, want: u64 },
}
