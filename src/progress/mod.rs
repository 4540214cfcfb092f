//! Progress reporting for migrations: typed [`Event`]s from the engine, rendered for people or for
//! scripts.
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
    /// A fleet's members, shown as prefixed lines (or, on a terminal, one bar each).
    fleet: Mutex<fleet::FleetState>,
}

enum Mode {
    Json(Mutex<JsonState>),
    Plain(Mutex<PlainState>),
    Tty(Mutex<TtyState>),
    /// `-q`: only a dry run's plan (the command's result); errors are printed by the caller.
    Quiet,
}

struct JsonState {
    last_progress: Option<Instant>,
}

struct PlainState {
    next_tenth: u64,
    /// Whether the copy's total is known (a pipelined copy's grows with the export, so no share
    /// of it is printed).
    total_known: bool,
    /// The destination region, for step labels ("copy to IAD").
    to: String,
    /// The label of the step being shown, and the seconds spent in it so far: several states make
    /// one user-visible step, which gets one heading and one "done" line.
    current: Option<(String, f64)>,
}

struct TtyState {
    multi: MultiProgress,
    /// The step being shown: its label, its spinner and the seconds its states took so far.
    step: Option<(String, ProgressBar, f64)>,
    /// The copy's bar: a byte count and rate while the export still writes (the total is not
    /// known yet), then a bar once it is.
    bar: Option<ProgressBar>,
    to: String,
}

impl Reporter {
    /// The reporter for `format` (`quiet`: results only), drawing bars only when stderr is a
    /// terminal.
    pub fn new(format: Format, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let mode = match format {
            Format::Json => Mode::Json(Mutex::new(JsonState {
                last_progress: None,
            })),
            Format::Human if quiet => Mode::Quiet,
            Format::Human if tty => return Self::drawing_to(ProgressDrawTarget::stderr()),
            Format::Human => Mode::Plain(Mutex::new(PlainState {
                next_tenth: 1,
                total_known: false,
                to: String::new(),
                current: None,
            })),
        };
        Self {
            mode,
            fleet: Mutex::new(fleet::FleetState::default()),
        }
    }

    /// The terminal renderer, drawing to `target` (stderr, or a test's in-memory terminal).
    pub fn drawing_to(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        Self {
            fleet: Mutex::new(fleet::FleetState::drawing(multi.clone())),
            mode: Mode::Tty(Mutex::new(TtyState {
                multi,
                step: None,
                bar: None,
                to: String::new(),
            })),
        }
    }

    /// This reporter as the engine's event sink.
    pub fn sink(self: &Arc<Self>) -> crate::migrate::Sink {
        let me = Arc::clone(self);
        Arc::new(move |e| me.emit(e))
    }

