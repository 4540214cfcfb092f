//! `imgferry transfer` (hidden): one object copied by the transfer engine, outside a migration.
//! Benchmarks and tests drive the engine through it; its state file makes it resumable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::api::auth::Auth;
use crate::api::object_store::ObjectStore;
use crate::cli::{OutputFormat, TransferArgs};
use crate::exit_code;
use crate::http::{self, RetryConfig};
use crate::transfer::{self, Endpoint, Event, ListingPolicy, Options, SourceAccess, TransferState};

/// Why the command could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} must be CONTAINER/OBJECT")]
    Location(String),
    #[error(
        "{0} is not set: put the Cloud Files token in the environment (never on the command line)"
    )]
    Token(&'static str),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the state file {path} cannot be read")]
    StateRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is damaged; it was left untouched (move it away to start over)")]
    StateParse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
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
}

fn split(location: &str) -> Result<(String, String), Error> {
    location
        .split_once('/')
        .filter(|(c, o)| !c.is_empty() && !o.is_empty())
        .map(|(c, o)| (c.to_string(), o.to_string()))
        .ok_or_else(|| Error::Location(location.to_string()))
}

fn token(var: &'static str) -> Result<String, Error> {
    std::env::var(var).map_err(|_| Error::Token(var))
}

/// Writes `state` atomically with mode 0600, as the migration state store does: a crash leaves
/// either the old state or the new one, never half of one.
pub fn save_state(path: &Path, state: &TransferState) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    crate::migrate::store::write_atomic(dir, path, &json)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn load_state(path: &Path) -> Result<Option<TransferState>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::StateParse {
                path: path.display().to_string(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::StateRead {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Runs the copy and prints the outcome. Returns the exit code.
pub async fn run(args: &TransferArgs, output: OutputFormat) -> u8 {
    match copy(args, output).await {
        Ok(()) => exit_code::OK,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            if let Some(state) = &args.state {
                eprintln!(
                    "  the transfer state is saved in {}; run the same command again to resume",
                    state.display()
                );
            }
            match e {
                Error::Transfer(transfer::Error::Integrity { .. }) => exit_code::REJECTED,
                Error::Transfer(_) => exit_code::FAILED,
                _ => exit_code::USAGE,
            }
        }
    }
}

async fn copy(args: &TransferArgs, output: OutputFormat) -> Result<(), Error> {
    let client = http::client().map_err(Error::Client)?;
    let (dst_container, dst_name) = split(&args.dst)?;
    let retry = RetryConfig::default();
    let events: transfer::copy::Events = Arc::new(move |e: Event| report(output, &e));
    let hook_events = Arc::clone(&events);
    let hook: crate::api::object_store::RetryHook = Arc::new(move |attempt, delay, why| {
        hook_events(Event::Retry {
            what: "request".into(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            reason: why.into(),
        });
    });
    let dst_store = ObjectStore::new(
        client.clone(),
        &args.dst_url,
        Auth::fixed(&token("IMGFERRY_DST_TOKEN")?),
        retry.clone(),
    )
    .with_retry_hook(Arc::clone(&hook));
    let (access, fresh_source) = match (&args.src_url, &args.file) {
        (Some(url), _) => {
            let (c, o) = split(args.src.as_deref().unwrap_or_default())?;
            let store = ObjectStore::new(
                client.clone(),
                url,
                Auth::fixed(&token("IMGFERRY_SRC_TOKEN")?),
                retry,
            )
            .with_retry_hook(hook);
            (SourceAccess::Store(store.clone()), Some((store, c, o)))
        }
        (None, Some(file)) => (SourceAccess::File(file.clone()), None),
        (None, None) => return Err(Error::Location("--src or --file".into())),
    };
    let mut state = match args.state.as_deref().map(load_state).transpose()?.flatten() {
        Some(s) => {
            let wanted = format!("{dst_container}/{dst_name}");
            let found = format!("{}/{}", s.dest_container, s.dest_name);
            if found != wanted {
                return Err(Error::StateMismatch {
                    path: args
                        .state
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    found,
                    wanted,
                });
            }
            s
        }
        None => {
            let source = match &fresh_source {
                Some((store, c, o)) => transfer::inspect(store, c, o, ListingPolicy::default())
                    .await
                    .map_err(transfer::Error::from)?,
                None => transfer::source::local_file(args.file.as_deref().unwrap_or(Path::new("")))
                    .map_err(transfer::Error::from)?,
            };
            TransferState::new(source, &dst_container, &dst_name, args.segment_size)
                .map_err(transfer::Error::from)?
        }
    };
    dst_store
        .put_container(&dst_container)
        .await
        .map_err(transfer::Error::from)?;
    let tmp = match &args.work_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("imgferry-spill-")
                .tempdir()
                .map_err(Error::WorkDir)?,
        ),
    };
    let work_dir: PathBuf = args
        .work_dir
        .clone()
        .or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()))
        .unwrap_or_default();
    let state_path = args.state.clone();
    let mut persist = move |s: &TransferState| match &state_path {
        Some(p) => save_state(p, s),
        None => Ok(()),
    };
    let started = Instant::now();
    let dest = Endpoint {
        store: dst_store,
        container: dst_container,
        name: dst_name,
    };
    let opts = Options {
        concurrency: args.concurrency.max(1),
        work_dir,
        integrity_retries: 3,
    };
    let outcome = transfer::run(access, dest, &mut state, opts, events, &mut persist).await?;
    let secs = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "event": "done", "bytes": outcome.bytes, "segments": outcome.segments, "seconds": secs,
        "mib_per_sec": outcome.bytes as f64 / secs.max(1e-9) / 1048576.0,
        "sha256": outcome.sha256, "md5": outcome.md5, "manifest_etag": outcome.manifest_etag,
    });
    match output {
        OutputFormat::Json => println!("{line}"),
        OutputFormat::Human => println!(
            "copied {} bytes in {} segments in {secs:.1} s ({:.0} MiB/s)\nsha256 {}\nmd5    {}",
            outcome.bytes,
            outcome.segments,
            outcome.bytes as f64 / secs.max(1e-9) / 1048576.0,
            outcome.sha256,
            outcome.md5
        ),
    }
    Ok(())
}

fn report(output: OutputFormat, event: &Event) {
    match output {
        OutputFormat::Json => {
            if !matches!(event, Event::Progress { .. })
                && let Ok(line) = serde_json::to_string(event)
            {
                println!("{line}");
            }
        }
        OutputFormat::Human => match event {
            Event::Retry {
                what,
                attempt,
                reason,
                ..
            } => eprintln!("retrying {what} (attempt {attempt}): {reason}"),
            Event::Started {
                total,
                pieces,
                already_done,
                ..
            } => {
                eprintln!(
                    "transferring {total} bytes in {pieces} segments ({already_done} already uploaded)"
                )
            }
            _ => {}
        },
    }
}
