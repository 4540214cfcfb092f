//! imgferry moves a server image from one Rackspace Cloud region to another: it images the server,
//! exports the image to Cloud Files as a VHD, moves the VHD between regions in verified segments,
//! imports it and boots a server from it, as a resumable state machine. Before any bulk transfer it
//! validates the VHD the way XenServer does and predicts the import service's documented error codes.
//!
//! # Layout
//! - [`cli`]: the command-line surface (clap derive); [`config`]: flags and environment turned
//!   into validated settings and plans, once.
//! - [`app`]: dispatches commands; the one place where errors become [`exit_code`]s and are
//!   printed.
//! - [`commands`]: one renderer per command.
//! - [`secrets`]: the run's secrets and the scrubber every output passes through; [`text`]:
//!   control characters from services escaped for the terminal.
//! - [`signals`]: Ctrl-C and SIGTERM as a cancellation token; [`fsutil`]: atomic private writes;
//!   [`units`]: sizes and counts for people.
//! - [`vhd`]: VHD parsing, validation and import-verdict prediction over any positioned-read source.
//! - [`http`], [`api`]: the retrying HTTP layer and the Identity, Cloud Servers, Cloud Images and
//!   Cloud Files clients.
//! - [`transfer`]: the parallel, verified, resumable segment copier.
//! - [`migrate`]: the resumable migration state machine and its state store.
//! - [`progress`]: migration events rendered as indicatif bars, plain lines or JSON lines.
//! - [`sim`]: the simulated multi-region Rackspace cloud, for `sim serve`, the demo and the tests.
//!
//! docs/architecture.md describes how the layers fit together.

pub mod api;
pub mod app;
pub mod cli;
pub mod clouds;
pub mod commands;
pub mod config;
pub mod convert;
pub mod credentials;
pub mod exit_code;
pub mod fsutil;
pub mod http;
pub mod logging;
pub mod manual;
pub mod migrate;
pub mod profiles;
pub mod progress;
pub mod secrets;
pub mod signals;
pub mod sim;
pub mod text;
pub mod transfer;
pub mod units;
pub mod vhd;

/// Renders an error and its causes on one line each: `outer\n  caused by: inner`.
/// Messages never embed their source, so each cause appears exactly once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str("\n  caused by: ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
