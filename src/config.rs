//! Flags and environment → validated configuration, once, before anything runs (ripgrep's low-level
//! args → high-level args). Every range check lives here and uses the engine's own constants, so
//! a value the engine cannot honour (a non-finite interval, a segment larger than Cloud Files
//! takes) is refused with the flag's name before any state file or remote resource exists.
//!
//! The validated values then hand out what the engine needs: a [`Link`] (identity URL, HTTP
//! timeout, the run's one [`RetryConfig`]), the state [`Store`], and migration [`Plan`]s.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::identity;
use crate::cli::{
    self, CredentialOpts, GlobalOpts, HttpOpts, MigrateArgs, OutputFormat, StateOpts,
};
use crate::http::RetryConfig;
use crate::migrate::fleet::{Selection, Shard};
use crate::migrate::session::Link;
use crate::migrate::state::{
    Cleanup, CloudSide, DiskFormat, Entry, ObjectRef, Plan, ServiceNet, UploadMethod,
};
use crate::migrate::{Store, store};
use crate::progress::Format;
use crate::transfer::plan::{MAX_PIECE, MIN_SEGMENT};

/// The most segments in flight at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Bounds of `--http-timeout` in seconds.
pub const HTTP_TIMEOUT_SECS: (f64, f64) = (0.1, 3600.0);
/// Bounds of `--poll-interval` in seconds: 0 would poll in a busy loop.
pub const POLL_SECS: (f64, f64) = (0.01, 3600.0);
/// Bounds of `--step-deadline` in seconds: a step may wait up to 30 days.
pub const DEADLINE_SECS: (f64, f64) = (1.0, 720.0 * 3600.0);

/// Bounds of `--max-backoff` in seconds.
pub const MAX_BACKOFF_SECS: (f64, f64) = (0.2, 3600.0);

/// The most retries of one request.
pub const MAX_RETRIES: u32 = 20;

