//! The process exit codes, one table for every command (README "Exit codes").

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

/// What kind of failure an error is. Each layer's error type says which class each of its errors
/// belongs to (`class()`); [`Class::code`] is the one table from class to exit code, so the same
/// failure gets the same exit code from every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Something went wrong that a later run may get past (network, service, disk).
    Failed,
    /// The command line, the environment or the saved state is not usable as it is.
    Usage,
    /// The VHD is invalid or the import service refused it.
    Rejected,
    /// The user stopped the run.
    Interrupted,
    /// The identity service refused the credentials, or a service refused the token for good.
    Auth,
}

impl Class {
    pub fn code(self) -> u8 {
        match self {
            Class::Failed => FAILED,
            Class::Usage => USAGE,
            Class::Rejected => REJECTED,
            Class::Interrupted => INTERRUPTED,
            Class::Auth => AUTH_FAILED,
        }
    }
}
