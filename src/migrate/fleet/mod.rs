//! Fleets: many servers moved by one command (docs/fleets.md).
//!
//! A fleet is a list of ordinary migrations, one per server, and a record that names them. The
//! record ([`state::Fleet`]) is saved, with every member's migration id already chosen, before
//! any member starts; each member then runs exactly as `imgferry migrate --server` would, with its
//! own state file, lock and exactly-once creation, so everything docs/state-machine.md proves
//! for one migration holds for each member, and a kill at any instant leaves a fleet that
//! `imgferry resume FLEET_ID` continues.
//!
//! What members share (through the one [`Session`]): one login per account, `--parallel` members
//! imaging and exporting at a time (see [`Places`]), `--concurrency` transfer connections handed
//! out piece by piece to whichever member has a piece ready, with spill files bounded by
//! `(concurrency + parallel) × segment size` (see [`crate::transfer::Budget`]), and one rate-limit
//! gate for the APIs, so a 413/429 met by one member slows every member down instead of failing
//! any. One member's failure never stops the others.

pub mod select;
pub mod state;

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::session::{Changes, Finished, Session};
use super::state::{Entry, Plan, Step};
use super::{Error, Event, Migration, Sink, store};
pub use select::{Chosen, Selection};
pub use state::{Fleet, Member, Shard};

/// A new fleet as the command line asked for it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The options every member shares; its entry is replaced by each member's server.
    pub template: Plan,
    pub selection: Selection,
    pub parallel: usize,
    pub concurrency: usize,
    pub shard: Option<Shard>,
    /// Start even where an unfinished migration of the same server and route exists.
    pub new: bool,
}

/// How one member ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    /// Stopped; `imgferry resume FLEET_ID` continues it.
    FailedResumable,
    /// The cloud would refuse it (or did): nothing a resume can change.
    Rejected,
    /// Stopped for good for another reason (the server vanished, a state file edited by hand).
    Failed,
    /// Ctrl-C came before it finished (or started).
    Interrupted,
}

/// One line of the fleet's table.
#[derive(Debug, Clone, Serialize)]
pub struct MemberResult {
    pub server: String,
    pub server_name: String,
    pub migration: String,
    pub outcome: Outcome,
    /// Where it is (or stopped); `None` when it never started.
    pub step: Option<Step>,
    pub error: Option<String>,
    pub exit_code: u8,
    /// Transfer progress: bytes uploaded of the image's bytes.
    pub uploaded: u64,
    pub total: u64,
    /// The imported image, once there is one.
    pub image: Option<String>,
    /// When its state file last changed (Unix seconds).
    pub updated: Option<u64>,
}

/// The fleet's table and totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub fleet: String,
    pub members: Vec<MemberResult>,
    pub done: usize,
    pub failed_resumable: usize,
    pub rejected: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Bytes transferred by all members (their images' sizes).
    pub bytes: u64,
    pub seconds: f64,
    /// Times a rate limit slowed the whole fleet.
    pub rate_limited: u32,
}

impl Summary {
    fn new(fleet: &str, members: Vec<MemberResult>, seconds: f64, rate_limited: u32) -> Self {
        let n = |o: Outcome| members.iter().filter(|m| m.outcome == o).count();
        Self {
            fleet: fleet.to_string(),
            done: n(Outcome::Done),
            failed_resumable: n(Outcome::FailedResumable),
            rejected: n(Outcome::Rejected),
            failed: n(Outcome::Failed),
            interrupted: n(Outcome::Interrupted),
            bytes: members.iter().map(|m| m.uploaded).sum(),
            members,
            seconds,
            rate_limited,
        }
    }

    /// The fleet's exit code: 0 when every member is done; 4 when interrupted; 1 when any member
    /// can be resumed (resume the fleet); otherwise the first stopped member's own code (3 for a
    /// rejection, 2 for a source that does not exist).
    pub fn exit_code(&self) -> u8 {
        self.class().map_or(0, crate::exit_code::Class::code)
    }

    /// The class of the fleet's failure; `None` when every member is done.
    pub fn class(&self) -> Option<crate::exit_code::Class> {
        use crate::exit_code::Class;
        if self.done == self.members.len() {
            None
        } else if self.interrupted > 0 {
            Some(Class::Interrupted)
        } else if self.failed_resumable > 0 {
            Some(Class::Failed)
        } else {
            let code = self
                .members
                .iter()
                .find(|m| m.outcome != Outcome::Done)
                .map_or(Class::Failed.code(), |m| m.exit_code);
            Some(
                [Class::Usage, Class::Rejected, Class::Auth]
                    .into_iter()
                    .find(|c| c.code() == code)
                    .unwrap_or(Class::Failed),
            )
        }
    }