    pub fn emit(&self, event: Event) {
        // The log file (--log-file) keeps every event; stderr shows them as progress instead.
        if tracing::enabled!(target: crate::logging::EVENTS, tracing::Level::INFO)
            && let Some(v) = fleet::json_value(&event)
        {
            tracing::info!(target: crate::logging::EVENTS, "{v}");
        }
        let fleet_event = matches!(
            event,
            Event::FleetStarted { .. } | Event::Member { .. } | Event::FleetReport { .. }
        );
        if fleet_event && matches!(self.mode, Mode::Plain(_) | Mode::Tty(_)) {
            fleet::human(&mut lock(&self.fleet), &scrubbed(event));
            return;
        }
        match &self.mode {
            Mode::Json(s) => json(&mut lock(s), &event),
            Mode::Plain(s) => plain(&mut lock(s), &scrubbed(event)),
            Mode::Tty(s) => tty(&mut lock(s), &scrubbed(event)),
            Mode::Quiet => {
                if let Event::Plan(plan) = &event {
                    print_plan(plan);
                }
            }
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
        Event::StepStarted {
            step,
            label,
            detail,
        } => Event::StepStarted {
            step,
            label: clean(label),
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
        Event::StepStarted { label, detail, .. } => {
            let label = label.clone();
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
            state.total_known = true;
            eprintln!(
                "    {}",
                transfer_started_line(*total, *pieces, *already_done)
            );
        }
        // Before the copy's start is announced its total is only what the export has listed.
        transfer::Event::Progress { .. } if !state.total_known => {}
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
        transfer::Event::Committed { .. } => state.total_known = false,
        transfer::Event::PieceDone { .. } => {}
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
        Event::StepStarted { label, detail, .. } => {
            let label = label.clone();
            // Several states make one user-visible step: one line for all of them.
            if let Some((current, pb, _)) = &state.step
                && *current == label
            {
                pb.set_message(detail.clone());
                return;
            }
            tty_finish_step(state);
            let pb = state.multi.add(ProgressBar::new_spinner());
            pb.set_style(style(
                "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                "{spinner} {prefix} {wide_msg} {elapsed}",
            ));
            pb.set_prefix(label.clone());
            pb.set_message(detail.clone());
            pb.enable_steady_tick(Duration::from_millis(120));
            state.step = Some((label, pb, 0.0));
        }
        Event::Waiting { what, status } => {
            if let Some((_, pb, _)) = &state.step {
                pb.set_message(format!("{what}: {status}"));
            }
        }
        Event::ExportDone { task } => {
            if let Some((_, pb, _)) = &state.step {
                pb.set_message(export_done_line(task));
            }
        }
        Event::StepFinished { seconds, .. } => {
            if let Some((_, _, total)) = &mut state.step {
                *total += seconds;
            }
        }
        Event::Report { .. } | Event::Error { .. } => {
            tty_finish_step(state);
            if let Some(bar) = state.bar.take() {
                bar.abandon();
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
        | Event::FleetStarted { .. }
        | Event::Member { .. }
        | Event::FleetReport { .. } => {}
    }
}

/// Ends the step being shown: "✓ export to Cloud Files (4.2 s)", once.
fn tty_finish_step(state: &mut TtyState) {
    if let Some((label, pb, seconds)) = state.step.take() {
        // Message and prefix first: changing the style redraws with whatever is set.
        pb.set_message(format!("{label} ({seconds:.1} s)"));
        pb.set_prefix("✓");
        pb.set_style(style("{prefix:.green} {wide_msg}", "{prefix} {wide_msg}"));
        pb.finish();
    }
}

fn tty_transfer(state: &mut TtyState, detail: &transfer::Event) {
    match detail {
        transfer::Event::Started {
            total,
            already_done,
            ..
        } => {
            // A pipelined copy's byte count gives way to the bar, under the copy step's line.
            if let Some(growing) = state.bar.take() {
                growing.finish_and_clear();
            }
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
            if state.bar.is_none() {
                // A pipelined copy: segments go as the export lists them, before the image's
                // size is known, so bytes and rate without a share.
                let bar = state.multi.add(ProgressBar::no_length());
                bar.set_style(style(
                    "  {spinner:.cyan} {bytes} copied to {msg} at {bytes_per_sec} while the export writes",
                    "  {spinner} {bytes} copied to {msg} at {bytes_per_sec} while the export writes",
                ));
                bar.set_message(state.to.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                state.bar = Some(bar);
            }
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

#[cfg(test)]
mod tests {
    use indicatif::{InMemoryTerm, ProgressDrawTarget};

    use super::*;
    use crate::migrate::Step;

    fn reporter() -> (Reporter, InMemoryTerm) {
        let term = InMemoryTerm::new(40, 100);
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        (Reporter::drawing_to(target), term)
    }

    fn step(r: &Reporter, step: Step, detail: &str) {
        r.emit(Event::StepStarted {
            step,
            label: step.label("IAD"),
            detail: detail.into(),
        });
        r.emit(Event::StepFinished { step, seconds: 0.5 });
    }

    fn copied(r: &Reporter, done: u64, total: u64) {
        r.emit(Event::Transfer {
            detail: transfer::Event::Progress { done, total },
        });
    }

    /// What the terminal shows once drawing has settled.
    fn screen(term: &InMemoryTerm) -> String {
        std::thread::sleep(Duration::from_millis(200));
        term.contents()
    }

    #[test]
    fn a_terminal_shows_one_line_per_step_and_the_bytes_of_a_pipelined_copy() {
        let (r, term) = reporter();
        r.emit(Event::Started {
            id: "m-1".into(),
            from: Some("DFW".into()),
            to: "IAD".into(),
            source: "server s".into(),
            state_file: "/x".into(),
            resumed: false,
        });
        step(&r, Step::Planned, "planning");
        step(&r, Step::Imaging, "imaging");
        // Two states of the export, and a copy running beside it whose total is what the export
        // has listed so far.
        step(&r, Step::ImageActive, "starting the export");
        r.emit(Event::StepStarted {
            step: Step::Exporting,
            label: Step::Exporting.label("IAD"),
            detail: "waiting".into(),
        });
        copied(&r, 6 << 20, 8 << 20);
        let during = screen(&term);
        assert!(
            during.contains("6 MiB copied to IAD") || during.contains("6.00 MiB copied to IAD"),
            "{during}"
        );
        assert!(
            !during.contains('%'),
            "no share of an unknown total: {during}"
        );
        r.emit(Event::StepFinished {
            step: Step::Exporting,
            seconds: 1.0,
        });
        step(&r, Step::Exported, "inspecting");
        r.emit(Event::StepStarted {
            step: Step::Inspected,
            label: Step::Inspected.label("IAD"),
            detail: "copying".into(),
        });
        r.emit(Event::Transfer {
            detail: transfer::Event::Started {
                total: 16 << 20,
                pieces: 2,
                already_done: 8 << 20,
                segment_size: 8 << 20,
            },
        });
        copied(&r, 16 << 20, 16 << 20);
        step(&r, Step::Transferring, "committing");
        for s in [Step::Uploaded, Step::Importing, Step::Imported] {
            step(&r, s, "importing");
        }
        r.emit(Event::Error {
            message: "stop".into(),
            exit_code: 1,
            resume: None,
        });
        let end = screen(&term);
        for label in [
            "plan",
            "image the server",
            "export to Cloud Files",
            "check the VHD",
            "copy to IAD",
            "import",
        ] {
            let lines = end
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("✓ {label} (")))
                .count();
            assert_eq!(lines, 1, "one line for {label}:\n{end}");
        }
        // The export's two states add up on its one line.
        assert!(end.contains("✓ export to Cloud Files (1.5 s)"), "{end}");
        assert!(
            end.contains("16.00 MiB/16.00 MiB") || end.contains("16 MiB/16 MiB"),
            "{end}"
        );
    }

    #[test]
    fn a_fleet_on_a_terminal_has_a_bar_per_active_member_and_a_total() {
        let (r, term) = reporter();
        r.emit(Event::FleetStarted {
            fleet: "f-1".into(),
            from: "DFW".into(),
            to: "IAD".into(),
            members: 3,
            parallel: 2,
            concurrency: 4,
            state_file: "/x".into(),
            resumed: false,
        });
        let member = |m: &str, server: &str, e: Event| {
            r.emit(Event::Member {
                member: m.into(),
                server: server.into(),
                detail: Box::new(e),
            })
        };
        for (m, server) in [("m-a", "web-1"), ("m-b", "web-2")] {
            member(
                m,
                server,
                Event::Started {
                    id: m.into(),
                    from: Some("DFW".into()),
                    to: "IAD".into(),
                    source: server.into(),
                    state_file: "/x".into(),
                    resumed: false,
                },
            );
        }
        member(
            "m-a",
            "web-1",
            Event::StepStarted {
                step: Step::Imaging,
                label: Step::Imaging.label("IAD"),
                detail: "imaging".into(),
            },
        );
        member(
            "m-b",
            "web-2",
            Event::Transfer {
                detail: transfer::Event::Started {
                    total: 4 << 20,
                    pieces: 1,
                    already_done: 0,
                    segment_size: 4 << 20,
                },
            },
        );
        member(
            "m-b",
            "web-2",
            Event::Transfer {
                detail: transfer::Event::Progress {
                    done: 2 << 20,
                    total: 4 << 20,
                },
            },
        );
        let shown = screen(&term);
        assert!(shown.contains("[web-1] image the server"), "{shown}");
        assert!(
            shown.contains("[web-2]") && shown.contains("2.00 MiB/4.00 MiB"),
            "{shown}"
        );
        assert!(
            shown.contains("fleet: 0/3 done, 2 active, 1 waiting;"),
            "{shown}"
        );
        member(
            "m-b",
            "web-2",
            Event::Error {
                message: "no room".into(),
                exit_code: 1,
                resume: None,
            },
        );
        let after = screen(&term);
        assert!(after.contains("[web-2] stopped: no room"), "{after}");
        assert!(
            after.contains("fleet: 0/3 done, 1 failed, 1 active, 1 waiting;"),
            "{after}"
        );
    }
}
