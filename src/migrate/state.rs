//! The persisted migration: its plan, the step it is at, and every fact learned so far.
//!
//! The step is an enum; the facts are one record of optional remote ids that only ever fill in.
//! Facts outlive the step that learned them because the final report names all of them (ids in
//! both regions, digests, sizes, per-step times) and task records expire 48 hours after they
//! finish, so anything a task said is copied here the moment it is seen (docs/state-machine.md).
//!
//! An [`Intent`] is written before every POST that creates something; its `id` stays `None` until
//! the answer is read. A resumed run that finds an intent without an id looks the resource up by its
//! deterministic name (or a task by its input) before it would POST again.
//!
//! Nothing secret is in here: no token, key, password or admin password.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::transfer::TransferState;

/// The state file format. Files with a larger number are refused, never rewritten.
pub const VERSION: u32 = 1;

/// The states of docs/state-machine.md, in order. Each names what is true on entering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Planned,
    ServerCreating,
    ServerActive,
    Imaging,
    ImageActive,
    Exporting,
    Exported,
    Inspected,
    Transferring,
    Uploaded,
    Importing,
    Imported,
    Booting,
    Booted,
    CleanedUp,
    Done,
}

impl Step {
    pub const ALL: [Step; 16] = [
        Step::Planned,
        Step::ServerCreating,
        Step::ServerActive,
        Step::Imaging,
        Step::ImageActive,
        Step::Exporting,
        Step::Exported,
        Step::Inspected,
        Step::Transferring,
        Step::Uploaded,
        Step::Importing,
        Step::Imported,
        Step::Booting,
        Step::Booted,
        Step::CleanedUp,
        Step::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Planned => "Planned",
            Step::ServerCreating => "ServerCreating",
            Step::ServerActive => "ServerActive",
            Step::Imaging => "Imaging",
            Step::ImageActive => "ImageActive",
            Step::Exporting => "Exporting",
            Step::Exported => "Exported",
            Step::Inspected => "Inspected",
            Step::Transferring => "Transferring",
            Step::Uploaded => "Uploaded",
            Step::Importing => "Importing",
            Step::Imported => "Imported",
            Step::Booting => "Booting",
            Step::Booted => "Booted",
            Step::CleanedUp => "CleanedUp",
            Step::Done => "Done",
        }
    }
}

impl Step {
    /// What the step does, in the words of the eight documented steps, for people; `to` is the
    /// destination region. Several states share a label: they are parts of one user-visible step.
    pub fn label(self, to: &str) -> String {
        match self {
            Step::Planned => "plan".into(),
            Step::ServerCreating | Step::ServerActive => "create the server".into(),
            Step::Imaging => "image the server".into(),
            Step::ImageActive | Step::Exporting => "export to Cloud Files".into(),
            Step::Exported => "check the VHD".into(),
            Step::Inspected | Step::Transferring => format!("copy to {to}"),
            Step::Uploaded | Step::Importing | Step::Imported => "import".into(),
            Step::Booting | Step::Booted => "boot".into(),
            Step::CleanedUp => "clean up".into(),
            Step::Done => "done".into(),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the image comes from (`--server`, `--image`, `--export`, `--vhd`, `--create-server`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Server { id: String },
    Image { id: String },
    Export { container: String, object: String },
    Vhd { path: String },
    CreateServer { image: String, flavor: String },
}

impl Entry {
    pub fn describe(&self) -> String {
        match self {
            Entry::Server { id } => format!("server {id}"),
            Entry::Image { id } => format!("image {id}"),
            Entry::Export { container, object } => format!("export {container}/{object}"),
            Entry::Vhd { path } => format!("local VHD {path}"),
            Entry::CreateServer { image, flavor } => {
                format!("a new server from image {image}, flavor {flavor}")
            }
        }
    }
}

/// What to delete at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cleanup {
    None,
    Staging,
    All,
}

/// How often and how long to wait for the services.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Polling {
    /// Between GETs of a building server or a saving image (Rackspace: 10 s).
    pub server_secs: f64,
    /// Between GETs of a task (Rackspace: no more often than every 30 s).
    pub task_secs: f64,
    /// Give up waiting for one step after this long.
    pub deadline_secs: f64,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            server_secs: 10.0,
            task_secs: 30.0,
            deadline_secs: 12.0 * 3600.0,
        }
    }
}