    /// Whether `imgferry resume FLEET_ID` would do anything.
    pub fn resumable(&self) -> bool {
        self.failed_resumable + self.interrupted > 0
    }
}

/// Chooses the members of a new fleet, records it, and returns it (nothing remote is created).
/// The fleet's lock is taken before it is saved and held by the caller while it runs, and the
/// members are checked again for duplicates under the state directory's lock as the fleet is
/// recorded (`duplicates`).
pub async fn create(session: &Session, req: Request) -> Result<(Fleet, store::Lock), Error> {
    let new = req.new;
    let mut fleet = choose(session, req).await?;
    let store = session.store();
    let lock = store.lock(&fleet.id)?;
    let _dir = store.lock_dir_async().await?;
    if !new {
        for member in &fleet.members {
            super::duplicates::refuse(store, &member.plan)?;
        }
    }
    state::save(store, &mut fleet).await?;
    Ok((fleet, lock))
}

/// The members of a new fleet, each with its migration id and plan; nothing is saved (a dry run
/// stops here).
pub async fn choose(session: &Session, req: Request) -> Result<Fleet, Error> {
    let from = req.template.from.clone().ok_or(Error::Usage(
        "a fleet needs a source region (--from)".into(),
    ))?;
    let ctx = session.connect(&req.template).await?;
    let mut chosen = select::resolve(&ctx.src()?.compute, &req.selection).await?;
    if matches!(req.selection, select::Selection::All { .. }) && !req.new {
        chosen = skip_moved(session, &req.template, chosen)?;
    }
    let total = chosen.len();
    let chosen = select::keep_shard(chosen, req.shard);
    if chosen.is_empty() {
        return Err(Error::Usage(match req.shard {
            Some(s) if total > 0 => format!(
                "shard {s} holds none of the {total} selected server(s); nothing to do here"
            ),
            _ => format!(
                "{} selects no server in {from}; nothing to do",
                req.selection.describe()
            ),
        }));
    }
    let mut fleet = Fleet::new(
        new_fleet_id(),
        session.identity_url().to_string(),
        from,
        req.template.to.clone(),
    );
    fleet.username = Some(session.username().to_string());
    fleet.dst_identity_url = session.destination_url().map(str::to_string);
    fleet.dst_username = session.destination_username().map(str::to_string);
    fleet.parallel = req.parallel.max(1);
    fleet.concurrency = req.concurrency.max(1);
    fleet.shard = req.shard;
    fleet.selection = req.selection.describe();
    for c in chosen {
        let mut plan = req.template.clone();
        plan.entry = Entry::Server { id: c.id.clone() };
        plan.concurrency = fleet.concurrency;
        if !req.new {
            super::duplicates::refuse(session.store(), &plan)?;
        }
        let mut migration = super::session::new_id();
        while fleet.members.iter().any(|m| m.migration == migration) {
            migration = super::session::new_id();
        }
        fleet.members.push(Member {
            server: c.id,
            server_name: c.name,
            migration,
            plan,
        });
    }
    Ok(fleet)
}

/// `--all-servers` again after a fleet finished moves only what it has not moved: servers with a
/// finished migration along the same route are left out (and named), unless `--new`.
fn skip_moved(
    session: &Session,
    template: &super::state::Plan,
    chosen: Vec<select::Chosen>,
) -> Result<Vec<select::Chosen>, Error> {
    let done = super::duplicates::finished(session.store());
    let (moved, rest): (Vec<_>, Vec<_>) = chosen.into_iter().partition(|c| {
        done.iter().any(|(p, _)| {
            p.entry == (Entry::Server { id: c.id.clone() })
                && p.from == template.from
                && p.to == template.to
                && p.to_file.is_none()
        })
    });
    if moved.is_empty() {
        return Ok(rest);
    }
    let names: Vec<String> = moved.iter().map(|c| c.name.clone()).collect();
    let what = format!(
        "{} already moved from {} to {} by a finished migration ({})",
        crate::units::count(moved.len(), "server"),
        template.from.as_deref().unwrap_or("-"),
        template.to,
        crate::text::escape_controls(&names.join(", "))
    );
    if rest.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to do: {what}; pass --new to move them again"
        )));
    }
    (session.events())(Event::Warning {
        message: format!("skipping {what}; pass --new to include them"),
    });
    Ok(rest)
}

