//! What the parts of one transfer share: the [`Ctx`] every piece task and the commit read, and
//! the [`Permits`] a piece task is launched with, and the [`Ready`] record it hands to the
//! in-order hasher.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use super::{Destination, Event, Events, Options, SourceAccess};

/// A piece whose bytes are ready for the in-order hasher.
pub(super) struct Ready {
    pub index: usize,
    /// Spill file, or the local source file.
    pub path: PathBuf,
    pub offset: u64,
    pub spill: bool,
    pub md5: String,
    pub uploaded: Option<String>,
    /// The piece's place in the spill budget, given back once it is hashed.
    pub spill_permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The two permits a piece is launched with, taken together and in piece order.
pub(super) struct Permits {
    /// Given back when the piece's network work ends.
    pub connection: tokio::sync::OwnedSemaphorePermit,
    /// Given back when the in-order hasher has consumed the piece.
    pub spill: tokio::sync::OwnedSemaphorePermit,
}

pub(super) struct Ctx {
    pub source: SourceAccess,
    pub dest: Destination,
    /// Where each piece starts in the image (where a file destination holds it).
    pub starts: Vec<u64>,
    pub opts: Options,
    pub events: Events,
    /// Bytes fetched so far (for progress; taken back when a piece is fetched again).
    pub done: AtomicU64,
    pub total: u64,
}

impl Ctx {
    pub fn emit(&self, e: Event) {
        (self.events)(e);
    }
}