/// The default export container in the source region.
pub const DEFAULT_SRC_CONTAINER: &str = "imgferry-exports";
/// The default upload container in the destination region.
pub const DEFAULT_DST_CONTAINER: &str = "imgferry-imports";
/// Segments in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Segment size for plain objects and local files by default.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 << 20;

/// What the user asked for. Fixed when the migration is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Source region; `None` for a local VHD.
    pub from: Option<String>,
    pub to: String,
    pub entry: Entry,
    /// Name of the imported image.
    pub name: String,
    /// Flavor to boot in the destination, if any.
    pub boot: Option<String>,
    pub src_container: String,
    pub dst_container: String,
    pub cleanup: Cleanup,
    pub concurrency: usize,
    pub segment_size: u64,
    pub force: bool,
    pub polling: Polling,
    /// The import limits the pre-flight checks against (files from before they were recorded
    /// read as Rackspace's 160 GiB).
    #[serde(default = "import_limit")]
    pub max_virtual_size: u64,
    #[serde(default = "import_limit")]
    pub max_physical_size: u64,
    /// Which sides reach Cloud Files over ServiceNet (`internalURL`).
    #[serde(default)]
    pub servicenet: ServiceNet,
    /// Copy the source image's properties onto the imported one (off: `--no-restore-properties`).
    #[serde(default = "yes")]
    pub restore_properties: bool,
    /// `--vm-mode`: the imported image's `vm_mode` when the source image gives none (`None`:
    /// `hvm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_mode: Option<String>,
    /// Copy export segments while the export is still writing them (off: `--no-pipeline`).
    #[serde(default = "yes")]
    pub pipeline: bool,
    /// `--to-file`: the migration ends at this local VHD file (absolute) instead of an import;
    /// `to` is then the source region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_file: Option<String>,
    /// `--to-cloud`: the migration ends at an image in an OpenStack cloud's Glance instead of an
    /// import into a legacy region; `to` then names the cloud (and region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_cloud: Option<CloudSide>,
    /// `--from-cloud`: the source is an image in an OpenStack cloud's Glance (`entry` is
    /// `Image`); `from` then names the cloud (and region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cloud: Option<CloudSide>,
    /// `--disk-format`: what the image is stored as in an OpenStack cloud.
    #[serde(default = "auto_format")]
    pub disk_format: DiskFormat,
    /// `--upload-method`: how the data goes into an OpenStack cloud's Glance.
    #[serde(default)]
    pub upload_method: UploadMethod,
    /// `--network`: the network (id or name) a server booted in an OpenStack cloud is attached
    /// to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// How image data is sent to Glance (`--upload-method`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadMethod {
    /// Direct, and glance-direct when the cloud refuses direct uploads and offers it.
    #[default]
    Auto,
    /// `PUT /v2/images/{id}/file`.
    Direct,
    /// Stage, then import (the interoperable import's `glance-direct`).
    GlanceDirect,
}

fn auto_format() -> DiskFormat {
    DiskFormat::Auto
}

/// An OpenStack cloud of `clouds.yaml` as one side of a migration. Nothing secret: a resume reads
/// the credentials from `clouds.yaml` again, and refuses when the endpoint or the user changed
/// (the ids recorded here would be looked up in another project).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudSide {
    /// Its name in `clouds.yaml`.
    pub cloud: String,
    /// Keystone's v3 root.
    pub auth_url: String,
    /// Who logs in: the user name, or the application credential's id.
    pub user: String,
    /// The region whose image service is used (`None`: the catalog's only one).
    pub region: Option<String>,
    /// The catalog interface: `public`, `internal` or `admin`.
    pub interface: String,
}

impl CloudSide {
    /// `CLOUD/REGION`, or `CLOUD` when the catalog's only region is used.
    pub fn shown(&self) -> String {
        match &self.region {
            Some(r) => format!("{}/{r}", self.cloud),
            None => self.cloud.clone(),
        }
    }
}