/// Runs every unfinished member of `fleet` (`fleet.parallel` imaging and exporting at a time, see
/// [`Places`]) and returns the table.
pub async fn run(session: &Session, fleet: &Fleet, resumed: bool) -> Summary {
    let started = std::time::Instant::now();
    (session.events())(Event::FleetStarted {
        fleet: fleet.id.clone(),
        from: fleet.from.clone(),
        to: fleet.to.clone(),
        members: fleet.members.len(),
        parallel: fleet.parallel,
        concurrency: fleet.concurrency,
        state_file: state::path(session.store(), &fleet.id)
            .display()
            .to_string(),
        resumed,
    });
    let places = Places::new(fleet.parallel);
    let mut results: Vec<(usize, MemberResult)> =
        futures::stream::iter(fleet.members.iter().enumerate())
            .map(|(i, m)| {
                let places = &places;
                async move {
                    let held = places.take().await;
                    (i, run_member(session, fleet, m, held).await)
                }
            })
            .buffer_unordered(fleet.members.len().max(1))
            .collect()
            .await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<MemberResult> = results.into_iter().map(|(_, r)| r).collect();
    let limited = session.gate().map_or(0, |g| g.times_closed());
    let summary = Summary::new(&fleet.id, results, started.elapsed().as_secs_f64(), limited);
    (session.events())(Event::FleetReport {
        report: Box::new(summary.clone()),
    });
    summary
}

/// When a fleet's members may start: two bounds, both taken in member order (the semaphores are
/// fair).
///
/// - `--parallel` places for the work in the source region. A member holds one while it images
///   and exports (with the pipelined copy of what the export has listed so far) and gives it back
///   once its export is complete: the next member's imaging and export, which only wait for the
///   cloud, then run while this one's bytes move, so the link is not idle between one round of
///   members and the next. The bytes themselves are bounded by the shared `--concurrency`
///   connections and spill places ([`crate::transfer::Budget`]), not by this.
/// - `2 × --parallel` places for members not yet uploaded: at most `--parallel` exported images
///   wait for the link at a time, so a large fleet does not snapshot and export far ahead of what
///   it can ship (each waiting export is a copy of a disk in Cloud Files, and its snapshot a copy
///   in the source region).
///
/// A member waiting for its import and boot holds neither: those steps only poll the
/// destination.
struct Places {
    source: Arc<Semaphore>,
    ahead: Arc<Semaphore>,
}

/// The places one member holds, given back as it passes the steps that free them.
struct Held {
    source: Option<OwnedSemaphorePermit>,
    ahead: Option<OwnedSemaphorePermit>,
}

impl Places {
    fn new(parallel: usize) -> Self {
        let parallel = parallel.max(1);
        Self {
            source: Arc::new(Semaphore::new(parallel)),
            ahead: Arc::new(Semaphore::new(2 * parallel)),
        }
    }

    /// Waits for both places. The semaphores are never closed; a `None` would only mean running
    /// without that place.
    async fn take(&self) -> Held {
        let ahead = Arc::clone(&self.ahead).acquire_owned().await.ok();
        let source = Arc::clone(&self.source).acquire_owned().await.ok();
        Held { source, ahead }
    }
}

impl Held {
    /// Gives back what a member that reached `step` no longer needs.
    fn reached(&mut self, step: Step) {
        if step >= Step::Exported {
            self.source = None;
        }
        if step >= Step::Uploaded {
            self.ahead = None;
        }
    }
}

/// The sink of one member: every event wrapped with the member's migration id and server name.
/// It gives the member's places back as it passes its export and its upload (see [`Places`]),
/// after forwarding the event, so the next member's start is always seen after it.
fn member_sink(parent: &Sink, member: &Member, held: Held) -> Sink {
    let parent = Arc::clone(parent);
    let (id, server) = (member.migration.clone(), member.server_name.clone());
    let held = std::sync::Mutex::new(held);
    Arc::new(move |e| {
        let reached = match &e {
            Event::StepStarted { step, .. } | Event::State { step } => Some(*step),
            // The export is complete while its last segments are still copied.
            Event::ExportDone { .. } => Some(Step::Exported),
            _ => None,
        };
        parent(Event::Member {
            member: id.clone(),
            server: server.clone(),
            detail: Box::new(e),
        });
        if let Some(step) = reached {
            // A poisoned lock still holds the permits.
            held.lock().unwrap_or_else(|p| p.into_inner()).reached(step);
        }
    })
}

async fn run_member(session: &Session, fleet: &Fleet, member: &Member, held: Held) -> MemberResult {
    let sink = member_sink(session.events(), member, held);
    if session.cancel().is_cancelled() {
        return result_of(member, None, Err(&Error::Interrupted));
    }
    let saved = session.store().load(&member.migration).ok();
    let finished = match &saved {
        Some(m) if m.step == Step::Done => return result_of(member, Some(m), Ok(())),
        Some(m) if m.failure.as_ref().is_some_and(|f| !f.resumable) => {
            return result_of(member, Some(m), Ok(()));
        }
        Some(_) => {
            let changes = Changes {
                concurrency: Some(fleet.concurrency),
                ..Changes::default()
            };
            session.resume_as(&member.migration, changes, &sink).await
        }
        None => {
            session
                .start_as(member.migration.clone(), member.plan.clone(), None, &sink)
                .await
        }
    };
    match finished {
        Ok(Finished {
            migration, result, ..
        }) => {
            let r = result_of(member, Some(&migration), result.as_ref().map(|_| ()));
            let event = match result {
                Ok(report) => Event::Report {
                    report: Box::new(report),
                },
                Err(e) => error_event(&e),
            };
            sink(event);
            r
        }
        Err(e) => {
            sink(error_event(&e));
            result_of(member, saved.as_ref(), Err(&e))
        }
    }
}

