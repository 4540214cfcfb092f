//! `imgferry migrate`, `imgferry resume` and `imgferry status`: the user-facing side of
//! [`crate::migrate`]. This module turns flags into a plan, authenticates, takes the lock, runs
//! the driver with a Ctrl-C handler, and prints the outcome with the right exit code.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::auth::Auth;
use crate::api::identity;
use crate::cli::{GlobalOpts, MigrateArgs, OutputFormat};
use crate::credentials::Credentials;
use crate::exit_code;
use crate::migrate::state::{Cleanup, Entry, Plan, Polling};
use crate::migrate::{self, Ctx, Error, Migration, RegionApi, Report, Step, Store};
use crate::progress::{Event, Reporter, size};

/// What a migration run needs besides its plan.
pub struct Runner {
    pub identity_url: String,
    /// The HTTP read timeout.
    pub http_timeout: std::time::Duration,
    pub creds: Credentials,
    pub store: Store,
    pub reporter: Arc<Reporter>,
    pub cancel: CancellationToken,
}

/// The end of a run: the saved migration and, on success, its report.
pub struct Finished {
    pub migration: Migration,
    pub result: Result<Report, Error>,
}

impl Runner {
    /// Authenticates and resolves the plan's regions.
    pub(crate) async fn connect(&self, plan: &Plan) -> Result<Ctx, Error> {
        let http = crate::http::client_with_timeout(self.http_timeout)
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let retry = crate::http::RetryConfig::default();
        identity::check_transport(&self.identity_url)?;
        let (auth, session) = Auth::login(&http, &self.identity_url, self.creds.clone(), &retry)
            .await
            .map_err(|e| match e {
                crate::api::Error::Unauthorized { .. } => Error::Auth(e),
                crate::api::Error::Service {
                    status: 400..=403, ..
                } => Error::Auth(e),
                other => Error::Api(other),
            })?;
        let src = match &plan.from {
            Some(r) if !matches!(plan.entry, Entry::Vhd { .. }) => Some(RegionApi::resolve(
                &http,
                &session,
                &auth,
                r,
                &self.reporter,
            )?),
            _ => None,
        };
        let dst = RegionApi::resolve(&http, &session, &auth, &plan.to, &self.reporter)?;
        Ok(Ctx {
            src,
            dst,
            store: self.store.clone(),
            reporter: Arc::clone(&self.reporter),
            cancel: self.cancel.clone(),
            admin_pass: Mutex::new(None),
            settle_secs: (2.0 * self.http_timeout.as_secs_f64()).max(2.0),
        })
    }

    /// Starts a new migration with `plan`.
    pub async fn start(&self, plan: Plan) -> Result<Finished, Error> {
        let ctx = self.connect(&plan).await?;
        let mut m = Migration::new(new_id(), self.identity_url.clone(), plan);
        let _lock = self.store.lock(&m.id)?;
        self.store.save(&m)?;
        Ok(self.run(&ctx, &mut m, false).await)
    }

    /// Continues migration `id`.
    pub async fn resume(&self, id: &str, poll: Option<f64>) -> Result<Finished, Error> {
        let _lock = self.store.lock(id)?;
        let mut m = self.store.load(id)?;
        if m.step == Step::Done {
            return Ok(Finished {
                result: Ok(Report::new(&m, None)),
                migration: m,
            });
        }
        if let Some(f) = &m.failure
            && !f.resumable
        {
            return Err(Error::Config(format!(
                "migration {id} stopped for good at {}: {}\n  (start a new migration once the cause is fixed)",
                f.at, f.error
            )));
        }
        if let Some(p) = poll {
            m.plan.polling.server_secs = p;
            m.plan.polling.task_secs = p;
        }
        let ctx = self.connect(&m.plan).await?;
        Ok(self.run(&ctx, &mut m, true).await)
    }

