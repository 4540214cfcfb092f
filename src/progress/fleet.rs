//! A fleet's progress for people: members run side by side, so instead of bars each member gets
//! plain lines prefixed with its server's name, one per user-visible step, transfer progress
//! every 25%, and its warnings, retries and outcome. The fleet's table is the command's result
//! and is printed by the command, on stdout.

use std::collections::HashMap;

use crate::migrate::Event;
use crate::transfer;
use crate::units::size;

/// What the renderer remembers of each member.
#[derive(Default)]
pub(super) struct FleetState {
    to: String,
    members: HashMap<String, MemberView>,
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
            eprintln!(
                "{verb} fleet {fleet}: {members} server(s), {from} → {to}, {parallel} at a time, \
                 {concurrency} transfer connection(s) shared\n    state: {state_file}"
            );
        }
        Event::Member {
            member,
            server,
            detail,
        } => {
            let view = state.members.entry(member.clone()).or_default();
            if let Some(line) = member_line(view, &state.to, detail) {
                eprintln!("[{server}] {line}");
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
        Event::StepStarted { step, .. } => {
            let label = step.label(to);
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