fn error_event(e: &Error) -> Event {
    Event::Error {
        message: crate::secrets::scrub(&crate::error_chain(e)),
        exit_code: e.exit_code(),
        resume: None,
    }
}

/// The table line of `member`: from this run's error if it has one, else from its saved state.
fn result_of(member: &Member, m: Option<&Migration>, run: Result<(), &Error>) -> MemberResult {
    let (outcome, error, exit_code) = match run {
        Err(e) => (
            outcome_of(e),
            Some(crate::secrets::scrub(&crate::error_chain(e))),
            e.exit_code(),
        ),
        Ok(()) => match m.and_then(|m| m.failure.as_ref()) {
            Some(f) if m.is_some_and(|m| m.step != Step::Done) => {
                let outcome = if f.resumable {
                    Outcome::FailedResumable
                } else if f.exit_code == crate::exit_code::Class::Rejected.code() {
                    Outcome::Rejected
                } else {
                    Outcome::Failed
                };
                (outcome, Some(f.error.clone()), f.exit_code)
            }
            _ => (Outcome::Done, None, 0),
        },
    };
    let (uploaded, total) = m.and_then(Migration::progress).unwrap_or((0, 0));
    MemberResult {
        server: member.server.clone(),
        server_name: member.server_name.clone(),
        migration: member.migration.clone(),
        outcome,
        step: m.map(|m| m.step),
        error,
        exit_code,
        uploaded,
        total,
        image: m.and_then(|m| m.facts.imported_image.clone()),
        updated: m.map(|m| m.updated),
    }
}

fn outcome_of(e: &Error) -> Outcome {
    use crate::exit_code::Class;
    match e.class() {
        Class::Interrupted => Outcome::Interrupted,
        Class::Rejected => Outcome::Rejected,
        _ if e.resumable() && !matches!(e, Error::Usage(_)) => Outcome::FailedResumable,
        _ => Outcome::Failed,
    }
}

/// Continues fleet `id`: every member not done (and not stopped for good) runs again.
pub async fn resume(
    session: &Session,
    id: &str,
    concurrency: Option<usize>,
) -> Result<Summary, Error> {
    let mut fleet = state::load(session.store(), id)?;
    // A second `resume` of a running fleet touches none of its members.
    let _lock = session.store().lock(id).map_err(|e| match e {
        store::Error::Locked { .. } => Error::Usage(format!(
            "fleet {id} is running in another imgferry process; its members were not touched \
             (`imgferry status {id}` shows their progress)"
        )),
        other => other.into(),
    })?;
    if fleet.identity_url != session.identity_url() {
        return Err(Error::Usage(format!(
            "fleet {id} was started against the identity endpoint {}, but this run would log in \
             at {}; unset --identity-url / RAX_IDENTITY_URL or set it to the saved one",
            fleet.identity_url,
            session.identity_url()
        )));
    }
    if let Some(n) = concurrency {
        fleet.concurrency = n;
        state::save(session.store(), &mut fleet).await?;
    }
    Ok(run(session, &fleet, true).await)
}

/// The table of fleet `id` from its files, without running anything (`imgferry status FLEET_ID`).
pub fn status(store: &super::Store, id: &str) -> Result<(Fleet, Summary), Error> {
    let fleet = state::load(store, id)?;
    let members = fleet
        .members
        .iter()
        .map(|m| {
            let saved = store.load(&m.migration).ok();
            let mut r = result_of(m, saved.as_ref(), Ok(()));
            if saved.is_none() {
                r.outcome = Outcome::Interrupted;
                r.error = Some("not started yet".into());
            } else if saved
                .as_ref()
                .is_some_and(|s| s.step != Step::Done && s.failure.is_none())
            {
                // Running now, or killed before it could record why it stopped.
                r.outcome = Outcome::Interrupted;
            }
            r
        })
        .collect();
    let summary = Summary::new(&fleet.id, members, 0.0, 0);
    Ok((fleet, summary))
}

/// A new fleet id: `f-` and 10 hex digits.
pub fn new_fleet_id() -> String {
    format!("f-{}", &super::session::new_id()[2..])
}