/// A flag or setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{flag} {value}: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Missing(&'static str),
    /// A saved migration or fleet moves into another account whose credentials are not set.
    #[error("{0}")]
    NoDestinationCredentials(String),
    #[error(transparent)]
    Profile(#[from] crate::profiles::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

fn flag(flag: &'static str, value: impl ToString, reason: impl ToString) -> Error {
    Error::Flag {
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A finite number within `[lo, hi]`, or an error naming the flag. NaN and infinities are refused
/// here: serialised into a state file they would become `null` and make it unreadable.
pub fn finite_in(name: &'static str, v: f64, (lo, hi): (f64, f64)) -> Result<f64, Error> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(flag(name, v, format!("use a number from {lo} to {hi}")))
    }
}

/// What every command shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub format: Format,
    /// `-q`: the result and errors only.
    pub quiet: bool,
    pub http_timeout: Duration,
    /// The one retry policy of the run (random jitter per request).
    pub retry: RetryConfig,
    /// `--state-dir` or `IMGFERRY_STATE_DIR`; `None` means the default ([`store::default_dir`]).
    pub state_dir: Option<PathBuf>,
    /// From `--identity-url` or `RAX_IDENTITY_URL`; `None` means the profile's, else the saved
    /// one, else the default.
    pub identity_url: Option<String>,
    /// `--profile` and `--os-cloud`: where credentials come from besides the environment.
    pub profile: Option<String>,
    pub os_cloud: Option<String>,
}

impl RunConfig {
    /// The settings of one run: the global options, and the state, credential and network
    /// options of the command when it takes them (defaults otherwise).
    pub fn new(
        g: &GlobalOpts,
        state: Option<&StateOpts>,
        credentials: Option<&CredentialOpts>,
        http: Option<&HttpOpts>,
    ) -> Result<Self, Error> {
        let default_http = HttpOpts::default();
        let http = http.unwrap_or(&default_http);
        let credentials = credentials.cloned().unwrap_or_default();
        let secs = finite_in("--http-timeout", http.http_timeout, HTTP_TIMEOUT_SECS)?;
        if http.retries > MAX_RETRIES {
            return Err(flag(
                "--retries",
                http.retries,
                format!("use 0 to {MAX_RETRIES}"),
            ));
        }
        Ok(Self {
            format: match g.output {
                OutputFormat::Human => Format::Human,
                OutputFormat::Json => Format::Json,
            },
            quiet: g.quiet,
            http_timeout: Duration::from_secs_f64(secs),
            retry: RetryConfig {
                max_retries: http.retries,
                max: Duration::from_secs_f64(finite_in(
                    "--max-backoff",
                    http.max_backoff,
                    MAX_BACKOFF_SECS,
                )?),
                ..RetryConfig::default()
            },
            state_dir: state.and_then(|s| s.state_dir.clone()),
            identity_url: credentials.identity_url.as_deref().map(named_identity),
            profile: credentials.profile,
            os_cloud: credentials.os_cloud,
        })
    }

    /// The destination account's credentials (`RAX_DST_*`), if they are set.
    pub fn destination_credentials(
        &self,
    ) -> Result<Option<crate::credentials::Credentials>, Error> {
        let env = |k: &str| std::env::var(k).ok();
        Ok(crate::profiles::destination(&env)?)
    }

    /// The credentials, from the environment and then the chosen profile
    /// ([`crate::profiles`]); the profile's identity endpoint is used unless a flag or the
    /// environment names one.
    pub fn credentials(&mut self) -> Result<crate::profiles::Found, Error> {
        let env = |k: &str| std::env::var(k).ok();
        let found = crate::profiles::resolve(&crate::profiles::Lookup {
            profile: self.profile.as_deref(),
            os_cloud: self.os_cloud.as_deref(),
            env: &env,
            home: std::env::var_os("HOME").map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_default(),
        })?;
        if self.identity_url.is_none() {
            self.identity_url = found.identity_url.as_deref().map(named_identity);
        }
        Ok(found)
    }

    /// Cloud `name` of `clouds.yaml` (`--to-cloud`), found as the openstack client finds it.
    pub fn cloud(&self, name: &str) -> Result<crate::clouds::Cloud, Error> {
        let env = |k: &str| std::env::var(k).ok();
        Ok(crate::clouds::resolve(
            &crate::profiles::Lookup {
                profile: None,
                os_cloud: None,
                env: &env,
                home: std::env::var_os("HOME").map(PathBuf::from),
                cwd: std::env::current_dir().unwrap_or_default(),
            },
            name,
        )?)
    }

    /// How to reach the cloud: the flag or environment wins, then `saved` (a resumed migration's
    /// own endpoint), then Rackspace's.
    pub fn link(&self, saved: Option<&str>) -> Link {
        Link {
            identity_url: self
                .identity_url
                .clone()
                .or_else(|| saved.map(str::to_string))
                .unwrap_or_else(|| identity::DEFAULT_URL.to_string()),
            http_timeout: self.http_timeout,
            retry: self.retry.clone(),
        }
    }

    pub fn store(&self) -> Result<Store, Error> {
        let dir = self.state_dir.clone().unwrap_or_else(store::default_dir);
        Ok(Store::open(&dir)?)
    }
}

/// `us` and `uk` name Rackspace's two identity endpoints; anything else is a URL.
pub fn named_identity(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "us" => identity::DEFAULT_URL.to_string(),
        "uk" | "lon" => crate::profiles::UK_IDENTITY_URL.to_string(),
        _ => v.to_string(),
    }
}

/// A validated `migrate` command line.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub plan: Plan,
    /// `--name`; without it the session names the image after its source.
    pub name: Option<String>,
    pub dry_run: bool,
    /// `--new`: start even when an unfinished migration of the same source and route exists.
    pub new: bool,
    /// `--to-identity-url`: the destination account's identity endpoint.
    pub to_identity_url: Option<String>,
    /// Several servers: the plan is each member's template (its entry is replaced per member).
    pub fleet: Option<FleetSpec>,
}