/// What the image is stored as in Glance (`--disk-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    /// qcow2 from a dynamic VHD, raw from a fixed one.
    Auto,
    Qcow2,
    Raw,
    Vhd,
}

impl DiskFormat {
    /// The format Glance calls `name`, when it is one imgferry writes.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qcow2" => Some(DiskFormat::Qcow2),
            "raw" => Some(DiskFormat::Raw),
            "vhd" => Some(DiskFormat::Vhd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Auto => "auto",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
            DiskFormat::Vhd => "vhd",
        }
    }
}

fn yes() -> bool {
    true
}

/// Which regions' Cloud Files is reached over ServiceNet: free of bandwidth charges, but only from
/// a machine inside that region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceNet {
    #[default]
    None,
    Source,
    Destination,
    Both,
}

impl ServiceNet {
    pub fn source(self) -> bool {
        matches!(self, ServiceNet::Source | ServiceNet::Both)
    }

    pub fn destination(self) -> bool {
        matches!(self, ServiceNet::Destination | ServiceNet::Both)
    }
}

fn import_limit() -> u64 {
    crate::vhd::IMPORT_LIMIT
}

impl Plan {
    /// The validation policy of this plan.
    pub fn policy(&self) -> crate::vhd::Policy {
        crate::vhd::Policy {
            max_virtual_size: self.max_virtual_size,
            max_physical_size: self.max_physical_size,
            ..crate::vhd::Policy::default()
        }
    }
}

impl Plan {
    /// A plan with the documented defaults: the `imgferry-exports` and `imgferry-imports`
    /// containers, [`DEFAULT_CONCURRENCY`] segments at a time of [`DEFAULT_SEGMENT_SIZE`], no boot,
    /// no cleanup, Rackspace's polling intervals. `name` is the imported image's name.
    pub fn new(from: Option<String>, to: String, entry: Entry, name: String) -> Self {
        Self {
            from,
            to,
            entry,
            name,
            boot: None,
            src_container: DEFAULT_SRC_CONTAINER.into(),
            dst_container: DEFAULT_DST_CONTAINER.into(),
            cleanup: Cleanup::None,
            concurrency: DEFAULT_CONCURRENCY,
            segment_size: DEFAULT_SEGMENT_SIZE,
            force: false,
            polling: Polling::default(),
            max_virtual_size: crate::vhd::IMPORT_LIMIT,
            max_physical_size: crate::vhd::IMPORT_LIMIT,
            servicenet: ServiceNet::None,
            restore_properties: true,
            vm_mode: None,
            pipeline: true,
            to_file: None,
            to_cloud: None,
            from_cloud: None,
            disk_format: DiskFormat::Auto,
            upload_method: UploadMethod::Auto,
            network: None,
        }
    }
}

/// A resource about to be created, by deterministic name; `id` once the service has answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub name: String,
    pub id: Option<String>,
}

/// A task about to be created, identified by its input; `id` once the service has answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskIntent {
    pub input: Value,
    pub id: Option<String>,
}

/// `container/object` in Cloud Files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub container: String,
    pub object: String,
}

impl std::str::FromStr for ObjectRef {
    type Err = String;

    /// `CONTAINER/OBJECT`: split at the first `/`; both parts must be non-empty (the object name
    /// may itself contain `/`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_once('/')
            .filter(|(c, o)| !c.is_empty() && !o.is_empty())
            .map(|(c, o)| Self {
                container: c.into(),
                object: o.into(),
            })
            .ok_or_else(|| format!("{s}: expected CONTAINER/OBJECT"))
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container, self.object)
    }
}

