//! Where log lines go and how they read. Two outputs, each with its own filter:
//!
//! - stderr, for the person at the terminal: `warning: …`, `info: …`, `debug: …` with no
//!   timestamp and no module path (a library's own lines name their crate). `-q` keeps errors
//!   only; `-v` adds where credentials and regions came from, `-vv` every request imgferry makes,
//!   `-vvv` the HTTP libraries' internals. `RUST_LOG` overrides the level.
//! - `--log-file FILE`, for runs nobody watches: timestamped lines with their module, at least at
//!   `-vv`'s level, plus every progress event (target [`EVENTS`]), which stderr shows as progress
//!   instead.
//!
//! Both writers pass every line through [`crate::secrets::scrub`].

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of progress events copied into the log file (stderr renders them as progress).
pub const EVENTS: &str = "imgferry::events";

/// The stderr filter for `-v` counted `verbose` times (or `-q`).
pub fn stderr_directives(verbose: u8, quiet: bool) -> String {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,imgferry=info",
        (false, 2) => "warn,imgferry=debug",
        (false, _) => "trace",
    };
    format!("{level},{EVENTS}=off")
}

/// The log file's filter: `-vv`'s level or more, and the progress events.
fn file_directives(verbose: u8) -> String {
    let level = if verbose >= 3 {
        "trace"
    } else {
        "warn,imgferry=debug"
    };
    format!("{level},{EVENTS}=info")
}

/// Sets up logging for the process. A log file that cannot be opened is an error the caller
/// reports (the run has not started).
pub fn init(verbose: u8, quiet: bool, log_file: Option<&Path>) -> std::io::Result<()> {
    // RUST_LOG replaces the level, but progress events still never print twice on stderr.
    let stderr_filter = match EnvFilter::try_from_default_env() {
        Ok(f) => match format!("{EVENTS}=off").parse() {
            Ok(off) => f.add_directive(off),
            Err(_) => f,
        },
        Err(_) => EnvFilter::new(stderr_directives(verbose, quiet)),
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| crate::secrets::ScrubbingStderr)
        .event_format(Human)
        .with_filter(stderr_filter);
    let file = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let shared = Arc::new(Mutex::new(file));
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || ScrubbingFile(Arc::clone(&shared)))
                    .with_filter(EnvFilter::new(file_directives(verbose))),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(std::io::Error::other)
}

/// `warning: the state directory …`: the level as a word, then the message and its fields.
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        write!(writer, "{}: ", label(*meta.level()))?;
        // imgferry's own lines speak for themselves; a library's name its crate.
        if !meta.target().starts_with("imgferry") {
            write!(writer, "{}: ", meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The log file, shared by every thread, each line scrubbed of secrets.
struct ScrubbingFile(Arc<Mutex<File>>);

impl Write for ScrubbingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = crate::secrets::scrub(&text);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verbosity_adds_a_layer_and_quiet_keeps_errors() {
        assert!(stderr_directives(0, true).starts_with("error,"));
        assert!(stderr_directives(0, false).starts_with("warn,"));
        assert!(stderr_directives(1, false).contains("imgferry=info"));
        assert!(stderr_directives(2, false).contains("imgferry=debug"));
        assert!(stderr_directives(3, false).starts_with("trace,"));
        // Progress events never print twice on stderr.
        for v in 0..4 {
            assert!(stderr_directives(v, false).ends_with("imgferry::events=off"));
        }
    }
}