/// How a fleet is chosen and run.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub selection: Selection,
    pub parallel: usize,
    pub shard: Option<Shard>,
}

/// The most members of a fleet run at once.
pub const MAX_PARALLEL: usize = 64;

/// Checks `migrate`'s flags and builds the plan; `default_from` is the profile's region;
/// `other_account` says the destination is another account (its own credentials or identity
/// endpoint), where the source's own region is a valid destination.
pub fn migrate_request(
    args: &MigrateArgs,
    default_from: Option<&str>,
    other_account: bool,
) -> Result<MigrateRequest, Error> {
    if let (Some(m), false) = (&args.fleet.matching, args.source.all_servers) {
        // Checked here rather than by clap: `--all-servers` lives in another flattened group, which
        // clap's `requires` does not reach, so the filter was silently ignored.
        return Err(flag(
            "--match",
            m,
            "filters --all-servers only: add --all-servers, or name the servers with --server",
        ));
    }
    let fleet = fleet_spec(args)?;
    let entry = match &fleet {
        Some(_) => Entry::Server { id: String::new() },
        None => entry(&args.source)?,
    };
    cloud_routes(args, &entry, fleet.is_some())?;
    let from = match (&entry, &args.from_cloud) {
        // Named once the cloud is read (`aim_at_clouds`).
        (_, Some(cloud)) => Some(cloud.clone()),
        (Entry::Vhd { .. }, None) => None,
        _ => Some(
            args.from
                .as_deref()
                .or(default_from)
                .ok_or(Error::Missing(
                    "--from REGION is required (or a profile with a region)",
                ))?
                .to_uppercase(),
        ),
    };
    if let (Some(f), Some(_)) = (&from, &args.from) {
        tracing::info!("source region {f} from --from");
    }
    let to_file = args
        .to_file
        .as_deref()
        .map(|p| {
            crate::migrate::to_file::check_path(p).map_err(|(p, why)| flag("--to-file", p, why))
        })
        .transpose()?;
    let to = match &args.to_cloud {
        // Named once the cloud is read (`aim_at_cloud`).
        Some(cloud) => cloud.clone(),
        None => destination(args, to_file.is_some(), from.clone())?,
    };
    let mut plan = Plan::new(from, to, entry, String::new());
    cloud_sides(args, &mut plan);
    // The VHD is converted as it streams, forward, once: it is read when the export is whole.
    let pipeline = args.to_cloud.is_none() && !args.no_pipeline;
    // Images can be exported and imported between accounts of one region (support-how-to
    // `content/cloud-servers/cloud-server-image-limitations.md`); within one account there is
    // nothing to move.
    if to_file.is_none()
        && plan.to_cloud.is_none()
        && !other_account
        && plan.from.as_deref() == Some(plan.to.as_str())
    {
        return Err(flag(
            "--to",
            &plan.to,
            "is the same region as --from, in the same account; to move the image to another \
             account in this region, give that account's credentials (RAX_DST_USERNAME with \
             RAX_DST_API_KEY or RAX_DST_PASSWORD)",
        ));
    }
    plan.boot = args.boot.clone();
    plan.src_container = export_container(&args.src_container)?;
    plan.dst_container = swift_container("--dst-container", &args.dst_container)?;
    if let Some(flavor) = &args.boot {
        id("--boot", flavor)?;
    }
    plan.network = args
        .network
        .as_deref()
        .map(|n| id("--network", n))
        .transpose()?;
    plan.cleanup = match args.cleanup {
        cli::Cleanup::None => Cleanup::None,
        cli::Cleanup::Staging => Cleanup::Staging,
        cli::Cleanup::All => Cleanup::All,
    };
    plan.servicenet = match args.servicenet {
        cli::ServiceNet::None => ServiceNet::None,
        cli::ServiceNet::Source => ServiceNet::Source,
        cli::ServiceNet::Destination => ServiceNet::Destination,
        cli::ServiceNet::Both => ServiceNet::Both,
    };
    if plan.to_cloud.is_some() && plan.servicenet.destination() {
        return Err(flag(
            "--servicenet",
            "destination",
            "ServiceNet is Rackspace's legacy network; an OpenStack cloud is reached over its \
             catalog's interface (clouds.yaml `interface`)",
        ));
    }
    if plan.servicenet == ServiceNet::Both
        && to_file.is_none()
        && plan.from.as_deref() != Some(plan.to.as_str())
    {
        // ServiceNet reaches only the data center imgferry runs in; one machine is not inside
        // two (docs-cloud-files service access; the export and import tasks run server-side).
        return Err(flag(
            "--servicenet",
            "both",
            format!(
                "ServiceNet only works inside one data center, and {} and {} are two: use \
                 --servicenet source when imgferry runs in {}, or destination when it runs in {}",
                plan.from.as_deref().unwrap_or_default(),
                plan.to,
                plan.from.as_deref().unwrap_or_default(),
                plan.to
            ),
        ));
    }
    plan.restore_properties = !args.no_restore_properties;
    plan.vm_mode = args.vm_mode.map(|m| match m {
        cli::VmMode::Hvm => "hvm".to_string(),
        cli::VmMode::Xen => "xen".to_string(),
    });
    plan.pipeline = pipeline;
    if let Some(path) = to_file {
        if fleet.is_some() {
            return Err(flag(
                "--to-file",
                &path,
                "takes one server, image or export, not a fleet",
            ));
        }
        // The copy is the file itself; there is no second copy to pipeline the export into.
        plan.pipeline = false;
        plan.to_file = Some(path);
    }
    tuning(&mut plan, args)?;
    Ok(MigrateRequest {
        plan,
        name: args.name.clone(),
        dry_run: args.dry_run,
        new: args.new,
        to_identity_url: args.to_identity_url.as_deref().map(named_identity),
        fleet,
    })
}

