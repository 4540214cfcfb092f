//! A fleet's progress for people. Members run side by side:
//!
//! - on a terminal, as `rclone -P` shows transfers: one line per active member (its step, then
//!   its bytes and rate while it copies) and a total line (members done, failed and waiting,
//!   bytes copied and the rate), with each member's warnings and outcome printed above them;
//! - otherwise, plain lines prefixed with the server's name, one per user-visible step, transfer
//!   progress every 25%, and warnings, retries and outcome.
//!
//! The fleet's table is the command's result and is printed by the command, on stdout.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar};

use crate::migrate::Event;
use crate::transfer;
use crate::units::size;

/// What the renderer remembers of each member.
#[derive(Default)]
pub(super) struct FleetState {
    to: String,
    members: HashMap<String, MemberView>,
    /// The bars, when drawing on a terminal.
    tty: Option<Bars>,
}

/// A terminal's bars: one per active member, and the fleet's total below them.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    active: HashMap<String, ProgressBar>,
    /// Bytes each member has copied, for the total.
    copied: HashMap<String, u64>,
    members: usize,
    done: usize,
    failed: usize,
}

impl FleetState {
    /// A fleet drawn as bars on `multi`.
    pub(super) fn drawing(multi: MultiProgress) -> Self {
        let total = ProgressBar::hidden();
        Self {
            tty: Some(Bars {
                multi,
                total,
                active: HashMap::new(),
                copied: HashMap::new(),
                members: 0,
                done: 0,
                failed: 0,
            }),
            ..Self::default()
        }
    }
}

impl Bars {
    fn started(&mut self, members: usize) {
        self.members = members;
        let total = self.multi.add(ProgressBar::no_length());
        total.set_style(super::style(
            "{spinner:.cyan} {msg} {bytes} copied at {bytes_per_sec}, {elapsed}",
            "{spinner} {msg} {bytes} copied at {bytes_per_sec}, {elapsed}",
        ));
        total.enable_steady_tick(Duration::from_millis(120));
        self.total = total;
        self.count();
    }

    /// "fleet: 2/5 done, 1 failed, 2 waiting;"
    fn count(&self) {
        let waiting = self
            .members
            .saturating_sub(self.done + self.failed + self.active.len());
        let mut msg = format!("fleet: {}/{} done", self.done, self.members);
        if self.failed > 0 {
            msg.push_str(&format!(", {} failed", self.failed));
        }
        msg.push_str(&format!(
            ", {} active, {waiting} waiting;",
            self.active.len()
        ));
        self.total.set_message(msg);
    }

