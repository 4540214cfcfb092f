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
//! This module depends on the engine's events ([`crate::migrate::event`]), never the other way.
//! Colour is used only on a terminal and never when `NO_COLOR` is set.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

mod fleet;

use crate::migrate::Event;
use crate::migrate::dry_run::DryRun;
use crate::transfer;
use crate::units::{count, size};

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people, on stderr: bars on a terminal, plain lines otherwise.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// Whether colour may be used on stderr: only on a terminal, and never when `NO_COLOR` is set to
/// anything non-empty (no-color.org).
pub fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Renders events in the chosen format.
pub struct Reporter {
    mode: Mode,
    /// A fleet's members, shown as prefixed lines in either human mode.
    fleet: Mutex<fleet::FleetState>,
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
    /// The destination region, for step labels ("copy to IAD").
    to: String,
    /// The label of the step being shown, and the seconds spent in it so far: several states make
    /// one user-visible step, which gets one heading and one "done" line.
    current: Option<(String, f64)>,
}

struct TtyState {
    multi: MultiProgress,
    step: Option<ProgressBar>,
    bar: Option<ProgressBar>,
    to: String,
}

impl Reporter {
    /// The reporter for `format`, drawing bars only when stderr is a terminal.
    pub fn new(format: Format) -> Self {
        let mode = match format {
            Format::Json => Mode::Json(Mutex::new(JsonState {
                last_progress: None,
            })),
            Format::Human if std::io::stderr().is_terminal() => Mode::Tty(Mutex::new(TtyState {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                step: None,
                bar: None,
                to: String::new(),
            })),
            Format::Human => Mode::Plain(Mutex::new(PlainState {
                next_tenth: 1,
                to: String::new(),
                current: None,
            })),
        };
        Self {
            mode,
            fleet: Mutex::new(fleet::FleetState::default()),
        }
    }

    /// This reporter as the engine's event sink.
    pub fn sink(self: &Arc<Self>) -> crate::migrate::Sink {
        let me = Arc::clone(self);
        Arc::new(move |e| me.emit(e))
    }

    pub fn emit(&self, event: Event) {
        let fleet_event = matches!(
            event,
            Event::FleetStarted { .. } | Event::Member { .. } | Event::FleetReport { .. }
        );
        if fleet_event && !matches!(self.mode, Mode::Json(_)) {
            fleet::human(&mut lock(&self.fleet), &scrubbed(event));
            return;
        }
        match &self.mode {
            Mode::Json(s) => json(&mut lock(s), &event),
            Mode::Plain(s) => plain(&mut lock(s), &scrubbed(event)),
            Mode::Tty(s) => tty(&mut lock(s), &scrubbed(event)),
        }
    }
}

/// What `Event::ExportDone` says, in either form of human output.
fn export_done_line(task: &str) -> String {
    format!("export task {task}: success (copying the last listed segments)")
}

