//! The process exit codes, one table for every command (README "Exit codes", DESIGN §1).

/// Done: the migration finished, or every validated image would be accepted.
pub const OK: u8 = 0;
/// Failed. For a migration the state is saved and `imgferry resume` continues it; for `validate`,
/// a file could not be read.
pub const FAILED: u8 = 1;
/// Usage or configuration error: bad flags, a missing credential, an unknown region, a migration
/// locked by another process, or a damaged or newer state file.
pub const USAGE: u8 = 2;
/// A VHD is invalid or the import was (or would be) rejected; the import code is in the message and
/// in the JSON report.
pub const REJECTED: u8 = 3;
/// Interrupted with Ctrl-C at a safe point; the state is saved and resumable.
pub const INTERRUPTED: u8 = 4;
/// Authentication failed.
pub const AUTH_FAILED: u8 = 5;