/// The OpenStack routes this build supports: `--from-cloud` takes one `--image` or `--server`
/// (and goes to a cloud, a file or a legacy region).
fn cloud_routes(args: &MigrateArgs, entry: &Entry, fleet: bool) -> Result<(), Error> {
    if let Some(cloud) = &args.from_cloud
        && !matches!(entry, Entry::Image { .. } | Entry::Server { .. })
    {
        return Err(flag(
            "--from-cloud",
            cloud,
            "takes --image ID|NAME or --server ID|NAME, an image or a server of that cloud",
        ));
    }
    if let (Some(cloud), true) = (&args.from_cloud, fleet) {
        return Err(flag(
            "--from-cloud",
            cloud,
            "takes one --image at a time, not a fleet",
        ));
    }
    Ok(())
}

/// The plan's OpenStack sides as the flags name them (`--from-cloud`, `--to-cloud`,
/// `--disk-format`); their endpoints and users are filled in once `clouds.yaml` is read
/// ([`aim_at_clouds`]).
fn cloud_sides(args: &MigrateArgs, plan: &mut Plan) {
    plan.disk_format = match args.disk_format {
        cli::DiskFormat::Auto => DiskFormat::Auto,
        cli::DiskFormat::Qcow2 => DiskFormat::Qcow2,
        cli::DiskFormat::Raw => DiskFormat::Raw,
        cli::DiskFormat::Vhd => DiskFormat::Vhd,
    };
    plan.upload_method = match args.upload_method {
        cli::UploadMethod::Auto => UploadMethod::Auto,
        cli::UploadMethod::Direct => UploadMethod::Direct,
        cli::UploadMethod::GlanceDirect => UploadMethod::GlanceDirect,
    };
    // Filled in from clouds.yaml once the clouds are read (`aim_at_clouds`).
    let side = |cloud: &str, region: &Option<String>| CloudSide {
        cloud: cloud.to_string(),
        auth_url: String::new(),
        user: String::new(),
        region: region.clone(),
        interface: "public".into(),
    };
    plan.from_cloud = args.from_cloud.as_deref().map(|c| side(c, &args.from));
    if let Some(cloud) = &args.to_cloud {
        plan.to_cloud = Some(side(cloud, &args.to));
        // Rackspace's import limits are not an OpenStack cloud's (its image_size_cap is not
        // published: a 413 says it).
        plan.max_virtual_size = u64::MAX;
        plan.max_physical_size = u64::MAX;
    }
}

