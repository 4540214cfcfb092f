//! The command-line surface, declared with clap's derive API. Doc comments here are the
//! `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::{parse_bytes, parse_secs, parse_size_with_unit};

/// `imgferry --version`: the version, the commit it was built from and the target (`-V` shows
/// the version alone).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("IMGFERRY_COMMIT"),
    "\ntarget: ",
    env!("IMGFERRY_TARGET")
);

/// The command line's definition, with the manual's EXAMPLES, ENVIRONMENT, FILES and EXIT
/// STATUS after each command's `--help` ([`crate::manual`]).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command().after_long_help(crate::manual::help_text(None));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let text = crate::manual::help_text(Some(&name));
        cmd = cmd.mut_subcommand(name, |s| s.after_long_help(text));
    }
    cmd
}

/// Parses the process's arguments against [`command`].
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let matches = command().try_get_matches()?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command()))
}

/// Move a server image from one Rackspace Cloud region to another, resumably and verified.
#[derive(Debug, Parser)]
#[command(name = "imgferry", version, long_version = LONG_VERSION, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: how it speaks, not what it does.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Output format: human-readable text, or one JSON object per line on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human, help_heading = GLOBAL)]
    pub output: OutputFormat,
    /// More log output on stderr: -v says where credentials and regions came from, -vv adds
    /// every request imgferry makes (method, URL, status, time), -vvv the HTTP libraries' own
    /// detail. RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Print only the result and errors: no progress, no warnings.
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,
    /// Also write a timestamped log to FILE (appended): each step, warning, retry and request,
    /// for runs nobody watches. Secrets never appear in it.
    #[arg(long, global = true, value_name = "FILE", env = "IMGFERRY_LOG_FILE", help_heading = GLOBAL)]
    pub log_file: Option<PathBuf>,
}

/// Heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Where migration state lives: for the commands that read or write it.
#[derive(Debug, Args, Clone, Default)]
pub struct StateOpts {
    /// Where migration state files live [default: $XDG_STATE_HOME/imgferry or
    /// ~/.local/state/imgferry].
    #[arg(long, env = "IMGFERRY_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How to log in: for the commands that reach a cloud.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Credentials")]
pub struct CredentialOpts {
    /// Identity v2.0 endpoint: a URL, or us for Rackspace's global endpoint
    /// (https://identity.api.rackspacecloud.com/v2.0, which serves US and UK accounts alike) or
    /// uk for the older UK one (https://lon.identity.api.rackspacecloud.com/v2.0) [default: us].
    #[arg(long, env = "RAX_IDENTITY_URL", value_name = "URL")]
    pub identity_url: Option<String>,
    /// Take credentials (and the default --from region) from this profile of the rack CLI
    /// (~/.rack/config); it wins over the environment [default: the environment, then the
    /// rack CLI's default profile].
    #[arg(long, value_name = "NAME", conflicts_with = "os_cloud")]
    pub profile: Option<String>,
    /// Take credentials (and the default --from region) from this cloud of an OpenStack
    /// clouds.yaml (found as openstacksdk finds it, secure.yaml merged in); it wins over the
    /// environment, where OS_CLOUD names a cloud with less weight than RAX_*/RS_*/OS_* variables.
    #[arg(long, value_name = "NAME")]
    pub os_cloud: Option<String>,
}

/// How patient to be with the network: for the commands that make requests.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Network")]
pub struct HttpOpts {
    /// How long to wait for a connection, or between bytes of an answer, before the request
    /// counts as timed out (and, when it is safe, is retried): 120, 2m, 90s.
    #[arg(
        long,
        env = "IMGFERRY_HTTP_TIMEOUT",
        value_name = "DURATION",
        default_value = "120s",
        value_parser = parse_secs
    )]
    pub http_timeout: f64,
    /// Times a failed request is tried again (when it is safe), with growing random delays.
    #[arg(long, env = "IMGFERRY_RETRIES", value_name = "N", default_value_t = 8)]
    pub retries: u32,
    /// The longest wait between retries, unless the service itself asks for longer (then the
    /// wait is the service's, within the step deadline).
    #[arg(
        long,
        env = "IMGFERRY_MAX_BACKOFF",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_secs
    )]
    pub max_backoff: f64,
}

