//! The migration: a resumable state machine over the Rackspace APIs
//! (docs/state-machine.md).
//!
//! ```text
//! Planned ─► [ServerCreating ─► ServerActive] ─► Imaging ─► ImageActive ─► Exporting ─► Exported
//!         ─► Inspected ─► Transferring ─► Uploaded ─► Importing ─► Imported
//!         ─► [Booting ─► Booted] ─► [CleanedUp] ─► Done
//!   --image starts at ImageActive, --export at Exported, --vhd goes from Planned to Inspected.
//!   any state ─► failure { at, error, resumable } recorded beside the step; Ctrl-C saves, exit 4
//! ```
//!
//! The driver loop is load → step → persist → report. Each handler in [`steps`] does the work that
//! leaves one state and names the next; a handler that is about to POST something persists an
//! intent first (a deterministic name containing the migration id, or for tasks the input itself),
//! and a resumed handler that finds an intent without an id settles it by lookup before any POST.
//! So a kill at any instant, including between a POST and the save of its answer, never creates a
//! second server, image, task or object.
//!
//! # Layout
//! - [`state`]: the persisted record; [`store`]: the atomic, locked, versioned files.
//! - [`steps`]: one handler per state; [`route`]: which states a plan visits, and each one's
//!   description; [`settle`]: creating remote resources exactly once;
//!   [`wait`]: polling with intervals, deadlines and Ctrl-C, and the status waits.
//! - [`pipelined`]: copying export segments while the export is still writing them.
//! - [`cleanup`]: deleting what imgferry created, never anything else.
//! - [`import_code`]: reading a documented import code out of a task message, strictly;
//! - [`report`]: the final report; [`event`]: what the engine reports while it works.
//! - [`session`]: logging in, resolving regions, starting and resuming (what a front end calls);
//!   [`duplicates`]: one migration per source and route at a time.
//! - [`fleet`]: many migrations as one fleet (shared budget, rate-limit gate, one table).
//! - [`eligibility`]: what the cloud would refuse (unexportable images, volume-backed and
//!   OnMetal servers, boot flavors), refused before anything is created;
//! - [`properties`]: the source image's properties copied onto the imported one;
//! - [`to_file`]: ending at a local VHD file; [`to_cloud`]: ending at an image in an OpenStack
//!   cloud, converted on the way; [`from_cloud`]: starting from one; [`cloud`]: logging in to
//!   one; [`stream`]: reading a source in order and converting it.
//! - [`preflight`]: validating a VHD source (local or exported) and the default image name;
//!   [`dry_run`]: the checks and the plan of `migrate --dry-run`, creating nothing.

pub mod cleanup;
pub mod cloud;
pub mod cloud_boot;
pub mod cloud_server;
pub mod dry_run;
pub mod duplicates;
pub mod eligibility;
pub mod event;
pub mod fleet;
pub mod from_cloud;
pub mod glance_import;
mod held;
pub mod import_code;
pub mod pipelined;
pub mod preflight;
pub mod properties;
pub mod report;
pub mod route;
pub mod session;
pub mod settle;
pub mod staging;
pub mod state;
pub mod steps;
pub mod store;
pub mod stream;
pub mod to_cloud;
pub mod to_file;
pub mod wait;

use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::api::auth::Auth;
use crate::api::compute::Compute;
use crate::api::identity::{CatalogError, Session as Login};
use crate::api::images::Images;
use crate::api::object_store::ObjectStore;
use crate::api::{self, JsonService};
use crate::exit_code::Class;
use crate::http::RetryConfig;
use crate::vhd::ImportCode;