/// Fills one side of a plan from `cloud` as `clouds.yaml` describes it: its endpoint, user,
/// interface and (unless `--from`/`--to` named one) region.
fn aim(side: &mut CloudSide, cloud: &crate::clouds::Cloud) {
    side.auth_url = cloud.auth_url.clone();
    side.user = crate::clouds::user_of(&cloud.credentials);
    side.interface = cloud.interface.clone();
    if side.region.is_none() {
        side.region = cloud.region.clone();
    }
}

/// Points the plan's OpenStack sides at their clouds (`--from-cloud`, `--to-cloud`); `from` and
/// `to` become `CLOUD` or `CLOUD/REGION`.
pub fn aim_at_clouds(
    plan: &mut Plan,
    from: Option<&crate::clouds::Cloud>,
    to: Option<&crate::clouds::Cloud>,
) {
    if let (Some(side), Some(cloud)) = (plan.from_cloud.as_mut(), from) {
        aim(side, cloud);
        plan.from = Some(side.shown());
    }
    if let (Some(side), Some(cloud)) = (plan.to_cloud.as_mut(), to) {
        aim(side, cloud);
        plan.to = side.shown();
    }
    if plan.to_file.is_some()
        && let Some(side) = &plan.from_cloud
    {
        // A download's "destination" API is the source's, as for a legacy region.
        plan.to = side.shown();
    }
}

/// The flags that tune how the plan runs: connections, segment size, limits, deadlines, polling.
fn tuning(plan: &mut Plan, args: &MigrateArgs) -> Result<(), Error> {
    plan.concurrency = concurrency(args.concurrency)?;
    plan.segment_size = segment_size(args.segment_size)?;
    plan.force = args.force;
    if let Some(v) = args.max_virtual_size {
        plan.max_virtual_size = v;
    }
    if let Some(p) = args.max_physical_size {
        plan.max_physical_size = p;
    }
    plan.polling.deadline_secs = finite_in("--step-deadline", args.step_deadline, DEADLINE_SECS)?;
    if let Some(p) = poll_interval(args.poll_interval)? {
        plan.polling.server_secs = p;
        plan.polling.task_secs = p;
    }
    Ok(())
}

/// The destination region: `--to`, or for a `--to-file` download the source region (whose API
/// then stands where the destination's would).
fn destination(args: &MigrateArgs, to_file: bool, from: Option<String>) -> Result<String, Error> {
    match (&args.to, to_file, from) {
        (Some(to), false, _) => Ok(to.to_uppercase()),
        (None, true, Some(from)) => Ok(from),
        _ => Err(Error::Missing(
            "--to REGION is required (or --to-file PATH)",
        )),
    }
}

