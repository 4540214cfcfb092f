//! One module per command. Each turns a validated command line into a call of the library and
//! renders what comes back; none holds engine logic, and none prints an error (that is
//! [`crate::app::finish`]'s job).

pub mod completions;
pub mod convert;
pub mod demo;
pub mod fleet;
pub mod forget;
pub mod migrate;
pub mod sim_serve;
pub mod status;
pub mod table;
pub mod transfer;
pub mod validate;

use crate::config;
use crate::exit_code::Class;
use crate::migrate as engine;

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The work is done and its answer is "would be rejected" (`validate`, `migrate --dry-run`):
    /// exit 3, with no error message, since the report already says why.
    Rejected,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Migrate(#[from] engine::Error),
    /// A new migration refused before it created anything; its record was not kept.
    #[error(transparent)]
    Refused(engine::Error),
    /// A migration that started and stopped: its state is saved.
    #[error(transparent)]
    Stopped(Box<Stopped>),
    #[error(transparent)]
    Validate(#[from] validate::Error),
    #[error(transparent)]
    Transfer(#[from] transfer::Error),
    #[error(transparent)]
    Sim(#[from] sim_serve::Error),
    #[error(transparent)]
    Demo(#[from] demo::Error),
    #[error(transparent)]
    Store(#[from] engine::store::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Forget(forget::Refusal),
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// A fleet whose members did not all finish.
    #[error(transparent)]
    Fleet(fleet::Stopped),
}

/// A migration run that stopped, with where its state is. It reads as its error: the id and step
/// are shown as advice ([`Error::hints`]), not as another cause.
#[derive(Debug)]
pub struct Stopped {
    pub error: engine::Error,
    pub id: String,
    pub step: engine::Step,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Stopped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Config(_) => Class::Usage,
            Error::Migrate(e) => e.class(),
            Error::Stopped(s) => s.error.class(),
            Error::Refused(e) => e.class(),
            Error::Validate(e) => e.class(),
            Error::Transfer(e) => e.class(),
            Error::Sim(_) => Class::Usage,
            Error::Demo(_) => Class::Failed,
            Error::Store(e) => e.class(),
            Error::Output(_) => Class::Failed,
            Error::Fleet(f) => f.class,
            Error::Forget(_) => Class::Usage,
            Error::Convert(convert::ConvertError::Convert { .. }) => Class::Rejected,
            Error::Convert(_) => Class::Failed,
        }
    }

    /// The process exit code: the same failure gives the same code from every command.
    pub fn exit_code(&self) -> u8 {
        self.class().code()
    }

    /// What to run next, when there is something to run.
    pub fn resume_command(&self) -> Option<String> {
        match self {
            Error::Stopped(s) if s.error.resumable() && s.error.class() != Class::Usage => {
                Some(format!("imgferry resume {}", s.id))
            }
            Error::Fleet(f) if f.resumable => Some(format!("imgferry resume {}", f.fleet)),
            Error::Transfer(transfer::Error::Resumable(r)) => Some(format!(
                "run the same command again; the transfer state is saved in {}",
                r.state
            )),
            _ => None,
        }
    }

    /// Lines of advice printed after the error.
    pub fn hints(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Error::Stopped(s) = self {
            out.push(format!(
                "state saved at step {}; details: imgferry status {}",
                s.step, s.id
            ));
        }
        if let Error::Refused(_) = self {
            out.push(
                "nothing was created and nothing was kept: run the same command again once the \
                 cause is fixed"
                    .to_string(),
            );
        }
        if let Error::Fleet(f) = self {
            out.push(format!("each member: imgferry status {}", f.fleet));
        }
        if let Some(cmd) = self.resume_command() {
            out.push(format!("to continue: {cmd}"));
        }
        out
    }
}
