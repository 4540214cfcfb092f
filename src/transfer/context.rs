//! What the parts of one transfer share: the [`Ctx`] every piece task and the commit read, and
//! the [`Ready`] record a piece task hands to the in-order hasher.

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
    /// The piece's share of the connection budget, given back once it is hashed.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
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