/// The fleet the flags describe: several `--server`s, `--servers-file` or `--all-servers`; `None`
/// for a single migration.
fn fleet_spec(args: &MigrateArgs) -> Result<Option<FleetSpec>, Error> {
    let s = &args.source;
    let shard = args.fleet.shard.as_deref().map(shard).transpose()?;
    let selection = if s.all_servers {
        let matching = args
            .fleet
            .matching
            .as_deref()
            .map(|r| regex::Regex::new(r).map_err(|e| flag("--match", r, e)))
            .transpose()?;
        Selection::All { matching }
    } else if let Some(path) = &s.servers_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            flag(
                "--servers-file",
                path.display(),
                format!("cannot read it ({e})"),
            )
        })?;
        let names = crate::migrate::fleet::select::parse_servers_file(&text);
        if names.is_empty() {
            return Err(flag("--servers-file", path.display(), "lists no server"));
        }
        for n in &names {
            id("--servers-file", n)?;
        }
        Selection::Named(names)
    } else if s.server.len() > 1 {
        for n in &s.server {
            id("--server", n)?;
        }
        Selection::Named(s.server.clone())
    } else {
        if shard.is_some() {
            return Err(flag(
                "--shard",
                args.fleet.shard.as_deref().unwrap_or_default(),
                "only a fleet is sharded (several --server, --servers-file or --all-servers)",
            ));
        }
        return Ok(None);
    };
    if let Some(name) = &args.name {
        return Err(flag(
            "--name",
            name,
            "a fleet names each image after its server; drop --name",
        ));
    }
    let parallel = args.fleet.parallel;
    if !(1..=MAX_PARALLEL).contains(&parallel) {
        return Err(flag(
            "--parallel",
            parallel,
            format!("use 1 to {MAX_PARALLEL}"),
        ));
    }
    Ok(Some(FleetSpec {
        selection,
        parallel,
        shard,
    }))
}

/// `--shard K/N`: 1 ≤ K ≤ N ≤ 10000.
fn shard(v: &str) -> Result<Shard, Error> {
    let parsed = v
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((index, count)) if (1..=10_000).contains(&count) && (1..=count).contains(&index) => {
            Ok(Shard { index, count })
        }
        _ => Err(flag(
            "--shard",
            v,
            "expected K/N with 1 <= K <= N <= 10000 (the K-th of N parts)",
        )),
    }
}

/// What `resume` may change in a saved plan.
pub fn resume_changes(
    poll: Option<f64>,
    concurrency: Option<usize>,
    segment: Option<u64>,
    no_restore_properties: bool,
) -> Result<crate::migrate::session::Changes, Error> {
    Ok(crate::migrate::session::Changes {
        poll_secs: poll_interval(poll)?,
        concurrency: concurrency.map(self::concurrency).transpose()?,
        segment_size: segment.map(segment_size).transpose()?,
        no_restore_properties,
    })
}

/// `--poll-interval`, when given.
pub fn poll_interval(v: Option<f64>) -> Result<Option<f64>, Error> {
    v.map(|p| finite_in("--poll-interval", p, POLL_SECS))
        .transpose()
}

/// `--concurrency`: 1 to [`MAX_CONCURRENCY`].
pub fn concurrency(n: usize) -> Result<usize, Error> {
    if (1..=MAX_CONCURRENCY).contains(&n) {
        Ok(n)
    } else {
        Err(flag(
            "--concurrency",
            n,
            format!("use 1 to {MAX_CONCURRENCY}"),
        ))
    }
}

/// `--segment-size`: the transfer engine's minimum to Cloud Files' object limit.
pub fn segment_size(bytes: u64) -> Result<u64, Error> {
    if (MIN_SEGMENT..=MAX_PIECE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(flag(
            "--segment-size",
            bytes,
            "use 1 MiB to 5 GiB (Cloud Files' object limit)",
        ))
    }
}

/// A container name Swift accepts: 1 to 256 bytes, no `/` (upstream Swift's
/// `MAX_CONTAINER_NAME_LENGTH` and path rules).
fn swift_container(name: &'static str, value: &str) -> Result<String, Error> {
    if value.is_empty() || value.len() > 256 || value.contains('/') {
        return Err(flag(
            name,
            value,
            "use 1 to 256 bytes without '/' (Swift's rule)",
        ));
    }
    Ok(value.to_string())
}

/// The export task's receiving container: Swift's rule, and no `?` or `.` either (Rackspace's
/// export task refuses those).
fn export_container(value: &str) -> Result<String, Error> {
    let value = swift_container("--src-container", value)?;
    if value.contains(['?', '.']) {
        return Err(flag(
            "--src-container",
            &value,
            "the export task refuses container names with '/', '?' or '.'",
        ));
    }
    Ok(value)
}