/// What validation learned about the VHD (from the remote pre-flight or the local file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhdFacts {
    pub disk_type: Option<String>,
    pub virtual_size: Option<u64>,
    pub physical_size: Option<u64>,
    pub file_size: u64,
    /// The predicted import code; `None` means "would be accepted".
    pub predicted_code: Option<u16>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Everything learned so far. Fields only go from `None` to `Some`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The server imaged (given, or created by imgferry).
    pub source_server: Option<String>,
    /// A server imgferry creates (`--create-server`).
    pub created_server: Option<Intent>,
    /// The snapshot imgferry creates.
    pub snapshot: Option<Intent>,
    /// The image exported (given, or the snapshot).
    pub source_image: Option<String>,
    pub export_task: Option<TaskIntent>,
    /// The exported VHD in the source region.
    pub export: Option<ObjectRef>,
    /// Whether imgferry exported it (and so may delete it in cleanup).
    pub exported_by_us: bool,
    pub vhd: Option<VhdFacts>,
    /// A local VHD as it was when validated; it must not change until it is uploaded.
    #[serde(default)]
    pub local_file: Option<FileStamp>,
    pub transfer: Option<TransferState>,
    /// Whether `transfer` was started while the export was still writing (pipelined): it is then
    /// reconciled with the finished export before it is trusted.
    #[serde(default)]
    pub pipelined: bool,
    /// The uploaded object in the destination region.
    pub upload: Option<ObjectRef>,
    pub import_task: Option<TaskIntent>,
    pub imported_image: Option<String>,
    /// The code the import service actually reported, if it refused.
    pub import_code: Option<u16>,
    pub boot_server: Option<Intent>,
    pub boot_addresses: Vec<String>,
    /// What cleanup deleted.
    pub cleaned: Vec<String>,
    /// Properties copied onto the imported image (or found already there).
    #[serde(default)]
    pub restored_properties: Vec<String>,
    /// Properties the image service refused to set.
    #[serde(default)]
    pub refused_properties: Vec<String>,
    /// The imported image's `vm_mode` and where it came from ("the source image", "--vm-mode",
    /// "the default"), once it is known to be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_mode: Option<(String, String)>,
    /// `--to-cloud`: the Glance image imgferry creates, found again by its `imgferry_migration`
    /// property (the intent's name is the migration id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glance_image: Option<Intent>,
    /// `--to-cloud`: the way the data goes into Glance, once chosen (`Direct` or
    /// `GlanceDirect`); a resume keeps to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glance_method: Option<UploadMethod>,
    /// `--to-cloud`: what was uploaded, once Glance's own digests matched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glance_upload: Option<GlanceUpload>,
    /// `--from-cloud`: the source image as its Glance described it when the migration began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cloud_image: Option<CloudImage>,
    /// `--from-cloud` with `--to-file` or into a legacy region: bytes of the download written
    /// and synced to its `.part` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<u64>,
    /// `--from-cloud` into a legacy region: the VHD staged on local disk for the upload, once
    /// it is complete ([`crate::migrate::staging`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_vhd: Option<String>,
    /// Source properties not carried across (Xen- and Rackspace-only ones going to a KVM cloud,
    /// KVM-only ones going to a legacy region).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_properties: Vec<String>,
}

/// An image of an OpenStack cloud as the source: what its bytes must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudImage {
    pub id: String,
    pub name: String,
    pub disk_format: String,
    pub size: u64,
    /// Glance's `os_hash_value` when `os_hash_algo` is sha512.
    pub sha512: Option<String>,
    /// Glance's `checksum` (md5).
    pub md5: Option<String>,
}

/// An upload Glance stored: the format declared, and the digests both sides agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlanceUpload {
    pub disk_format: String,
    pub bytes: u64,
    pub sha512: String,
    pub md5: String,
}

/// What identifies one version of a local file: a rewrite changes the modification time (and a
/// replacement the inode) even when the size stays the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of `path` now.
    pub fn of(path: &std::path::Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            size: meta.len(),
            mtime_ns,
            inode,
        })
    }
}

/// Why a migration stopped for good or for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub at: Step,
    pub error: String,
    /// Whether `imgferry resume` can continue it.
    pub resumable: bool,
    pub exit_code: u8,
}

/// Time spent in one step (summed over runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: Step,
    pub seconds: f64,
}