    async fn run(&self, ctx: &Ctx, m: &mut Migration, resumed: bool) -> Finished {
        self.reporter.emit(Event::Started {
            id: m.id.clone(),
            from: m.plan.from.clone(),
            to: m.plan.to.clone(),
            source: m.plan.entry.describe(),
            state_file: self.store.path(&m.id).display().to_string(),
            resumed,
        });
        let result = migrate::drive(ctx, m).await;
        let pass = ctx
            .admin_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Finished {
            result: result.map(|()| Report::new(m, pass)),
            migration: m.clone(),
        }
    }
}

/// A new migration id: `m-` and 10 hex digits from the process's random hasher seed and the clock.
pub fn new_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("m-{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// The state directory the flags name.
pub fn store(global: &GlobalOpts) -> Result<Store, Error> {
    let dir = global
        .state_dir
        .clone()
        .unwrap_or_else(migrate::store::default_dir);
    Ok(Store::open(&dir)?)
}

/// Turns `migrate` flags into a plan.
pub fn plan(args: &MigrateArgs) -> Result<Plan, Error> {
    let s = &args.source;
    let entry = if let Some(id) = &s.server {
        Entry::Server { id: id.clone() }
    } else if let Some(id) = &s.image {
        Entry::Image { id: id.clone() }
    } else if let Some(loc) = &s.export {
        let (container, object) = loc
            .split_once('/')
            .filter(|(c, o)| !c.is_empty() && !o.is_empty())
            .ok_or_else(|| Error::Config(format!("--export {loc}: expected CONTAINER/OBJECT")))?;
        Entry::Export {
            container: container.into(),
            object: object.into(),
        }
    } else if let Some(path) = &s.vhd {
        let abs = std::fs::canonicalize(path).map_err(|e| {
            Error::Config(format!("--vhd {}: cannot open it ({e})", path.display()))
        })?;
        Entry::Vhd {
            path: abs.display().to_string(),
        }
    } else if let Some(spec) = &s.create_server {
        let (image, flavor) = spec
            .split_once(':')
            .filter(|(i, f)| !i.is_empty() && !f.is_empty())
            .ok_or_else(|| {
                Error::Config(format!("--create-server {spec}: expected IMAGE:FLAVOR"))
            })?;
        Entry::CreateServer {
            image: image.into(),
            flavor: flavor.into(),
        }
    } else {
        return Err(Error::Config(
            "say where the image comes from: --server, --image, --export, --vhd or --create-server"
                .into(),
        ));
    };
    if !(1..=64).contains(&args.concurrency) {
        return Err(Error::Config(format!(
            "--concurrency {}: use 1 to 64",
            args.concurrency
        )));
    }
    if args.segment_size < 1 << 20 || args.segment_size > 5 << 30 {
        return Err(Error::Config(format!(
            "--segment-size {}: use 1 MiB to 5 GiB (Cloud Files' object limit)",
            args.segment_size
        )));
    }
    if args.src_container.contains(['/', '?', '.']) {
        return Err(Error::Config(format!(
            "--src-container {}: the export task refuses container names with '/', '?' or '.'",
            args.src_container
        )));
    }
    let from = match entry {
        Entry::Vhd { .. } => None,
        _ => args.from.as_deref().map(str::to_uppercase),
    };
    if from.is_none() && !matches!(entry, Entry::Vhd { .. }) {
        return Err(Error::Config("--from REGION is required".into()));
    }
    let mut polling = Polling {
        deadline_secs: args.step_deadline_hours * 3600.0,
        ..Polling::default()
    };
    if let Some(p) = args.poll_interval {
        polling.server_secs = p;
        polling.task_secs = p;
    }
    let name = args.name.clone().unwrap_or_else(|| match &entry {
        Entry::Vhd { path } => format!(
            "{} (imgferry)",
            Path::new(path)
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
        ),
        e => format!(
            "{} from {} (imgferry)",
            e.describe(),
            from.as_deref().unwrap_or("-")
        ),
    });
    Ok(Plan {
        from,
        to: args.to.to_uppercase(),
        entry,
        name,
        boot: args.boot.clone(),
        src_container: args.src_container.clone(),
        dst_container: args.dst_container.clone(),
        cleanup: match args.cleanup {
            crate::cli::Cleanup::None => Cleanup::None,
            crate::cli::Cleanup::Staging => Cleanup::Staging,
            crate::cli::Cleanup::All => Cleanup::All,
        },
        concurrency: args.concurrency,
        segment_size: args.segment_size,
        force: args.force,
        polling,
    })
}

/// Cancels `token` on Ctrl-C or SIGTERM, so the driver stops at its next safe point.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}

fn identity_url(global: &GlobalOpts, saved: Option<&str>) -> String {
    global
        .identity_url
        .clone()
        .or_else(|| saved.map(str::to_string))
        .unwrap_or_else(|| identity::DEFAULT_URL.to_string())
}

/// The HTTP read timeout the flags ask for, within sane bounds.
pub fn http_timeout(global: &GlobalOpts) -> std::time::Duration {
    std::time::Duration::from_secs_f64(global.http_timeout.clamp(0.1, 3600.0))
}

fn credentials() -> Result<Credentials, Error> {
    Credentials::from_env().map_err(|e| Error::Config(e.to_string()))
}

/// `imgferry migrate`.
pub async fn run_migrate(args: &MigrateArgs, global: &GlobalOpts) -> u8 {
    let reporter = Arc::new(Reporter::new(global.output));
    let outcome = async {
        let plan = plan(args)?;
        let store = store(global)?;
        let runner = Runner {
            identity_url: identity_url(global, None),
            http_timeout: http_timeout(global),
            creds: credentials()?,
            store,
            reporter: Arc::clone(&reporter),
            cancel: cancel_on_signals(),
        };
        if args.dry_run {
            return crate::commands::dry_run::run(&runner, &plan).await.map(Err);
        }
        runner.start(plan).await.map(Ok)
    }
    .await;
    finish_report(&reporter, global.output, outcome)
}

/// `imgferry resume ID`.
pub async fn run_resume(id: &str, poll: Option<f64>, global: &GlobalOpts) -> u8 {
    let reporter = Arc::new(Reporter::new(global.output));
    let outcome = async {
        let store = store(global)?;
        let saved = store.load(id)?;
        let runner = Runner {
            identity_url: identity_url(global, Some(&saved.identity_url)),
            http_timeout: http_timeout(global),
            creds: credentials()?,
            store,
            reporter: Arc::clone(&reporter),
            cancel: cancel_on_signals(),
        };
        runner.resume(id, poll).await.map(Ok)
    }
    .await;
    finish_report(&reporter, global.output, outcome)
}

/// Prints the outcome of a run; `Ok(Err(code))` is a finished dry run.
pub fn finish_report(
    reporter: &Reporter,
    output: OutputFormat,
    outcome: Result<Result<Finished, u8>, Error>,
) -> u8 {
    match outcome {
        Ok(Err(code)) => code,
        Ok(Ok(Finished {
            migration,
            result: Ok(report),
        })) => {
            if output == OutputFormat::Human {
                println!(
                    "Migration {} is done.\n{}",
                    migration.id,
                    report.render_human()
                );
            }
            reporter.emit(Event::Report {
                report: Box::new(report),
            });
            exit_code::OK
        }
        Ok(Ok(Finished {
            migration,
            result: Err(e),
        })) => report_error(reporter, output, &e, Some(&migration)),
        Err(e) => report_error(reporter, output, &e, None),
    }
}

fn report_error(reporter: &Reporter, output: OutputFormat, e: &Error, m: Option<&Migration>) -> u8 {
    let code = e.exit_code();
    let resume = m
        .filter(|_| e.resumable() && code != exit_code::USAGE)
        .map(|m| format!("imgferry resume {}", m.id));
    if output == OutputFormat::Human {
        let what = if matches!(e, Error::Interrupted) {
            "interrupted"
        } else {
            "error"
        };
        let text = if matches!(e, Error::Interrupted) {
            String::new()
        } else {
            format!(": {}", crate::error_chain(e))
        };
        eprintln!("{what}{text}");
        if let Some(m) = m {
            eprintln!(
                "  state saved at step {}; details: imgferry status {}",
                m.step, m.id
            );
        }
        if let Some(cmd) = &resume {
            eprintln!("  to continue: {cmd}");
        }
    }
    reporter.emit(Event::Error {
        message: crate::error_chain(e),
        exit_code: code,
        resume,
    });
    code
}

/// `imgferry status [ID]`.
pub fn run_status(id: Option<&str>, global: &GlobalOpts) -> u8 {
    let store = match store(global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            return e.exit_code();
        }
    };
    match id {
        Some(id) => match store.load(id) {
            Ok(m) => {
                show_one(&m, global.output);
                exit_code::OK
            }
            Err(e) => {
                eprintln!("error: {}", crate::error_chain(&e));
                Error::from(e).exit_code()
            }
        },
        None => {
            let (all, bad) = store.list();
            for e in &bad {
                eprintln!("warning: {}", crate::error_chain(e));
            }
            show_table(&all, store.dir(), global.output);
            exit_code::OK
        }
    }
}