impl Default for HttpOpts {
    fn default() -> Self {
        Self {
            http_timeout: 120.0,
            retries: 8,
            max_backoff: 30.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move an image to another region: image, export, transfer, import and optionally boot.
    Migrate(Box<MigrateArgs>),
    /// Continue an interrupted migration, or every unfinished member of a fleet.
    Resume(ResumeArgs),
    /// Show one migration in detail, a fleet's members, or tables of all known migrations and
    /// fleets.
    Status {
        /// A migration id (m-...) or fleet id (f-...); without it, everything known is listed.
        id: Option<String>,
        #[command(flatten)]
        state: StateOpts,
    },
    /// Drop a migration or fleet from the state directory (what it created in the cloud stays).
    Forget {
        /// The migration id (m-...) or fleet id (f-...).
        id: String,
        /// Forget it even though it is unfinished and holds resources in the cloud (they are
        /// listed; delete them yourself).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateOpts,
    },
    /// Drop finished migrations (and fleets whose members all finished) from the state directory.
    Clean {
        /// Only those finished longer ago than this (7d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
        older_than: Option<f64>,
        /// List what would be dropped, and drop nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        state: StateOpts,
    },
    /// Check VHD files and predict whether Cloud Images would import them, and with which code.
    Validate(ValidateArgs),
    /// Run a full migration against the embedded two-region simulated cloud.
    Demo(DemoArgs),
    /// Copy one object between Cloud Files accounts (or a local file into one) with the transfer
    /// engine: parallel verified segments, resumable with --state. Used by benchmarks and tests.
    #[command(hide = true)]
    Transfer(Box<TransferArgs>),
    /// Convert a dynamic VHD file to qcow2 with the streaming converter (one forward read, one
    /// forward write). Used by benchmarks and to check the converter by hand.
    #[command(hide = true)]
    Convert {
        /// The dynamic VHD to read.
        #[arg(value_name = "VHD")]
        vhd: PathBuf,
        /// The qcow2 file to write.
        #[arg(value_name = "QCOW2")]
        qcow2: PathBuf,
    },
    /// The simulated Rackspace cloud.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Print a shell completion script (e.g. imgferry completions bash >
    /// /etc/bash_completion.d/imgferry).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff), generated from the same definitions as --help: imgferry man
    /// > imgferry.1, imgferry man migrate, or every page with --dir.
    Man {
        /// The command whose page to print [default: the program's page].
        command: Option<String>,
        /// Write every page (imgferry.1, imgferry-migrate.1, ...) into this directory instead.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

// The arguments of `imgferry resume` (its help is the variant's doc).
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The migration id (m-...) or fleet id (f-...) printed when it started (see imgferry status).
    pub id: String,
    /// Time between status checks, overriding the saved plan's intervals (10s, 0.5).
    #[arg(long, env = "IMGFERRY_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_secs)]
    pub poll_interval: Option<f64>,
    /// Segments transferred in parallel from now on (fewer need less free disk).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Segment size for plain objects and local files, when the transfer has not started yet.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_with_unit)]
    pub segment_size: Option<u64>,
    /// Stop copying the source image's properties onto the imported image (for a migration
    /// whose restore the service keeps refusing); vm_mode is still set.
    #[arg(long)]
    pub no_restore_properties: bool,
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub credentials: CredentialOpts,
    #[command(flatten)]
    pub http: HttpOpts,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Source region (a catalog region code such as DFW; case-insensitive) [default: the
    /// profile's region].
    #[arg(long, value_name = "REGION", help_heading = "Source")]
    pub from: Option<String>,
    /// The source is an OpenStack cloud: NAME is a cloud of clouds.yaml (as for --to-cloud),
    /// --image names an image (id or name) or --server a server to image first, and --from picks
    /// the cloud's region [default: its region_name]. It goes to --to-cloud, --to-file or a
    /// legacy region (--to, made a VHD there), read by parallel ranges and checked against the
    /// image's own sha512 and md5.
    #[arg(long, value_name = "NAME", help_heading = "Source")]
    pub from_cloud: Option<String>,
    /// Destination region (such as IAD); with --to-cloud, the cloud's region [default: its
    /// region_name].
    #[arg(
        long,
        value_name = "REGION",
        required_unless_present_any = ["to_file", "to_cloud"],
        help_heading = "Destination"
    )]
    pub to: Option<String>,
    /// End at an image in an OpenStack cloud instead of a Rackspace region: NAME is a cloud of
    /// clouds.yaml, found where the openstack client finds it (OS_CLIENT_CONFIG_FILE names
    /// another file). The VHD is converted on the way (--disk-format) and streamed into Glance;
    /// no Rackspace credentials are needed for a --vhd.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["to_file", "to_identity_url", "servers_file", "all_servers"],
        help_heading = "Destination"
    )]
    pub to_cloud: Option<String>,
    /// What the image is stored as in an OpenStack cloud: auto is qcow2 from a dynamic VHD and
    /// raw from a fixed one.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = DiskFormat::Auto,
        requires = "to_cloud",
        help_heading = "Destination"
    )]
    pub disk_format: DiskFormat,
    /// How the data goes into the OpenStack cloud's Glance: direct is one PUT of the file;
    /// glance-direct stages it and imports it (for clouds that refuse direct uploads); auto
    /// uses direct and turns to glance-direct when the cloud refuses it and offers that.
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value_t = UploadMethod::Auto,
        requires = "to_cloud",
        help_heading = "Destination"
    )]
    pub upload_method: UploadMethod,
    /// Instead of importing into another region, end at a local VHD file: downloaded in verified,
    /// resumable segments, written sparse, validated, and renamed into place when done. An
    /// existing directory (or a path ending in /) gets DIR/<image name>.vhd.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["to", "boot", "vhd", "servers_file", "all_servers"],
        help_heading = "Destination"
    )]
    pub to_file: Option<PathBuf>,
    #[command(flatten)]
    pub source: MigrateSource,
    /// Name of the imported image [default: derived from the source].
    #[arg(long, help_heading = "Destination")]
    pub name: Option<String>,
    /// Boot a server of this flavor from the imported image (in an OpenStack cloud, the
    /// flavor's id or name).
    #[arg(long, value_name = "FLAVOR", help_heading = "Destination")]
    pub boot: Option<String>,
    /// With --boot into an OpenStack cloud: the network (id or name) the server is attached to,
    /// which a cloud with several networks requires.
    #[arg(
        long,
        value_name = "NETWORK",
        requires_all = ["boot", "to_cloud"],
        help_heading = "Destination"
    )]
    pub network: Option<String>,
    /// Cloud Files container for the export in the source region.
    #[arg(
        long,
        value_name = "CONTAINER",
        default_value = "imgferry-exports",
        help_heading = "Source"
    )]
    pub src_container: String,
    /// Cloud Files container for the upload in the destination region.
    #[arg(
        long,
        value_name = "CONTAINER",
        default_value = "imgferry-imports",
        help_heading = "Destination"
    )]
    pub dst_container: String,
    /// What to delete afterwards: nothing, the staging copies, or also what imgferry created.
    #[arg(long, value_enum, default_value_t = Cleanup::None, help_heading = "Safety")]
    pub cleanup: Cleanup,
    /// Segments transferred in parallel.
    #[arg(long, default_value_t = 4, value_name = "N", help_heading = "Transfer")]
    pub concurrency: usize,
    /// Segment size for plain objects and local files (at least 1 MiB).
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = parse_size_with_unit, help_heading = "Transfer")]
    pub segment_size: u64,
    /// Import even when validation predicts a rejection.
    #[arg(long, help_heading = "Safety")]
    pub force: bool,
    /// Print the plan and create nothing.
    #[arg(long, help_heading = "Safety")]
    pub dry_run: bool,
    /// Start a new migration even though an unfinished one of the same source and route exists
    /// (without it, imgferry refuses and names the one to resume).
    #[arg(long, help_heading = "Safety")]
    pub new: bool,
    /// Time between status checks of servers, images and tasks (a number is seconds: 0.5, 30s,
    /// 1m) [default: 10s for servers and images, 30s for tasks, as Rackspace asks]. Shorter
    /// intervals suit the simulator.
    #[arg(
        long,
        env = "IMGFERRY_POLL_INTERVAL",
        value_name = "DURATION",
        value_parser = parse_secs,
        help_heading = "Transfer"
    )]
    pub poll_interval: Option<f64>,
    /// Largest virtual size the destination imports, inclusive [default: 160GiB, Rackspace's
    /// limit]; for clouds with another limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_with_unit, help_heading = "Safety")]
    pub max_virtual_size: Option<u64>,
    /// Largest physical size (file length without the footer) the destination imports
    /// [default: 160GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_with_unit, help_heading = "Safety")]
    pub max_physical_size: Option<u64>,
    /// Do not copy the source image's properties (os_distro, org.openstack__1__*, your own keys)
    /// onto the imported image.
    #[arg(long, help_heading = "Destination")]
    pub no_restore_properties: bool,
    /// How XenServer starts the imported image when the source image does not say (or with
    /// --no-restore-properties, --vhd, --export): hvm for PVHVM guests (every current Linux and
    /// Windows image), xen for PV-only guests. Without vm_mode a guest fails to boot.
    /// [default: the source image's, else hvm]
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Destination")]
    pub vm_mode: Option<VmMode>,
    /// Wait for the export to finish before copying anything (by default each export segment is
    /// copied as soon as it is listed, and checked again when the export is done).
    #[arg(long, help_heading = "Transfer")]
    pub no_pipeline: bool,
    /// The destination is in another account: its identity endpoint (a URL, or us / uk), with
    /// RAX_DST_USERNAME and RAX_DST_API_KEY (or RAX_DST_PASSWORD); without them the source
    /// credentials log in there.
    #[arg(
        long,
        env = "RAX_DST_IDENTITY_URL",
        value_name = "URL",
        help_heading = "Destination"
    )]
    pub to_identity_url: Option<String>,
    /// Reach Cloud Files over ServiceNet (the catalog's internalURL) on these sides: no bandwidth
    /// charge, but it only works when imgferry runs on a server inside that region.
    #[arg(long, value_enum, default_value_t = ServiceNet::None, value_name = "SIDES", help_heading = "Transfer")]
    pub servicenet: ServiceNet,
    /// Give up waiting for any one step after this long (12h, 90m, 2d).
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = parse_secs, help_heading = "Transfer")]
    pub step_deadline: f64,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub credentials: CredentialOpts,
    #[command(flatten)]
    pub http: HttpOpts,
}

