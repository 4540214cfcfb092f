//! `imgferry migrate` with several servers, `resume FLEET_ID` and `status FLEET_ID`: a fleet
//! chosen, run and rendered as one table (docs/fleets.md). The work is in
//! [`crate::migrate::fleet`].

use std::sync::Arc;

use super::{Error, Outcome};
use crate::config::{FleetSpec, MigrateRequest};
use crate::exit_code::Class;
use crate::migrate::fleet::{self, MemberResult, Request, Summary};
use crate::migrate::{Event, Session};
use crate::progress::{Format, Reporter};
use crate::units::size;

/// A fleet that did not finish: the table says which members stopped and why.
#[derive(Debug, thiserror::Error)]
#[error("fleet {fleet}: {what}")]
pub struct Stopped {
    pub fleet: String,
    pub what: String,
    pub class: Class,
    pub resumable: bool,
}

/// Chooses, records and runs a new fleet (or, with --dry-run, checks every member).
pub async fn run_new(
    session: Session,
    request: MigrateRequest,
    spec: FleetSpec,
    reporter: &Arc<Reporter>,
    format: Format,
) -> Result<Outcome, Error> {
    let req = Request {
        concurrency: request.plan.concurrency,
        template: request.plan,
        selection: spec.selection,
        parallel: spec.parallel,
        shard: spec.shard,
        new: request.new,
    };
    if request.dry_run {
        return dry_run(&session, req, reporter, format).await;
    }
    let session = session.shared(req.concurrency, req.parallel);
    let (fleet, _lock) = fleet::create(&session, req).await?;
    let summary = fleet::run(&session, &fleet, false).await;
    render(&summary, format)
}

/// Continues every unfinished member of fleet `id`.
pub async fn resume(
    session: Session,
    id: &str,
    concurrency: Option<usize>,
    format: Format,
) -> Result<Outcome, Error> {
    let saved = fleet::state::load(session.store(), id)?;
    let session = session.shared(concurrency.unwrap_or(saved.concurrency), saved.parallel);
    let summary = fleet::resume(&session, id, concurrency).await?;
    render(&summary, format)
}

/// `imgferry status FLEET_ID`: one line per member from the state files.
pub fn status(store: &crate::migrate::Store, id: &str, format: Format) -> Result<Outcome, Error> {
    let (fleet, summary) = fleet::status(store, id)?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"event": "fleet", "fleet": fleet, "summary": summary})
        );
        return Ok(Outcome::Done);
    }
    println!(
        "Fleet {}: {} → {}, {}, {} at a time, {} connection(s){}",
        fleet.id,
        fleet.from,
        fleet.to,
        fleet.selection,
        fleet.parallel,
        fleet.concurrency,
        fleet
            .shard
            .map(|s| format!(", shard {s}"))
            .unwrap_or_default()
    );
    print_table(&summary, true);
    Ok(Outcome::Done)
}

async fn dry_run(
    session: &Session,
    req: Request,
    reporter: &Arc<Reporter>,
    format: Format,
) -> Result<Outcome, Error> {
    let fleet = fleet::choose(session, req).await?;
    let mut rejected = 0;
    if format == Format::Human {
        println!(
            "Fleet dry run: {} server(s) from {} to {} ({}); nothing was created",
            fleet.members.len(),
            fleet.from,
            fleet.to,
            fleet.selection
        );
    }
    for m in &fleet.members {
        let plan = session.dry_run(m.plan.clone(), None).await?;
        rejected += usize::from(plan.would_be_rejected());
        let event = Event::Plan(Box::new(plan));
        if format == Format::Human {
            println!(
                "\n[{}] {}",
                crate::text::escape_controls(&m.server_name),
                m.server
            );
            reporter.emit(event);
        } else {
            reporter.emit(Event::Member {
                member: m.migration.clone(),
                server: m.server_name.clone(),
                detail: Box::new(event),
            });
        }
    }
    Ok(if rejected > 0 {
        Outcome::Rejected
    } else {
        Outcome::Done
    })
}

/// Prints the table (human) and turns the summary into the command's outcome.
fn render(summary: &Summary, format: Format) -> Result<Outcome, Error> {
    if format == Format::Human {
        println!(
            "Fleet {}: {} of {} done in {:.1} s, {} moved{}",
            summary.fleet,
            summary.done,
            summary.members.len(),
            summary.seconds,
            size(summary.bytes),
            if summary.rate_limited > 0 {
                format!(
                    "; rate limits slowed the fleet {} time(s)",
                    summary.rate_limited
                )
            } else {
                String::new()
            }
        );
        print_table(summary, false);
    }
    match summary.class() {
        None => Ok(Outcome::Done),
        Some(class) => Err(Error::Fleet(Stopped {
            fleet: summary.fleet.clone(),
            what: counts(summary),
            class,
            resumable: summary.resumable(),
        })),
    }
}

/// "6 of 8 done, 1 failed (resumable), 1 rejected".
fn counts(s: &Summary) -> String {
    let mut parts = vec![format!("{} of {} done", s.done, s.members.len())];
    for (n, what) in [
        (s.failed_resumable, "failed (resumable)"),
        (s.interrupted, "interrupted"),
        (s.rejected, "rejected"),
        (s.failed, "failed for good"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

fn outcome_label(m: &MemberResult) -> &'static str {
    match m.outcome {
        fleet::Outcome::Done => "done",
        fleet::Outcome::FailedResumable => "failed (resumable)",
        fleet::Outcome::Rejected => "rejected",
        fleet::Outcome::Failed => "failed",
        fleet::Outcome::Interrupted => "unfinished",
    }
}

fn print_table(summary: &Summary, with_age: bool) {
    let mut t = super::table::new(
        &[
            "SERVER",
            "MIGRATION",
            "RESULT",
            "STEP",
            "COPIED",
            "AGE",
            "IMAGE / LAST ERROR",
        ],
        &[1, 2, 3, 5],
    );
    let now = crate::migrate::state::unix_now();
    for m in &summary.members {
        let copied = if m.total > 0 {
            format!("{}/{}", size(m.uploaded), size(m.total))
        } else {
            "-".into()
        };
        let age = match (with_age, m.updated) {
            (true, Some(t)) => super::table::age(now.saturating_sub(t)),
            _ => "-".into(),
        };
        let last = match (&m.image, &m.error) {
            (_, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
            (Some(i), None) => i.clone(),
            (None, None) => String::new(),
        };
        t.add_row(vec![
            crate::text::escape_controls(&m.server_name).into_owned(),
            m.migration.clone(),
            outcome_label(m).to_string(),
            m.step.map_or("-".into(), |s| s.to_string()),
            copied,
            age,
            crate::text::escape_controls(&last).into_owned(),
        ]);
    }
    super::table::print(&t);
    println!("  total: {}, {}", counts(summary), size(summary.bytes));
}