pub use event::{Event, Sink, retry_hook};
pub use report::Report;
pub use session::{Finished, Session};
pub use state::{Migration, Step};
pub use store::Store;

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input the engine found unusable: a source that does not exist, a region without a service.
    #[error("{0}")]
    Usage(String),
    /// A problem no resume can get past: the source does not exist, the local file changed.
    #[error("{0}")]
    Final(String),
    /// The cloud would refuse this migration (a rule of [`eligibility`]): said before anything
    /// is created.
    #[error("{rule}\n  rule from: {from}\n  what to do: {advice}")]
    Refused {
        rule: String,
        from: &'static str,
        advice: String,
    },
    /// A fact the state machine guarantees is missing: a bug, or a state file edited by hand.
    #[error(
        "internal error: {0}; the state file is inconsistent (please report this with the output \
         of `imgferry status ID`)"
    )]
    Invariant(&'static str),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Api(#[from] api::Error),
    #[error(transparent)]
    Transfer(#[from] crate::transfer::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the {what} failed: {message}")]
    TaskFailed { what: String, message: String },
    #[error("{what} went into status {status}: {message}")]
    ResourceFailed {
        what: String,
        status: String,
        message: String,
    },
    #[error("gave up waiting for {what} after {seconds:.0} s (last status: {status})")]
    Timeout {
        what: String,
        seconds: f64,
        status: String,
    },
    #[error("{}", rejected_message(*code, *predicted, message))]
    Rejected {
        code: u16,
        predicted: bool,
        /// The service's own message, for an actual rejection.
        message: String,
    },
    /// The VHD could not be read to validate it (a local file or an exported object).
    #[error("cannot validate the VHD {object}")]
    Validate {
        object: String,
        #[source]
        source: crate::vhd::Error,
    },
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(
        "not enough free space in {dir} for the transfer: it needs {needed} (the segments in \
         flight) and {available} is free; free some space, or resume with a lower --concurrency \
         or --segment-size"
    )]
    NoSpace {
        dir: String,
        needed: String,
        available: String,
    },
    /// `--to-file`: the download does not fit where it is written.
    #[error(
        "not enough free space in {dir} for the download: it needs {needed} more and {available} \
         is free; free some space there and resume, or start again with --to-file on a larger \
         file system"
    )]
    NoSpaceForFile {
        dir: String,
        needed: String,
        available: String,
    },
    #[error("{what} {path}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    /// The account may not do what the plan needs (a missing role): refused before anything is
    /// created.
    #[error("{0}")]
    NotPermitted(String),
    /// The imported image cannot be made bootable (its `vm_mode` was refused): no boot is tried.
    #[error("{0}")]
    Unbootable(String),
}

fn rejected_message(code: u16, predicted: bool, message: &str) -> String {
    let known = ImportCode::from_number(code);
    let meaning = known.map_or("an undocumented code", ImportCode::meaning);
    let advice = known.map_or(
        "contact Rackspace support with the task id",
        ImportCode::advice,
    );
    if predicted {
        let why = if message.is_empty() {
            String::new()
        } else {
            format!("\n  why: {message}")
        };
        format!(
            "the import would be rejected with code {code}: {meaning}{why}\n  what to do: \
             {advice}\n  (nothing was transferred; --force imports anyway)"
        )
    } else {
        format!(
            "the import was rejected with code {code}: {meaning}\n  the service said: {message}\n  \
             what to do: {advice}"
        )
    }
}

impl Error {
    /// What kind of failure this is (the exit code is `class().code()`).
    pub fn class(&self) -> Class {
        match self {
            Error::Usage(_) | Error::Catalog(_) | Error::Final(_) => Class::Usage,
            Error::Store(e) => e.class(),
            Error::Api(e) => e.class(),
            Error::Transfer(e) => e.class(),
            Error::Rejected { .. } | Error::Refused { .. } => Class::Rejected,
            Error::Interrupted => Class::Interrupted,
            Error::NotPermitted(_) => Class::Auth,
            _ => Class::Failed,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.class().code()
    }

    /// Whether `imgferry resume` can continue after this. A rejection is final for these bytes,
    /// and an inconsistent state file will not become consistent by running it again.
    pub fn resumable(&self) -> bool {
        !matches!(
            self,
            Error::Rejected { .. } | Error::Refused { .. } | Error::Invariant(_) | Error::Final(_)
        )
    }
}

/// How a region's clients reach it: the retry policy, the read timeout, whether Cloud Files is
/// reached over ServiceNet, and where retries are reported.
#[derive(Clone, Copy)]
pub struct Reach<'a> {
    pub retry: &'a RetryConfig,
    pub read_timeout: std::time::Duration,
    pub servicenet: bool,
    pub events: &'a Sink,
}

/// One region's services.
#[derive(Debug, Clone)]
pub struct RegionApi {
    pub name: String,
    /// Who is logged in for this region, and with which roles (from the login answer).
    pub user: Option<String>,
    pub roles: Vec<String>,
    pub compute: Compute,
    pub images: Images,
    pub files: ObjectStore,
}