/// The disk format of an image stored in an OpenStack cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskFormat {
    Auto,
    Qcow2,
    Raw,
    Vhd,
}

/// How image data is sent to an OpenStack cloud's Glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UploadMethod {
    Auto,
    Direct,
    GlanceDirect,
}

/// XenServer's virtualisation mode for the imported image (Glance's `vm_mode` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VmMode {
    Hvm,
    Xen,
}

/// How a fleet (several servers) runs.
#[derive(Debug, Args)]
#[command(next_help_heading = "Fleet")]
pub struct FleetArgs {
    /// With --all-servers: only servers whose name matches this regular expression.
    #[arg(long = "match", value_name = "REGEX")]
    pub matching: Option<String>,
    /// Members of a fleet imaging and exporting at once. A member gives its place to the next as
    /// soon as its export is complete, and at most N more may be exported and not yet uploaded;
    /// --concurrency is the transfer connections of the whole fleet, handed to members as they
    /// need them (docs/fleets.md).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,
    /// Take only the K-th of N parts of the fleet (by a stable hash of each server id), to spread
    /// one fleet over N machines: docs/fleets.md.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
}

/// Where the image comes from: exactly one of these.
#[derive(Debug, Args)]
#[command(next_help_heading = "Source")]
#[group(required = true, multiple = false)]
pub struct MigrateSource {
    /// Image an existing server (the usual case), by id or name (with --from-cloud, a server of
    /// that cloud). Repeat it to move several servers as one fleet.
    #[arg(long, value_name = "ID|NAME")]
    pub server: Vec<String>,
    /// Move the servers listed in FILE (one id or name per line; # starts a comment) as one
    /// fleet.
    #[arg(long, value_name = "FILE")]
    pub servers_file: Option<PathBuf>,
    /// Move every server of the source region as one fleet (with --match, only those whose name
    /// matches). Servers imgferry itself created are never included.
    #[arg(long)]
    pub all_servers: bool,
    /// Start from an existing image in the source region (with --from-cloud, an image of that
    /// cloud, by id or name).
    #[arg(long, value_name = "ID")]
    pub image: Option<String>,
    /// Start from an already exported VHD in source Cloud Files.
    #[arg(long, value_name = "CONTAINER/OBJECT")]
    pub export: Option<String>,
    /// Upload and import a local VHD file (no source region needed).
    #[arg(long, value_name = "FILE")]
    pub vhd: Option<PathBuf>,
    /// Build a server from IMAGE with FLAVOR first, then image it.
    #[arg(long, value_name = "IMAGE:FLAVOR")]
    pub create_server: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Virtual size of the demo server's disk.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub disk_size: u64,
    /// Fraction of the disk's blocks that hold data.
    #[arg(long, default_value_t = 0.4, value_name = "FRACTION")]
    pub allocated: f64,
    /// How long each simulated build, imaging or task takes (3s, 0.5).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = parse_secs)]
    pub step_seconds: f64,
    #[command(flatten)]
    pub state: StateOpts,
    #[command(flatten)]
    pub http: HttpOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceNet {
    None,
    Source,
    Destination,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cleanup {
    None,
    Staging,
    All,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// VHD files to check.
    #[arg(value_name = "FILE", required_unless_present = "remote")]
    pub files: Vec<PathBuf>,
    /// Check an object in Cloud Files by ranged reads instead of local files.
    #[arg(long, num_args = 2, value_names = ["REGION", "CONTAINER/OBJECT"], conflicts_with = "files")]
    pub remote: Option<Vec<String>>,
    /// Largest accepted virtual size, inclusive (bytes, or with a unit: 160GiB, Rackspace's limit
    /// since 2019).
    #[arg(long, value_name = "SIZE", default_value = "160GiB", value_parser = parse_size_with_unit)]
    pub max_virtual_size: u64,
    /// Largest accepted physical size (file length without the footer), inclusive.
    #[arg(long, value_name = "SIZE", default_value = "160GiB", value_parser = parse_size_with_unit)]
    pub max_physical_size: u64,
    #[command(flatten)]
    pub credentials: CredentialOpts,
    #[command(flatten)]
    pub http: HttpOpts,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Source Cloud Files account URL (token in IMGFERRY_SRC_TOKEN).
    #[arg(long, value_name = "URL", requires = "src", conflicts_with = "file")]
    pub src_url: Option<String>,
    /// Source object.
    #[arg(long, value_name = "CONTAINER/OBJECT")]
    pub src: Option<String>,
    /// A local file as the source instead.
    #[arg(long, value_name = "FILE", required_unless_present = "src_url")]
    pub file: Option<PathBuf>,
    /// Destination Cloud Files account URL (token in IMGFERRY_DST_TOKEN).
    #[arg(long, value_name = "URL")]
    pub dst_url: String,
    /// Destination object (written as an SLO).
    #[arg(long, value_name = "CONTAINER/OBJECT")]
    pub dst: String,
    /// Segments in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Segment size for plain objects and local files, and the cap for source segments.
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub segment_size: u64,
    /// Transfer state file: resumed when it exists, written after every step.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Where spill files go [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpOpts,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Run the simulated cloud on loopback until Ctrl-C, printing its identity URL.
    Serve(SimServeArgs),
}

#[derive(Debug, Args)]
pub struct SimServeArgs {
    /// Address to listen on; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,
    /// Regions to serve, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "DFW,IAD",
        value_name = "REGIONS"
    )]
    pub regions: Vec<String>,
    /// Where object data lives [default: a temporary directory, removed on exit].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A fault plan to apply (JSON; see docs/simulator.md).
    #[arg(long, value_name = "FILE.json")]
    pub faults: Option<PathBuf>,
    /// Point a region's Cloud Files at an external Swift account URL (repeatable).
    #[arg(long, value_name = "REGION=URL")]
    pub object_store: Vec<String>,
    /// A server to create at start in the first region: NAME:VIRTUAL_SIZE:ALLOCATED_FRACTION
    /// (repeatable) [default: demo-web-1:1GiB:0.4].
    #[arg(long, value_name = "NAME:SIZE:FRACTION")]
    pub server: Vec<String>,
    /// Size of the DLO segments exports write.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub export_segment_size: u64,
    /// Seconds that builds, imaging and tasks take.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub step_seconds: f64,
    /// Bytes per second an export writes its segments at (each appears in the listing when it
    /// is complete; the manifest last) [default: all at once].
    #[arg(long, value_parser = parse_bytes, value_name = "SIZE")]
    pub export_rate: Option<u64>,
    /// A fault: exports write this segment (1-based) with a byte flipped first, and rewrite it
    /// correctly after the next one.
    #[arg(long, value_name = "N")]
    pub export_rewrite_segment: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