/// The event for human output: the text a service may have written (and so may echo a secret
/// in) scrubbed, and its control characters escaped (`crate::text`).
fn scrubbed(event: Event) -> Event {
    let clean = |s: String| {
        crate::text::escape_controls_keep_lines(&crate::secrets::scrub(&s)).into_owned()
    };
    match event {
        Event::Warning { message } => Event::Warning {
            message: clean(message),
        },
        Event::Waiting { what, status } => Event::Waiting {
            what: clean(what),
            status: clean(status),
        },
        Event::StepStarted { step, detail } => Event::StepStarted {
            step,
            detail: clean(detail),
        },
        Event::Retry {
            what,
            attempt,
            delay_ms,
            reason,
            until,
        } => Event::Retry {
            what,
            attempt,
            delay_ms,
            reason: clean(reason),
            until,
        },
        Event::Transfer {
            detail:
                transfer::Event::Retry {
                    what,
                    attempt,
                    delay_ms,
                    reason,
                },
        } => Event::Transfer {
            detail: transfer::Event::Retry {
                what,
                attempt,
                delay_ms,
                reason: clean(reason),
            },
        },
        Event::Member {
            member,
            server,
            detail,
        } => Event::Member {
            member,
            server: crate::text::escape_controls(&server).into_owned(),
            detail: Box::new(scrubbed(*detail)),
        },
        other => other,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json(state: &mut JsonState, event: &Event) {
    let inner = match event {
        Event::Member { detail, .. } => detail.as_ref(),
        e => e,
    };
    if let Event::Transfer {
        detail: transfer::Event::Progress { done, total },
    } = inner
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
    if let Some(line) = fleet::json_value(event).map(|v| v.to_string()) {
        let line = crate::secrets::scrub(&line);
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
        } => {
            state.to = to.clone();
            eprintln!(
                "{}",
                started_line(id, *resumed, from.as_deref(), to, source)
            );
        }
        Event::StepStarted { step, detail } => {
            let label = step.label(&state.to);
            if state.current.as_ref().is_some_and(|(l, _)| *l == label) {
                eprintln!("    {detail}");
            } else {
                finish_label(state);
                eprintln!("==> {label}: {detail}");
                state.current = Some((label, 0.0));
            }
        }
        Event::StepFinished { seconds, .. } => {
            if let Some((_, total)) = &mut state.current {
                *total += seconds;
            }
        }
        Event::Report { .. } | Event::Error { .. } => finish_label(state),
        Event::Waiting { what, status } => eprintln!("    {what}: {status}"),
        Event::ExportDone { task } => eprintln!("    {}", export_done_line(task)),
        Event::Warning { message } => eprintln!("warning: {message}"),
        Event::Retry { .. } => eprintln!("    {}", retry_line(event).unwrap_or_default()),
        Event::Transfer { detail } => plain_transfer(state, detail),
        Event::Plan(plan) => print_plan(plan),
        Event::State { .. }
        | Event::FleetStarted { .. }
        | Event::Member { .. }
        | Event::FleetReport { .. } => {}
    }
}

/// Closes the step being shown with its total time.
fn finish_label(state: &mut PlainState) {
    if let Some((label, seconds)) = state.current.take() {
        eprintln!("    {label} done in {seconds:.1} s");
    }
}

fn plain_transfer(state: &mut PlainState, detail: &transfer::Event) {
    match detail {
        transfer::Event::Started {
            total,
            pieces,
            already_done,
            ..
        } => {
            state.next_tenth = 1 + already_done * 10 / (*total).max(1);
            eprintln!(
                "    {}",
                transfer_started_line(*total, *pieces, *already_done)
            );
        }
        transfer::Event::Progress { done, total } => {
            let tenth = done * 10 / (*total).max(1);
            if tenth >= state.next_tenth {
                state.next_tenth = tenth + 1;
                eprintln!("    {}% ({} of {})", tenth * 10, size(*done), size(*total));
            }
        }
        transfer::Event::Retry { .. } => {
            let e = Event::Transfer {
                detail: detail.clone(),
            };
            eprintln!("    {}", retry_line(&e).unwrap_or_default());
        }
        transfer::Event::PieceDone { .. } | transfer::Event::Committed { .. } => {}
    }
}

/// "retrying piece 3 (attempt 2): HTTP 503", for an engine or transfer retry; "waiting until …"
/// for a long wait a service asked for.
fn retry_line(event: &Event) -> Option<String> {
    if let Event::Retry {
        what,
        reason,
        until: Some(until),
        ..
    } = event
    {
        return Some(format!(
            "waiting until {until} (rate limit of {what}: {reason})"
        ));
    }
    let (what, attempt, reason) = match event {
        Event::Retry {
            what,
            attempt,
            reason,
            ..
        }
        | Event::Transfer {
            detail:
                transfer::Event::Retry {
                    what,
                    attempt,
                    reason,
                    ..
                },
        } => (what, attempt, reason),
        _ => return None,
    };
    Some(format!("retrying {what} (attempt {attempt}): {reason}"))
}

fn transfer_started_line(total: u64, pieces: usize, already_done: u64) -> String {
    format!(
        "{} in {} ({} already uploaded)",
        size(total),
        count(pieces, "segment"),
        size(already_done)
    )
}

/// The dry run's plan, for people (on stdout: it is the command's result).
fn print_plan(plan: &DryRun) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Plan: {} → {}, {} (dry run: nothing was created)",
        plan.from.as_deref().unwrap_or("local file"),
        plan.to,
        plan.source
    );
    for c in &plan.checks {
        let _ = writeln!(out, "  checked: {}", crate::text::escape_controls(c));
    }
    let _ = writeln!(
        out,
        "  image name: {}",
        crate::text::escape_controls(&plan.image_name)
    );
    for (i, s) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {s}", i + 1);
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
            state.to = to.clone();
            let line = started_line(id, *resumed, from.as_deref(), to, source);
            let _ = state.multi.println(line);
        }
        Event::StepStarted { step, detail } => {
            let pb = state.multi.add(ProgressBar::new_spinner());
            pb.set_style(style(
                "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                "{spinner} {prefix} {wide_msg} {elapsed}",
            ));
            pb.set_prefix(step.label(&state.to));
            pb.set_message(detail.clone());
            pb.enable_steady_tick(Duration::from_millis(120));
            state.step = Some(pb);
        }
        Event::Waiting { what, status } => {
            if let Some(pb) = &state.step {
                pb.set_message(format!("{what}: {status}"));
            }
        }
        Event::ExportDone { task } => {
            if let Some(pb) = &state.step {
                pb.set_message(export_done_line(task));
            }
        }
        Event::StepFinished { step, seconds } => {
            if let Some(pb) = state.step.take() {
                // Message and prefix first: changing the style redraws with whatever is set.
                pb.set_message(format!("{} ({seconds:.1} s)", step.label(&state.to)));
                pb.set_prefix("✓");
                pb.set_style(style("{prefix:.green} {wide_msg}", "{prefix} {wide_msg}"));
                pb.finish();
            }
        }
        Event::Warning { message } => {
            let _ = state.multi.println(format!("warning: {message}"));
        }
        Event::Retry { .. } => {
            let _ = state
                .multi
                .println(format!("  {}", retry_line(event).unwrap_or_default()));
        }
        Event::Transfer { detail } => tty_transfer(state, detail),
        Event::Plan(plan) => print_plan(plan),
        Event::State { .. }
        | Event::Report { .. }
        | Event::Error { .. }
        | Event::FleetStarted { .. }
        | Event::Member { .. }
        | Event::FleetReport { .. } => {}
    }
}

