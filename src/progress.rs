//! Progress reporting for migrations: typed [`Event`]s from the engine, rendered for people or for
//! scripts (DESIGN §1, STYLE §7).
//!
//! - Human, on a terminal: one indicatif spinner line per step and a bytes/throughput/ETA bar for
//!   the transfer, all on stderr.
//! - Human, not a terminal: the same as plain lines on stderr, transfer progress every 10%.
//! - Json: one JSON object per line on stdout and nothing else there. Transfer progress is
//!   throttled to about four lines a second.
//!
//! Nothing secret passes through here: events carry ids, names, sizes and service messages only.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::migrate::state::Step;
use crate::transfer;

/// What a migration reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run of a migration begins (a new one, or a resume).
    Started {
        id: String,
        from: Option<String>,
        to: String,
        source: String,
        state_file: String,
        resumed: bool,
    },
    /// Work on a step begins.
    StepStarted {
        step: Step,
        detail: String,
    },
    /// A step is complete and the next state is saved.
    StepFinished {
        step: Step,
        seconds: f64,
    },
    /// The state file now records this step.
    State {
        step: Step,
    },
    /// A poll saw this status.
    Waiting {
        what: String,
        status: String,
    },
    /// An event of the transfer engine.
    Transfer {
        detail: transfer::Event,
    },
    Warning {
        message: String,
    },
    /// The final report.
    Report {
        report: Box<super::migrate::Report>,
    },
    /// The run stopped; `resume` is the command that continues it, when it can be continued.
    Error {
        message: String,
        exit_code: u8,
        resume: Option<String>,
    },
}

/// Renders events in the chosen format.
pub struct Reporter {
    mode: Mode,
}

enum Mode {
    Json(Mutex<JsonState>),
    Plain(Mutex<PlainState>),
    Tty(Mutex<TtyState>),
}

struct JsonState {
    last_progress: Option<Instant>,
}

struct PlainState {
    next_tenth: u64,
}

struct TtyState {
    multi: MultiProgress,
    step: Option<ProgressBar>,
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// The reporter for `format`, drawing bars only when stderr is a terminal.
    pub fn new(format: OutputFormat) -> Self {
        let mode = match format {
            OutputFormat::Json => Mode::Json(Mutex::new(JsonState {
                last_progress: None,
            })),
            OutputFormat::Human if std::io::stderr().is_terminal() => {
                Mode::Tty(Mutex::new(TtyState {
                    multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    step: None,
                    bar: None,
                }))
            }
            OutputFormat::Human => Mode::Plain(Mutex::new(PlainState { next_tenth: 1 })),
        };
        Self { mode }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.mode, Mode::Json(_))
    }

    pub fn emit(&self, event: Event) {
        match &self.mode {
            Mode::Json(s) => json(&mut lock(s), &event),
            Mode::Plain(s) => plain(&mut lock(s), &event),
            Mode::Tty(s) => tty(&mut lock(s), &event),
        }
    }

    /// Prints a line for people (stderr), above any bars; nothing in JSON mode.
    pub fn note(&self, line: &str) {
        match &self.mode {
            Mode::Json(_) => {}
            Mode::Plain(_) => eprintln!("{line}"),
            Mode::Tty(s) => {
                let _ = lock(s).multi.println(line);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json(state: &mut JsonState, event: &Event) {
    if let Event::Transfer {
        detail: transfer::Event::Progress { done, total },
    } = event
    {
        let now = Instant::now();
        let due = state
            .last_progress
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(250));
        if !due && done != total {
            return;
        }
        state.last_progress = Some(now);
    }
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn plain(state: &mut PlainState, event: &Event) {
    match event {
        Event::Started {
            id,
            resumed,
            from,
            to,
            source,
            ..
        } => eprintln!(
            "{}",
            started_line(id, *resumed, from.as_deref(), to, source)
        ),
        Event::StepStarted { step, detail } => eprintln!("==> {step}: {detail}"),
        Event::StepFinished { step, seconds } => eprintln!("    {step} done in {seconds:.1} s"),
        Event::Waiting { what, status } => eprintln!("    {what}: {status}"),
        Event::Warning { message } => eprintln!("warning: {message}"),
        Event::Transfer { detail } => match detail {
            transfer::Event::Started {
                total,
                pieces,
                already_done,
                ..
            } => {
                state.next_tenth = 1 + already_done * 10 / (*total).max(1);
                eprintln!(
                    "    {} in {pieces} segments ({} already uploaded)",
                    size(*total),
                    size(*already_done)
                );
            }
            transfer::Event::Progress { done, total } => {
                let tenth = done * 10 / (*total).max(1);
                if tenth >= state.next_tenth {
                    state.next_tenth = tenth + 1;
                    eprintln!("    {}% ({} of {})", tenth * 10, size(*done), size(*total));
                }
            }
            transfer::Event::Retry {
                what,
                attempt,
                reason,
                ..
            } => eprintln!("    retrying {what} (attempt {attempt}): {reason}"),
            _ => {}
        },
        Event::State { .. } | Event::Report { .. } | Event::Error { .. } => {}
    }
}

fn tty(state: &mut TtyState, event: &Event) {
    match event {
        Event::Started {
            id,
            resumed,
            from,
            to,
            source,
            ..
        } => {
            let line = started_line(id, *resumed, from.as_deref(), to, source);
            let _ = state.multi.println(line);
        }
        Event::StepStarted { step, detail } => {
            let pb = state.multi.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_prefix(step.to_string());
            pb.set_message(detail.clone());
            pb.enable_steady_tick(Duration::from_millis(120));
            state.step = Some(pb);
        }
        Event::Waiting { what, status } => {
            if let Some(pb) = &state.step {
                pb.set_message(format!("{what}: {status}"));
            }
        }
        Event::StepFinished { step, seconds } => {
            if let Some(pb) = state.step.take() {
                // Message and prefix first: changing the style redraws with whatever is set.
                pb.set_message(format!("{step} ({seconds:.1} s)"));
                pb.set_prefix("✓");
                pb.set_style(
                    ProgressStyle::with_template("{prefix:.green} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.finish();
            }
        }
        Event::Warning { message } => {
            let _ = state.multi.println(format!("warning: {message}"));
        }
        Event::Transfer { detail } => match detail {
            transfer::Event::Started {
                total,
                already_done,
                ..
            } => {
                let bar = state.multi.add(ProgressBar::new(*total));
                bar.set_style(
                    ProgressStyle::with_template(
                        "  [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_position(*already_done);
                bar.reset_eta();
                state.bar = Some(bar);
            }
            transfer::Event::Progress { done, .. } => {
                if let Some(bar) = &state.bar {
                    bar.set_position(*done);
                }
            }
            transfer::Event::Retry {
                what,
                attempt,
                reason,
                ..
            } => {
                let _ = state
                    .multi
                    .println(format!("  retrying {what} (attempt {attempt}): {reason}"));
            }
            transfer::Event::Committed { .. } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish();
                }
            }
            transfer::Event::PieceDone { .. } => {}
        },
        Event::State { .. } | Event::Report { .. } | Event::Error { .. } => {}
    }
}

/// "Starting migration m-…: server …, DFW → IAD".
fn started_line(id: &str, resumed: bool, from: Option<&str>, to: &str, source: &str) -> String {
    let verb = if resumed { "Resuming" } else { "Starting" };
    let from = from.unwrap_or("local file");
    format!("{verb} migration {id}: {source}, {from} → {to}")
}

/// Bytes in binary units, for people.
pub fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}
