//! VHD parsing and validation, the way XenServer's checker judges an image, and the prediction of
//! the Cloud Images import verdict.
//!
//! # Layout
//! - [`source`]: the "bytes at this offset" abstraction over files and memory; `api::object_store::RemoteObject` adds HTTP Range reads.
//! - [`footer`], [`dynamic`], [`geometry`]: the on-disk structures and their field checks.
//! - [`findings`]: problems, warnings, import codes and the verdict.
//! - [`validate`]: the driver that reads the few regions that matter and runs every check.
//! - [`report`]: the result, as JSON and as a human summary.
//! - [`build`]: a builder of small, well-formed images (qemu- and XenServer-style) and mutators, for
//!   tests and the simulated cloud.
//!
//! The policy (what is checked, which code each defect predicts, and why) is documented in
//! docs/vhd.md; its sources are
//! the VHD specification (Microsoft, "Virtual Hard Disk Image Format Specification" 1.0), qemu `block/vpc.c` and xapi-project/blktap `vhd/lib/vhd-util-check.c`.

pub mod build;
pub mod dynamic;
pub mod findings;
pub mod footer;
pub mod geometry;
pub mod report;
pub mod source;
pub mod validate;

pub use findings::{Finding, ImportCode, Problem, Verdict};
pub use report::Report;
pub use source::{ByteSource, FileSource, MemSource, SourceError};
pub use validate::{IMPORT_LIMIT, Policy, validate};

/// One GiB: the unit of the documented import limits ("40 GB" is read as 40 GiB, and the 160 GB
/// limit of 2019 the same way: docs/vhd.md).
pub const GIB: u64 = 1 << 30;

/// Failures to read the object being validated. A bad VHD is not an error: it is a [`Report`]
/// with problems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}; check the path and its permissions")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the {what} ({len} bytes at offset {offset}) of {object}")]
    Read {
        object: String,
        what: &'static str,
        offset: u64,
        len: usize,
        #[source]
        source: SourceError,
    },
    #[error(
        "reading the {what} of {object} returned {got} bytes at offset {offset}, expected {len}"
    )]
    ShortRead {
        object: String,
        what: &'static str,
        offset: u64,
        len: usize,
        got: usize,
    },
}
