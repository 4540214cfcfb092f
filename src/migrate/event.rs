//! What the migration engine reports while it works. The engine owns these types and emits them
//! into a [`Sink`]; renderers (the `progress` module: bars, plain lines, JSON lines) consume them
//! and the engine never knows which one is listening (nextest's reporter events work the same
//! way). Events carry ids, names, sizes and service messages only: nothing secret.

use std::sync::Arc;

use serde::Serialize;

use super::report::Report;
use super::state::Step;
use crate::transfer;

/// One thing that happened.
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
        /// The documented step it is part of, as this route names it (`route::label`).
        label: String,
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
    /// The export task succeeded while its last listed segments were still being copied
    /// (pipelined): the work in the source region is done, and a fleet member gives its
    /// `--parallel` place to the next (docs/fleets.md). The step ends when the copy round does.
    ExportDone {
        task: String,
    },
    /// A request to a service is sent again after a failure or a rate limit.
    Retry {
        what: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
        /// For a long wait the service asked for (over 30 s): when it ends, in UTC.
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<String>,
    },
    /// An event of the transfer engine.
    Transfer {
        detail: transfer::Event,
    },
    Warning {
        message: String,
    },
    /// What a dry run found and what a real run would do; nothing was created.
    Plan(Box<super::dry_run::DryRun>),
    /// The final report.
    Report {
        report: Box<Report>,
    },
    /// A fleet run begins (docs/fleets.md).
    FleetStarted {
        fleet: String,
        from: String,
        to: String,
        members: usize,
        parallel: usize,
        concurrency: usize,
        state_file: String,
        resumed: bool,
    },
    /// An event of one member of a fleet: in JSON, the member's event with `member` (its
    /// migration id) and `server` added.
    Member {
        member: String,
        server: String,
        detail: Box<Event>,
    },
    /// The fleet's final table.
    FleetReport {
        report: Box<super::fleet::Summary>,
    },
    /// The run stopped; `resume` is the command that continues it, when it can be continued.
    Error {
        message: String,
        exit_code: u8,
        resume: Option<String>,
    },
}

/// Where events go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops everything (library users that do not render progress).
pub fn discard() -> Sink {
    Arc::new(|_| {})
}

/// The retry hook of an API client in terms of events: every retry becomes an [`Event::Retry`]
/// naming `what` was retried.
pub fn retry_hook(sink: &Sink, what: &'static str) -> crate::http::RetryHook {
    let sink = Arc::clone(sink);
    Arc::new(move |r: &crate::http::Retry<'_>| {
        sink(Event::Retry {
            what: what.to_string(),
            attempt: r.attempt,
            delay_ms: u64::try_from(r.delay.as_millis()).unwrap_or(u64::MAX),
            reason: r.reason.to_string(),
            until: r.requested.then(|| crate::http::clock_after(r.delay)),
        });
    })
}