fn tty_transfer(state: &mut TtyState, detail: &transfer::Event) {
    match detail {
        transfer::Event::Started {
            total,
            already_done,
            ..
        } => {
            let bar = state.multi.add(ProgressBar::new(*total));
            bar.set_style(
                style(
                    "  [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    "  [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
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
        transfer::Event::Retry { .. } => {
            let e = Event::Transfer {
                detail: detail.clone(),
            };
            let _ = state
                .multi
                .println(format!("  {}", retry_line(&e).unwrap_or_default()));
        }
        transfer::Event::Committed { .. } => {
            if let Some(bar) = state.bar.take() {
                bar.finish();
            }
        }
        transfer::Event::PieceDone { .. } => {}
    }
}

/// An indicatif style: the coloured template, or the plain one when colour is off (`NO_COLOR`).
fn style(colored: &str, plain: &str) -> ProgressStyle {
    let template = if color_on_stderr() { colored } else { plain };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// "Starting migration m-…: server …, DFW → IAD".
fn started_line(id: &str, resumed: bool, from: Option<&str>, to: &str, source: &str) -> String {
    let verb = if resumed { "Resuming" } else { "Starting" };
    let from = from.unwrap_or("local file");
    format!("{verb} migration {id}: {source}, {from} → {to}")
}