    fn member(&mut self, member: &str, server: &str, to: &str, event: &Event) {
        match event {
            Event::Started { .. } => {
                let pb = self
                    .multi
                    .insert_before(&self.total, ProgressBar::new_spinner());
                pb.set_style(super::style(
                    "  {spinner:.cyan} {prefix:.bold} {wide_msg}",
                    "  {spinner} {prefix} {wide_msg}",
                ));
                pb.set_prefix(format!("[{server}]"));
                pb.set_message("starting");
                pb.enable_steady_tick(Duration::from_millis(120));
                self.active.insert(member.to_string(), pb);
                self.count();
            }
            Event::StepStarted { label, .. } => {
                if let Some(pb) = self.active.get(member) {
                    pb.set_message(label.clone());
                }
            }
            Event::Transfer {
                detail: transfer::Event::Started { total, .. },
            } => {
                if let Some(pb) = self.active.get(member) {
                    pb.set_length(*total);
                    pb.set_style(super::style(
                        "  {prefix:.bold} [{bar:20.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                        "  {prefix} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    ));
                }
            }
            Event::Transfer {
                detail: transfer::Event::Progress { done, .. },
            } => {
                if let Some(pb) = self.active.get(member) {
                    if pb.length().is_none() {
                        pb.set_message(format!(
                            "export to Cloud Files; {} copied to {to} while it writes",
                            size(*done)
                        ));
                    }
                    pb.set_position(*done);
                }
                self.copied.insert(member.to_string(), *done);
                self.total.set_position(self.copied.values().sum());
            }
            Event::Transfer {
                detail: transfer::Event::Committed { .. },
            } => {
                if let Some(pb) = self.active.get(member) {
                    pb.set_style(super::style(
                        "  {spinner:.cyan} {prefix:.bold} {wide_msg}",
                        "  {spinner} {prefix} {wide_msg}",
                    ));
                }
            }
            Event::Report { .. } | Event::Error { .. } => {
                if let Some(pb) = self.active.remove(member) {
                    pb.finish_and_clear();
                }
                if matches!(event, Event::Report { .. }) {
                    self.done += 1;
                } else {
                    self.failed += 1;
                }
                self.count();
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct MemberView {
    label: String,
    next_quarter: u64,
}

/// Renders a fleet event (or a member's event) as lines on stderr.
pub(super) fn human(state: &mut FleetState, event: &Event) {
    match event {
        Event::FleetStarted {
            fleet,
            from,
            to,
            members,
            parallel,
            concurrency,
            state_file,
            resumed,
        } => {
            state.to = to.clone();
            let verb = if *resumed { "Resuming" } else { "Starting" };
            let line = format!(
                "{verb} fleet {fleet}: {members} server(s), {from} → {to}, {parallel} at a time, \
                 {concurrency} transfer connection(s) shared\n    state: {state_file}"
            );
            match &mut state.tty {
                Some(bars) => {
                    let _ = bars.multi.println(line);
                    bars.started(*members);
                }
                None => eprintln!("{line}"),
            }
        }
        Event::Member {
            member,
            server,
            detail,
        } => {
            let view = state.members.entry(member.clone()).or_default();
            let line = member_line(view, &state.to, detail);
            match &mut state.tty {
                Some(bars) => {
                    bars.member(member, server, &state.to, detail);
                    // Steps and progress are on the member's bar; what is worth keeping scrolls
                    // above the bars.
                    let keep = matches!(
                        detail.as_ref(),
                        Event::Warning { .. }
                            | Event::Retry { .. }
                            | Event::Report { .. }
                            | Event::Error { .. }
                    );
                    if let Some(line) = line.filter(|_| keep) {
                        let _ = bars.multi.println(format!("[{server}] {line}"));
                    }
                }
                None => {
                    if let Some(line) = line {
                        eprintln!("[{server}] {line}");
                    }
                }
            }
        }
        Event::FleetReport { .. } => {
            if let Some(bars) = &state.tty {
                bars.total.finish_and_clear();
                for pb in bars.active.values() {
                    pb.finish_and_clear();
                }
            }
        }
        _ => {}
    }
}

fn member_line(view: &mut MemberView, to: &str, event: &Event) -> Option<String> {
    match event {
        Event::Started { id, resumed, .. } => Some(format!(
            "{} migration {id}",
            if *resumed { "resuming" } else { "starting" }
        )),
        Event::StepStarted { label, .. } => {
            let label = label.clone();
            (label != view.label).then(|| {
                view.label.clone_from(&label);
                label
            })
        }
        Event::Warning { message } => Some(format!("warning: {message}")),
        Event::Retry {
            what,
            reason,
            until,
            ..
        } => Some(match until {
            Some(u) => format!("waiting until {u} (rate limit of {what}: {reason})"),
            None => format!("retrying {what}: {reason}"),
        }),
        Event::Transfer {
            detail:
                transfer::Event::Started {
                    already_done,
                    total,
                    ..
                },
        } => {
            view.next_quarter = 1 + already_done * 4 / (*total).max(1);
            None
        }
        Event::Transfer {
            detail: transfer::Event::Progress { done, total },
        } => {
            let quarter = done * 4 / (*total).max(1);
            (quarter >= view.next_quarter && quarter < 4).then(|| {
                view.next_quarter = quarter + 1;
                format!("{}% of {} copied", quarter * 25, size(*total))
            })
        }
        Event::Report { report } => {
            let mut line = format!(
                "done: image {} in {}",
                report.imported_image.as_deref().unwrap_or("?"),
                to
            );
            // As `nova boot` does: the service returns the password once, and imgferry never
            // stores it, so this line is the only place it is shown.
            if let Some(server) = &report.boot_server {
                line.push_str(&format!(
                    "; booted server {server} ({})",
                    if report.boot_addresses.is_empty() {
                        "no address yet".to_string()
                    } else {
                        report.boot_addresses.join(", ")
                    }
                ));
                if let Some(pass) = &report.admin_pass {
                    line.push_str(&format!(
                        ", admin password {pass} (shown once; imgferry does not store it)"
                    ));
                }
            }
            Some(line)
        }
        Event::Error { message, .. } => Some(format!(
            "stopped: {}",
            message.lines().next().unwrap_or_default()
        )),
        _ => None,
    }
}

/// A member's event as one JSON object: the member's own event with its `member` (migration id)
/// and `server` added, so a script can follow each member with one filter.
pub(super) fn json_value(event: &Event) -> Option<serde_json::Value> {
    let Event::Member {
        member,
        server,
        detail,
    } = event
    else {
        return serde_json::to_value(event).ok();
    };
    let mut v = serde_json::to_value(detail.as_ref()).ok()?;
    if let Some(o) = v.as_object_mut() {
        o.insert("member".into(), member.clone().into());
        o.insert("server".into(), server.clone().into());
    }
    Some(v)
}