impl RegionApi {
    /// The region's endpoints from the catalog; an unknown region lists the ones available. Every
    /// client reports its retries to `events`.
    pub fn resolve(
        http: &reqwest::Client,
        login: &Login,
        auth: &Auth,
        region: &str,
        how: &Reach<'_>,
    ) -> Result<Self, Error> {
        let Reach {
            retry,
            read_timeout,
            servicenet,
            events,
        } = *how;
        let service = |kind: &str, what: &'static str| -> Result<JsonService, Error> {
            let url = login.endpoint(kind, region)?;
            Ok(
                JsonService::new(http.clone(), &url, auth.clone(), retry.clone())
                    .with_retry_hook(event::retry_hook(events, what)),
            )
        };
        let files_url = if servicenet {
            login.internal_endpoint("object-store", region)?
        } else {
            login.endpoint("object-store", region)?
        };
        // The rate-limit gate is for the APIs (createImage, servers, tasks); Cloud Files traffic
        // is bounded by the transfer budget instead.
        let files_retry = RetryConfig {
            gate: None,
            ..retry.clone()
        };
        let files = ObjectStore::new(http.clone(), &files_url, auth.clone(), files_retry)
            .with_retry_hook(event::retry_hook(events, "Cloud Files request"))
            .with_read_timeout(read_timeout);
        Ok(Self {
            user: login.user.clone(),
            roles: login.roles.clone(),
            name: region.to_uppercase(),
            compute: Compute::new(service("compute", "Cloud Servers request")?),
            images: Images::new(service("image", "Cloud Images request")?),
            files,
        })
    }
}

/// What the step handlers work with.
pub struct Ctx {
    /// The source region; `None` for a local VHD.
    pub src: Option<RegionApi>,
    /// The destination region; `None` when the destination is an OpenStack cloud.
    pub dst: Option<RegionApi>,
    /// The source OpenStack cloud (`--from-cloud`).
    pub src_cloud: Option<cloud::CloudApi>,
    /// The destination OpenStack cloud (`--to-cloud`).
    pub cloud: Option<cloud::CloudApi>,
    pub store: Store,
    pub events: Sink,
    pub cancel: CancellationToken,
    /// The source account's tenant id: the owner of its own images.
    pub tenant: Option<String>,
    /// The booted server's admin password: shown once, never persisted.
    pub admin_pass: Mutex<Option<String>>,
    /// After a creating request failed ambiguously, how long lookups continue before another POST:
    /// twice the HTTP timeout, since a timed-out request can still be carried out.
    pub settle_secs: f64,
    /// Transfer connections shared with the other members of a fleet.
    pub budget: Option<crate::transfer::Budget>,
}

impl Ctx {
    pub fn src(&self) -> Result<&RegionApi, Error> {
        self.src
            .as_ref()
            .ok_or(Error::Invariant("this step needs a source region"))
    }

    pub fn dst(&self) -> Result<&RegionApi, Error> {
        self.dst
            .as_ref()
            .ok_or(Error::Invariant("this step needs a destination region"))
    }

    /// Saves `m` (off the async workers).
    pub async fn save(&self, m: &mut Migration) -> Result<(), Error> {
        m.updated = state::unix_now();
        self.store.persist(m).await?;
        Ok(())
    }

    pub fn emit(&self, e: Event) {
        (self.events)(e);
    }
}

/// Drives `m` until it is done or something stops it. The state is saved after every step; on an
/// error the failure is recorded in the state file too.
pub async fn drive(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    if m.failure.take().is_some() {
        ctx.save(m).await?;
    }
    let result = drive_steps(ctx, m).await;
    if let Err(e) = &result {
        m.failure = Some(state::Failure {
            at: m.step,
            error: crate::secrets::scrub(&crate::error_chain(e)),
            resumable: e.resumable(),
            exit_code: e.exit_code(),
        });
        // The record of what exists remotely matters more than this error; if it cannot be saved
        // the previous save (made after the last step) still stands.
        if let Err(save) = ctx.save(m).await {
            tracing::warn!(error = %crate::error_chain(&save), "could not record the failure");
        }
    }
    result
}

async fn drive_steps(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    while m.step != Step::Done {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let step = m.step;
        let started = Instant::now();
        ctx.emit(Event::StepStarted {
            step,
            label: route::label(&m.plan, step),
            detail: route::describe(m),
        });
        let outcome = steps::advance(ctx, m).await;
        let seconds = started.elapsed().as_secs_f64();
        m.add_time(step, seconds);
        outcome?;
        ctx.save(m).await?;
        ctx.emit(Event::StepFinished { step, seconds });
        ctx.emit(Event::State { step: m.step });
    }
    Ok(())
}
