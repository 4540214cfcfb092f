//! `imgferry transfer` (hidden): one object copied by the transfer engine, outside a migration.
//! Benchmarks and tests drive the engine through it; its versioned state file
//! ([`crate::transfer::state_file`]) makes it resumable. Progress goes through the same renderer
//! as a migration's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{Error as CommandError, Outcome};
use crate::api::auth::Auth;
use crate::api::object_store::ObjectStore;
use crate::cli::TransferArgs;
use crate::config::{self, RunConfig};
use crate::exit_code::Class;
use crate::migrate::event::{self, Event, Sink};
use crate::migrate::state::ObjectRef;
use crate::progress::{Format, Reporter};
use crate::transfer::{
    self, Endpoint, ListingPolicy, Options, SourceAccess, TransferState, state_file,
};

/// Why the command could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: expected CONTAINER/OBJECT")]
    Location(String),
    #[error("say what to copy: --src-url with --src, or --file")]
    NoSource,
    #[error(
        "{0} is not set: put the Cloud Files token in the environment (never on the command line)"
    )]
    Token(&'static str),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    State(#[from] state_file::Error),
    #[error("the state file {path} describes a copy to {found}, not to {wanted}")]
    StateMismatch {
        path: String,
        found: String,
        wanted: String,
    },
    #[error("cannot create a work directory")]
    WorkDir(#[source] std::io::Error),
    #[error(transparent)]
    Transfer(#[from] transfer::Error),
    /// The transfer stopped with its state saved.
    #[error(transparent)]
    Resumable(Box<Resumable>),
}

/// A transfer that stopped with its state saved in `state`; it reads as its error.
#[derive(Debug)]
pub struct Resumable {
    pub state: String,
    pub error: transfer::Error,
}

impl std::fmt::Display for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Resumable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Transfer(e) => e.class(),
            Error::Resumable(r) => r.error.class(),
            Error::Client(_) | Error::WorkDir(_) => Class::Failed,
            _ => Class::Usage,
        }
    }
}

fn object(location: &str) -> Result<ObjectRef, Error> {
    location
        .parse()
        .map_err(|_| Error::Location(location.to_string()))
}

fn store(
    cfg: &RunConfig,
    url: &str,
    token_var: &'static str,
    events: &Sink,
) -> Result<ObjectStore, Error> {
    let http = crate::http::client_with_timeout(cfg.http_timeout).map_err(Error::Client)?;
    let token = std::env::var(token_var).map_err(|_| Error::Token(token_var))?;
    Ok(
        ObjectStore::new(http, url, Auth::fixed(&token), cfg.retry.clone())
            .with_retry_hook(event::retry_hook(events, "Cloud Files request")),
    )
}

/// Runs the copy and prints the outcome.
pub async fn run(args: &TransferArgs, cfg: &RunConfig) -> Result<Outcome, CommandError> {
    let concurrency = config::concurrency(args.concurrency)?;
    let segment_size = config::segment_size(args.segment_size)?;
    let reporter = Arc::new(Reporter::new(cfg.format, cfg.quiet));
    let sink = reporter.sink();
    let dst = object(&args.dst)?;
    let dst_store = store(cfg, &args.dst_url, "IMGFERRY_DST_TOKEN", &sink)?;
    let access = match (&args.src_url, &args.file) {
        (Some(url), _) => SourceAccess::Store(store(cfg, url, "IMGFERRY_SRC_TOKEN", &sink)?),
        (None, Some(file)) => SourceAccess::File(file.clone()),
        (None, None) => return Err(Error::NoSource.into()),
    };
    let mut state = initial_state(args, &access, &dst, segment_size).await?;
    dst_store
        .put_container(&dst.container)
        .await
        .map_err(|e| Error::Transfer(e.into()))?;
    let tmp = tempfile::Builder::new()
        .prefix("imgferry-spill-")
        .tempdir()
        .map_err(Error::WorkDir)?;
    let work_dir: PathBuf = args.work_dir.clone().unwrap_or_else(|| tmp.path().into());
    let state_path = args.state.clone();
    let mut persist = move |s: TransferState| -> futures::future::BoxFuture<
        'static,
        Result<(), transfer::PersistError>,
    > {
        let path = state_path.clone();
        Box::pin(async move {
            let Some(path) = path else { return Ok(()) };
            tokio::task::spawn_blocking(move || state_file::save(&path, &s))
                .await
                .map_err(|e| -> transfer::PersistError { Box::new(e) })?
                .map_err(|e| -> transfer::PersistError { Box::new(e) })
        })
    };
    let started = Instant::now();
    let dest = Endpoint {
        store: dst_store,
        container: dst.container,
        name: dst.object,
    };
    let opts = Options {
        concurrency,
        work_dir,
        integrity_retries: 3,
        budget: None,
    };
    let events: transfer::Events = Arc::new(move |e| sink(Event::Transfer { detail: e }));
    let outcome = transfer::run(access, dest, &mut state, opts, events, &mut persist)
        .await
        .map_err(|source| match &args.state {
            Some(p) => Error::Resumable(Box::new(Resumable {
                state: p.display().to_string(),
                error: source,
            })),
            None => Error::Transfer(source),
        })?;
    print_done(cfg.format, &outcome, started.elapsed().as_secs_f64());
    Ok(Outcome::Done)
}

/// The saved state when `--state` names an existing file for the same destination, else a new
/// plan from the source.
async fn initial_state(
    args: &TransferArgs,
    access: &SourceAccess,
    dst: &ObjectRef,
    segment_size: u64,
) -> Result<TransferState, Error> {
    if let Some(path) = &args.state
        && let Some(s) = state_file::load(path)?
    {
        let found = format!("{}/{}", s.dest_container, s.dest_name);
        if found != dst.to_string() {
            return Err(Error::StateMismatch {
                path: path.display().to_string(),
                found,
                wanted: dst.to_string(),
            });
        }
        return Ok(s);
    }
    let source = match access {
        SourceAccess::Store(store) => {
            let src = object(args.src.as_deref().unwrap_or_default())?;
            transfer::inspect(store, &src.container, &src.object, ListingPolicy::default())
                .await
                .map_err(transfer::Error::from)?
        }
        SourceAccess::File(file) => {
            transfer::source::local_file(file).map_err(transfer::Error::from)?
        }
    };
    Ok(
        TransferState::new(source, &dst.container, &dst.object, segment_size)
            .map_err(transfer::Error::from)?,
    )
}

fn print_done(format: Format, outcome: &transfer::Outcome, secs: f64) {
    let rate = outcome.bytes as f64 / secs.max(1e-9) / 1048576.0;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "event": "done", "bytes": outcome.bytes, "segments": outcome.segments,
                "seconds": secs, "mib_per_sec": rate, "sha256": outcome.sha256,
                "md5": outcome.md5, "manifest_etag": outcome.manifest_etag,
            })
        ),
        Format::Human => println!(
            "copied {} bytes in {} in {secs:.1} s ({rate:.0} MiB/s)\nsha256 {}\nmd5    {}",
            outcome.bytes,
            crate::units::count(outcome.segments, "segment"),
            outcome.sha256,
            outcome.md5
        ),
    }
}