/// "Done", "Transferring", "Failed at Importing (resumable)"…
fn state_label(m: &Migration) -> String {
    match &m.failure {
        Some(f) if f.exit_code == exit_code::INTERRUPTED => format!("Interrupted at {}", f.at),
        Some(f) if f.resumable => format!("Failed at {} (resumable)", f.at),
        Some(f) => format!("Failed at {}", f.at),
        None => m.step.to_string(),
    }
}

fn progress_label(m: &Migration) -> String {
    match m.progress() {
        Some((done, total)) => format!(
            "{}/{} ({}%)",
            size(done),
            size(total),
            done * 100 / total.max(1)
        ),
        None => "-".into(),
    }
}

fn age(m: &Migration) -> String {
    let secs = migrate::state::unix_now().saturating_sub(m.created);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn show_table(all: &[Migration], dir: &Path, output: OutputFormat) {
    if output == OutputFormat::Json {
        for m in all {
            let (done, total) = m.progress().unwrap_or((0, 0));
            println!(
                "{}",
                json!({"event": "migration", "id": m.id, "state": state_label(m), "step": m.step,
                       "from": m.plan.from, "to": m.plan.to, "source": m.plan.entry.describe(),
                       "bytes_done": done, "bytes_total": total, "created": m.created, "updated": m.updated})
            );
        }
        return;
    }
    if all.is_empty() {
        println!("no migrations in {}", dir.display());
        return;
    }
    println!(
        "{:<14} {:<32} {:<11} {:<26} {:>5}  SOURCE",
        "ID", "STATE", "ROUTE", "PROGRESS", "AGE"
    );
    for m in all {
        let route = format!("{}→{}", m.plan.from.as_deref().unwrap_or("file"), m.plan.to);
        println!(
            "{:<14} {:<32} {:<11} {:<26} {:>5}  {}",
            m.id,
            state_label(m),
            route,
            progress_label(m),
            age(m),
            m.plan.entry.describe()
        );
    }
}

fn show_one(m: &Migration, output: OutputFormat) {
    if output == OutputFormat::Json {
        println!(
            "{}",
            json!({"event": "migration", "state": state_label(m), "migration": m})
        );
        return;
    }
    println!("{}", Report::new(m, None).render_human());
    println!("  {:<18} {}", "state", state_label(m));
    println!("  {:<18} {}", "progress", progress_label(m));
    if let Some(f) = &m.failure {
        println!(
            "  {:<18} {}",
            "last error",
            f.error.replace('\n', "\n                     ")
        );
        if f.resumable {
            println!("  {:<18} imgferry resume {}", "to continue", m.id);
        }
    }
}