/// The whole persisted record of one migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    pub version: u32,
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub updated: u64,
    /// The identity endpoint it authenticates against (not a secret; credentials are not kept).
    pub identity_url: String,
    /// Who started it (user name and tenant, never a secret): a resume must log in as the same
    /// user, or the ids in this file would be looked up in another account.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// The destination account's identity endpoint and user, when it is another account.
    #[serde(default)]
    pub dst_identity_url: Option<String>,
    #[serde(default)]
    pub dst_username: Option<String>,
    pub plan: Plan,
    pub step: Step,
    pub facts: Facts,
    pub failure: Option<Failure>,
    pub timings: Vec<StepTime>,
}

impl Migration {
    pub fn new(id: String, identity_url: String, plan: Plan) -> Self {
        let now = unix_now();
        Self {
            version: VERSION,
            id,
            created: now,
            updated: now,
            identity_url,
            username: None,
            tenant: None,
            dst_identity_url: None,
            dst_username: None,
            plan,
            step: Step::Planned,
            facts: Facts::default(),
            failure: None,
            timings: Vec::new(),
        }
    }

    /// Adds `seconds` to the time spent in `step`.
    pub fn add_time(&mut self, step: Step, seconds: f64) {
        match self.timings.iter_mut().find(|t| t.step == step) {
            Some(t) => t.seconds += seconds,
            None => self.timings.push(StepTime { step, seconds }),
        }
    }

    /// Deterministic names, all carrying the migration id so a lookup can never match a resource
    /// imgferry did not create for this migration.
    pub fn snapshot_name(&self) -> String {
        format!("imgferry-{}-snapshot", self.id)
    }

    pub fn created_server_name(&self) -> String {
        format!("imgferry-{}-source", self.id)
    }

    pub fn boot_server_name(&self) -> String {
        format!("imgferry-{}-boot", self.id)
    }

    pub fn upload_object(&self) -> String {
        format!("imgferry-{}.vhd", self.id)
    }

    /// Whether [`Migration::progress`]'s total is the image's size: not while a pipelined export
    /// is still writing (the total is then only what it has listed so far).
    pub fn total_known(&self) -> bool {
        !(self.facts.pipelined && self.step < Step::Exported)
    }

    /// Transfer progress as (uploaded bytes, total bytes), once a transfer is planned. An upload
    /// into Glance has none until it is done (a cut one is sent again whole, so a part of it is
    /// not progress); a download of an OpenStack image counts what is synced to its file.
    pub fn progress(&self) -> Option<(u64, u64)> {
        if let Some(g) = &self.facts.glance_upload {
            return Some((g.bytes, g.bytes));
        }
        if self.plan.to_cloud.is_some() {
            return None;
        }
        if let Some(image) = self
            .facts
            .source_cloud_image
            .as_ref()
            .filter(|_| self.facts.transfer.is_none())
        {
            return Some((self.facts.downloaded.unwrap_or(0), image.size));
        }
        self.facts
            .transfer
            .as_ref()
            .map(|t| (t.uploaded_bytes(), t.source.len))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_in_design_order_and_round_trip() {
        let mut sorted = Step::ALL;
        sorted.sort();
        assert_eq!(sorted, Step::ALL);
        for s in Step::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Step>(&json).unwrap(), s);
        }
    }

    #[test]
    fn names_carry_the_migration_id() {
        let m = Migration::new(
            "m-abc".into(),
            "https://id".into(),
            Plan {
                from: Some("DFW".into()),
                to: "IAD".into(),
                entry: Entry::Server { id: "s".into() },
                name: "n".into(),
                boot: None,
                src_container: "a".into(),
                dst_container: "b".into(),
                cleanup: Cleanup::None,
                concurrency: 4,
                segment_size: 1 << 27,
                force: false,
                polling: Polling::default(),
                max_virtual_size: crate::vhd::IMPORT_LIMIT,
                max_physical_size: crate::vhd::IMPORT_LIMIT,
                servicenet: Default::default(),
                restore_properties: true,
                vm_mode: None,
                pipeline: true,
                to_file: None,
                to_cloud: None,
                from_cloud: None,
                disk_format: DiskFormat::Auto,
                upload_method: UploadMethod::Auto,
                network: None,
            },
        );
        for n in [
            m.snapshot_name(),
            m.created_server_name(),
            m.boot_server_name(),
            m.upload_object(),
        ] {
            assert!(n.contains("m-abc"), "{n}");
        }
    }
}