/// A server, image or flavor id as it goes into a URL path: not empty, no `/` (which would
/// address another resource), no control characters. Other characters are percent-encoded.
fn id(name: &'static str, value: &str) -> Result<String, Error> {
    if value.is_empty() || value.contains('/') || value.chars().any(char::is_control) {
        return Err(flag(name, value, "an id cannot be empty or contain '/'"));
    }
    Ok(value.to_string())
}

/// A local VHD: it must exist and be a regular file (a pipe or a device cannot be validated first
/// and read again for the upload).
fn vhd_file(path: &std::path::Path) -> Result<String, Error> {
    let shown = path.display();
    let abs = std::fs::canonicalize(path)
        .map_err(|e| flag("--vhd", &shown, format!("cannot open it ({e})")))?;
    let meta = std::fs::metadata(&abs)
        .map_err(|e| flag("--vhd", &shown, format!("cannot read it ({e})")))?;
    if !meta.is_file() {
        return Err(flag(
            "--vhd",
            &shown,
            "is not a regular file (a pipe or a device cannot be validated and then read again)",
        ));
    }
    Ok(abs.display().to_string())
}

fn entry(s: &cli::MigrateSource) -> Result<Entry, Error> {
    if let Some(server) = s.server.first() {
        Ok(Entry::Server {
            id: id("--server", server)?,
        })
    } else if let Some(image) = &s.image {
        Ok(Entry::Image {
            id: id("--image", image)?,
        })
    } else if let Some(loc) = &s.export {
        let ObjectRef { container, object } =
            loc.parse().map_err(|e: String| flag("--export", loc, e))?;
        Ok(Entry::Export { container, object })
    } else if let Some(path) = &s.vhd {
        Ok(Entry::Vhd {
            path: vhd_file(path)?,
        })
    } else if let Some(spec) = &s.create_server {
        let (image, flavor) = spec
            .split_once(':')
            .filter(|(i, f)| !i.is_empty() && !f.is_empty())
            .ok_or_else(|| flag("--create-server", spec, "expected IMAGE:FLAVOR"))?;
        Ok(Entry::CreateServer {
            image: id("--create-server", image)?,
            flavor: id("--create-server", flavor)?,
        })
    } else {
        Err(Error::Missing(
            "say where the image comes from: --server, --servers-file, --all-servers, --image, \
             --export, --vhd or --create-server",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0, 1e9] {
            assert!(
                finite_in("--poll-interval", bad, POLL_SECS).is_err(),
                "{bad}"
            );
        }
        assert_eq!(finite_in("--poll-interval", 0.5, POLL_SECS).unwrap(), 0.5);
        assert!(poll_interval(Some(f64::NAN)).is_err());
        assert_eq!(poll_interval(None).unwrap(), None);
    }

    #[test]
    fn us_and_uk_name_rackspaces_identity_endpoints() {
        assert_eq!(named_identity("uk"), crate::profiles::UK_IDENTITY_URL);
        assert_eq!(named_identity("US"), identity::DEFAULT_URL);
        assert_eq!(
            named_identity("http://127.0.0.1:5000/v2.0"),
            "http://127.0.0.1:5000/v2.0"
        );
    }

    #[test]
    fn shards_parse_strictly() {
        assert_eq!(shard("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["0/5", "6/5", "5", "a/b", "1/0", "1/10001", ""] {
            assert!(shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_counts_use_the_engine_limits() {
        assert!(segment_size(MIN_SEGMENT - 1).is_err());
        assert!(segment_size(MAX_PIECE + 1).is_err());
        assert_eq!(segment_size(MIN_SEGMENT).unwrap(), MIN_SEGMENT);
        assert!(concurrency(0).is_err());
        assert!(concurrency(MAX_CONCURRENCY + 1).is_err());
    }
}
