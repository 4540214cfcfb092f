//! The simulated Rackspace cloud: one axum server on loopback serving two or more regions, used by
//! `imgferry demo`, `imgferry sim serve` and the tests (docs/simulator.md).
//!
//! # Layout
//! - [`identity`]: `POST /identity/v2.0/tokens`, the catalog, token expiry.
//! - [`compute`]: Cloud Servers (servers, createImage).
//! - [`images`]: Cloud Images (images, export and import tasks).
//! - [`object_store`]: Cloud Files, objects in files under the data directory.
//! - [`files_backend`]: how the image service reaches Cloud Files (own store or external Swift).
//! - [`cloud`]: servers, images, tasks and timing; [`disk`]: generated and imported VHDs.
//! - [`faults`]: fault rules; [`stats`]: counters.
//!
//! URL layout, with the region in lower case:
//! `/identity/v2.0/tokens`, `/<region>/servers/v2/<tenant>/…`, `/<region>/images/v2/…`,
//! `/<region>/v1/MossoCloudFS_<tenant>/…`, plus `GET /info` (Swift capabilities, which
//! python-swiftclient reads) and `GET /_sim/stats`. Production code never knows it is talking to the
//! simulator: it only sees the URLs in the catalog.

pub mod cloud;
pub mod compute;
pub mod disk;
pub mod export;
pub mod faults;
pub mod files_backend;
pub mod identity;
pub mod images;
pub mod object_store;
pub mod openstack;
pub mod openstack_compute;
pub mod stats;

mod middleware;
mod router;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::ListenerExt;
use md5::{Digest, Md5};

pub use cloud::Timing;
pub use disk::{Disk, DiskSpec};
pub use faults::{Action, Plan, Rule, Service};
pub use identity::Account;
pub use stats::{Snapshot, Stats};

/// The tenant id the simulated account uses; Cloud Files prefixes it with `MossoCloudFS_`.
pub const TENANT: &str = "100100";

/// A server that exists when the simulator starts.
#[derive(Debug, Clone)]
pub struct SeedServer {
    pub region: String,
    pub name: String,
    pub disk: DiskSpec,
    /// Flavor, boot source and the base image's ownership and license.
    pub variant: Variant,
}

/// How a seeded server differs from an ordinary one (a `general1-2` built from an image the
/// account may export).
#[derive(Debug, Clone, Default)]
pub struct Variant {
    /// The flavor id [default: general1-2].
    pub flavor: Option<String>,
    /// Boots from a volume: its JSON shows an empty image, and a snapshot of it has no disk.
    pub boot_from_volume: bool,
    /// The base image's `com.rackspace__1__options` [default: "0", exportable].
    pub image_options: Option<String>,
    /// The base image's owner [default: the account's tenant].
    pub image_owner: Option<String>,
    /// Properties of the base image set (`Some`) or removed (`None`) on top of the defaults of
    /// [`base_properties`]: `os_type`, `vm_mode`, `flavor_classes`, ….
    pub image_properties: Vec<(String, Option<String>)>,
    /// The base image's `min_disk` in GB [default: 0].
    pub image_min_disk: u64,
}

/// How to run the simulated cloud.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Region codes (`DFW`, `IAD`), case-insensitive.
    pub regions: Vec<String>,
    /// Where object data lives; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    pub account: Account,
    pub timing: Timing,
    /// The Cloud Files single-object limit.
    pub max_object_size: u64,
    /// Size of the DLO segments an export writes.
    pub export_segment_size: u64,
    /// How an export writes its segments: at what rate, and whether one is rewritten.
    pub export: ExportShape,
    /// Regions whose Cloud Files is an external Swift account URL.
    pub object_stores: BTreeMap<String, String>,
    /// Servers that exist at start (each also gets a base image it was "built" from).
    pub servers: Vec<SeedServer>,
    pub faults: Plan,
    /// A second account (a UK account, say) with its own identity endpoint, tenant, catalog and
    /// Cloud Files account, and regions only it can see.
    pub second: Option<SecondAccount>,
    /// The catalog's ServiceNet (internalURL) hosts cannot be reached: as from a machine outside
    /// the data center. They point at a closed loopback port.
    pub servicenet_unreachable: bool,
    /// The OpenStack side's Glance `image_size_cap` (default 1 TiB, Glance's own default).
    pub glance_size_cap: u64,
    /// The OpenStack side's Glance refuses `PUT /v2/images/{id}/file` with 403, as a cloud whose
    /// policy denies `upload_image` does; `glance-direct` still works.
    pub glance_refuse_direct_upload: bool,
    /// A fault: the OpenStack side's first N `glance-direct` imports fail, leaving the image
    /// `importing` with `os_glance_failed_import` set, as real Glance does with data that is not
    /// its declared format.
    pub glance_fail_imports: usize,
}

/// How an export writes its segments.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportShape {
    /// Bytes per second the export writes at: each segment appears once its share of the time has
    /// passed. `None`: every segment at once.
    pub rate: Option<u64>,
    /// A fault: this segment (1-based) is first written with a byte flipped, and rewritten
    /// correctly after the next one (or before the manifest if it is the last).
    pub rewrite_segment: Option<usize>,
    /// No source says the export writes its manifest last or its segments in order
    /// (docs/real-cloud.md): with these, the manifest is written before any segment, and the
    /// segments last to first.
    pub manifest_first: bool,
    pub reverse_order: bool,
}

/// A second account of the simulated cloud: it authenticates at `/identity-uk/v2.0`, its tenant
/// is [`SECOND_TENANT`], and its catalog lists only `regions`: regions the first account's does
/// not list (as Rackspace's UK realm is separate from the US one), or regions both list (two US
/// accounts), which then hold each account's own resources ([`SimHandle::second_region`]).
#[derive(Debug, Clone)]
pub struct SecondAccount {
    pub account: Account,
    pub regions: Vec<String>,
}

/// The second account's tenant id.
pub const SECOND_TENANT: &str = "200200";

/// The suffix of the key under which the second account's copy of a region both accounts have
/// is kept (`DFW-2`); its catalog names the region without it.
pub const SHARED_SUFFIX: &str = "-2";

/// The region name a catalog shows for the region kept under `key`.
pub fn region_name(key: &str) -> &str {
    key.strip_suffix(SHARED_SUFFIX).unwrap_or(key)
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            regions: vec!["DFW".into(), "IAD".into()],
            data_dir: None,
            account: Account::default(),
            timing: Timing::instant(),
            max_object_size: object_store::MAX_OBJECT_SIZE,
            export_segment_size: 1 << 20,
            export: ExportShape::default(),
            object_stores: BTreeMap::new(),
            servers: Vec::new(),
            faults: Plan::default(),
            second: None,
            servicenet_unreachable: false,
            glance_size_cap: openstack::SIZE_CAP,
            glance_refuse_direct_upload: false,
            glance_fail_imports: 0,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the simulator's data directory")]
    DataDir(#[source] std::io::Error),
    #[error("cannot listen on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("cannot build the HTTP client for external object stores")]
    Client(#[source] reqwest::Error),
}

/// Everything the handlers share.
pub struct Shared {
    base_url: String,
    regions: Vec<String>,
    account: Account,
    tokens: identity::Tokens,
    store: object_store::Store,
    stats: Arc<Stats>,
    cloud: cloud::Cloud,
    faults: faults::Faults,
    timing: Timing,
    export_segment_size: u64,
    export: ExportShape,
    object_stores: BTreeMap<String, String>,
    http: reqwest::Client,
    second: Option<SecondAccount>,
    servicenet_unreachable: bool,
    openstack: openstack::OpenStack,
    /// The OpenStack side's Nova servers.
    openstack_servers: openstack_compute::Servers,
}

impl Shared {
    /// The tenant that owns `region`: the second account's for its regions, else the first's.
    fn tenant_of(&self, region: &str) -> &'static str {
        match &self.second {
            Some(s) if s.regions.iter().any(|r| r.eq_ignore_ascii_case(region)) => SECOND_TENANT,
            _ => TENANT,
        }
    }

    /// Whether the user of the account that owns `region` has a role that may create image tasks
    /// and properties.
    fn may_manage_images(&self, region: &str) -> bool {
        match &self.second {
            Some(s) if s.regions.iter().any(|r| r.eq_ignore_ascii_case(region)) => {
                s.account.may_manage_images()
            }
            _ => self.account.may_manage_images(),
        }
    }

    /// The regions in `tenant`'s catalog.
    fn regions_of(&self, tenant: &str) -> Vec<String> {
        self.regions
            .iter()
            .filter(|r| self.tenant_of(r) == tenant)
            .cloned()
            .collect()
    }

    fn compute_url(&self, region: &str) -> String {
        format!(
            "{}/{}/servers/v2/{}",
            self.base_url,
            region.to_lowercase(),
            self.tenant_of(region)
        )
    }

    fn images_url(&self, region: &str) -> String {
        format!("{}/{}/images/v2", self.base_url, region.to_lowercase())
    }

    fn files_url(&self, region: &str) -> String {
        match self.object_stores.get(&region.to_uppercase()) {
            Some(url) => url.clone(),
            None => format!(
                "{}/{}/v1/MossoCloudFS_{}",
                self.base_url,
                region.to_lowercase(),
                self.tenant_of(region)
            ),
        }
    }

    /// Cloud Files over ServiceNet: the same service on another host name (`localhost` for
    /// `127.0.0.1`), as Rackspace's `snet-` hosts are; none for a region backed by an external Swift.
    fn files_internal_url(&self, region: &str) -> Option<String> {
        if self.object_stores.contains_key(&region.to_uppercase()) {
            return None;
        }
        let public = self.files_url(region);
        let internal = public
            .contains("://127.0.0.1:")
            .then(|| public.replacen("://127.0.0.1:", "://localhost:", 1))?;
        if !self.servicenet_unreachable {
            return Some(internal);
        }
        // Port 9 (discard) on loopback: nothing listens, so a connection is refused.
        let url = reqwest::Url::parse(&internal).ok().map(|mut u| {
            let _ = u.set_port(Some(9));
            u.to_string()
        })?;
        Some(url.trim_end_matches('/').to_string())
    }

    /// The region's Cloud Files as the image service reaches it.
    fn files(&self, region: &str) -> files_backend::Backend<'_> {
        match self.object_stores.get(region) {
            Some(url) => files_backend::Backend::Remote {
                http: &self.http,
                account_url: url.clone(),
            },
            None => files_backend::Backend::Local(&self.store),
        }
    }
}

/// A running simulator. Dropping it stops the server and removes a temporary data directory.
pub struct SimHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _tempdir: Option<tempfile::TempDir>,
}

impl SimHandle {
    /// The key under which the simulator keeps the second account's `region` (for
    /// [`SimHandle::servers`], [`SimHandle::images`] and the URL helpers): `DFW-2` when both
    /// accounts have DFW.
    pub fn second_region(&self, region: &str) -> String {
        let region = region.to_uppercase();
        let shared = format!("{region}{SHARED_SUFFIX}");
        match &self.shared.second {
            Some(s) if s.regions.contains(&shared) => shared,
            _ => region,
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The Identity v2.0 endpoint, to pass as `--identity-url`.
    pub fn identity_url(&self) -> String {
        format!("{}/identity/v2.0", self.shared.base_url)
    }

    /// The second account's identity endpoint (see [`SecondAccount`]).
    pub fn second_identity_url(&self) -> String {
        format!("{}/identity-uk/v2.0", self.shared.base_url)
    }

    /// The Cloud Files account URL of `region`, as the catalog advertises it.
    pub fn object_store_url(&self, region: &str) -> String {
        self.shared.files_url(region)
    }

    pub fn compute_url(&self, region: &str) -> String {
        self.shared.compute_url(region)
    }

    pub fn images_url(&self, region: &str) -> String {
        self.shared.images_url(region)
    }

    pub fn account(&self) -> &Account {
        &self.shared.account
    }

    /// Issues a token directly, as if identity had (for tests of a single service).
    pub fn issue_token(&self) -> String {
        self.shared.tokens.issue(self.shared.timing.token_ttl).0
    }

    /// Every token the identity service has issued, so tests can prove none leaked.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.all()
    }

    /// Expires every token now.
    pub fn expire_tokens(&self) {
        self.shared.tokens.expire_all();
    }

    /// Replaces the fault plan (and resets its counters).
    pub fn set_faults(&self, plan: Plan) {
        self.shared.faults.set(plan);
    }

    /// Makes the next import task fail with `code`.
    pub fn fail_next_import(&self, code: u16) {
        self.shared.faults.fail_next_import(code);
    }

    pub fn stats(&self) -> Snapshot {
        self.shared.stats.snapshot()
    }

    /// The servers in `region` as (id, name).
    pub fn servers(&self, region: &str) -> Vec<(String, String)> {
        self.shared.cloud.with(&region.to_uppercase(), |r| {
            r.servers
                .values()
                .map(|s| (s.id.clone(), s.name.clone()))
                .collect()
        })
    }

    /// The images in `region` as (id, name).
    pub fn images(&self, region: &str) -> Vec<(String, String)> {
        self.shared.cloud.with(&region.to_uppercase(), |r| {
            r.images
                .values()
                .map(|i| (i.id.clone(), i.name.clone()))
                .collect()
        })
    }

    /// The disk behind an image, to compare its bytes in tests.
    pub fn image_disk(&self, region: &str, image_id: &str) -> Option<Disk> {
        self.shared.cloud.with(&region.to_uppercase(), |r| {
            r.images.get(image_id).map(|i| i.disk.clone())
        })
    }

    /// The disk behind a server.
    pub fn server_disk(&self, region: &str, server_id: &str) -> Option<Disk> {
        self.shared.cloud.with(&region.to_uppercase(), |r| {
            r.servers.get(server_id).map(|s| s.disk.clone())
        })
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the simulator on 127.0.0.1 with an ephemeral port.
pub async fn spawn(config: SimConfig) -> Result<SimHandle, Error> {
    spawn_on(config, "127.0.0.1:0").await
}

/// Starts the simulator on a given loopback address (`sim serve --listen`).
pub async fn spawn_on(config: SimConfig, listen: &str) -> Result<SimHandle, Error> {
    let (root, tempdir) = match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(Error::DataDir)?;
            (dir.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("imgferry-sim-")
                .tempdir()
                .map_err(Error::DataDir)?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(Error::Bind)?;
    let addr = listener.local_addr().map_err(Error::Bind)?;
    let stats = Arc::new(Stats::default());
    // A region both accounts have is two regions here: the second account's copy is kept under
    // its own key (`DFW-2`), with its own servers, images, tasks and Cloud Files, and its catalog
    // names it `DFW` as the first account's does.
    let first: Vec<String> = config.regions.iter().map(|r| r.to_uppercase()).collect();
    let second = config.second.clone().map(|mut s| {
        s.regions = s
            .regions
            .iter()
            .map(|r| r.to_uppercase())
            .map(|r| {
                if first.contains(&r) {
                    format!("{r}{SHARED_SUFFIX}")
                } else {
                    r
                }
            })
            .collect();
        s
    });
    let shared = Arc::new(Shared {
        base_url: format!("http://{addr}"),
        regions: config
            .regions
            .iter()
            .map(|r| r.to_uppercase())
            .chain(second.iter().flat_map(|s| s.regions.iter().cloned()))
            .collect(),
        servicenet_unreachable: config.servicenet_unreachable,
        second,
        account: config.account.clone(),
        tokens: identity::Tokens::default(),
        openstack: openstack::OpenStack::under(&root, config.glance_size_cap)
            .map_err(Error::DataDir)?
            .refusing_direct_upload(config.glance_refuse_direct_upload)
            .failing_imports(config.glance_fail_imports),
        openstack_servers: openstack_compute::Servers::default(),
        store: object_store::Store::new(root, config.max_object_size, Arc::clone(&stats)),
        stats,
        cloud: cloud::Cloud::default(),
        faults: faults::Faults::default(),
        timing: config.timing,
        export_segment_size: config.export_segment_size,
        export: config.export,
        object_stores: config
            .object_stores
            .iter()
            .map(|(r, u)| (r.to_uppercase(), u.clone()))
            .collect(),
        http: reqwest::Client::builder().build().map_err(Error::Client)?,
    });
    shared.faults.set(config.faults.clone());
    seed(&shared, &config.servers);
    let app = router::router(&shared);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // TCP_NODELAY: without it, a small answer written in two parts (headers, then a
        // throttled body) waits for the client's delayed ACK, about 40 ms on loopback, a latency
        // nothing here means to model (docs/simulator.md).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "simulator: cannot set TCP_NODELAY");
            }
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    Ok(SimHandle {
        addr,
        shared,
        shutdown: Some(tx),
        _tempdir: tempdir,
    })
}

/// What a Rackspace base image carries besides its core attributes, as Rackspace's own mock serves
/// them (rackerlabs/mimic `mimic/model/rackspace_images.py`, an HVM Linux image: `vm_mode` "hvm",
/// `os_type` "linux", `flavor_classes` "*,!onmetal"; the Cloud Images FAQ and
/// cloud-image-transfer.sh name the `os_distro` ones), plus one key a user set.
fn base_properties() -> BTreeMap<String, String> {
    [
        ("os_distro", "ubuntu"),
        ("os_version", "22.04"),
        ("org.openstack__1__os_distro", "org.ubuntu"),
        ("org.openstack__1__os_version", "22.04"),
        ("com.rackspace__1__visible_core", "1"),
        ("auto_disk_config", "True"),
        ("os_type", "linux"),
        ("vm_mode", "hvm"),
        ("flavor_classes", "*,!onmetal"),
        ("team", "web"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Creates the configured servers, each with the base image it was built from.
fn seed(shared: &Shared, servers: &[SeedServer]) {
    let now = Instant::now();
    for s in servers {
        let region = s.region.to_uppercase();
        let disk = Disk::generated(s.disk);
        let image = cloud::Image {
            id: cloud::new_id(),
            name: format!("{} base image", s.name),
            created: SystemTime::now(),
            created_at: now,
            ready_at: now,
            disk: disk.clone(),
            origin: cloud::Origin::Base,
            instance_uuid: None,
            checksum: None,
            owner: s
                .variant
                .image_owner
                .clone()
                .unwrap_or_else(|| shared.tenant_of(&region).into()),
            options: s
                .variant
                .image_options
                .clone()
                .unwrap_or_else(|| "0".into()),
            volume_backed: false,
            virtual_size: s.disk.virtual_size,
            min_disk: s.variant.image_min_disk,
            min_ram: 512,
            properties: {
                let mut p = base_properties();
                for (k, v) in &s.variant.image_properties {
                    match v {
                        Some(v) => p.insert(k.clone(), v.clone()),
                        None => p.remove(k),
                    };
                }
                p
            },
        };
        let server = cloud::Server {
            id: cloud::new_id(),
            name: s.name.clone(),
            image_id: image.id.clone(),
            flavor: s
                .variant
                .flavor
                .clone()
                .unwrap_or_else(|| "general1-2".into()),
            boot_from_volume: s.variant.boot_from_volume,
            created: SystemTime::now(),
            ready_at: now,
            imaging_until: None,
            disk,
        };
        shared.cloud.with(&region, |r| {
            r.images.insert(image.id.clone(), image);
            r.servers.insert(server.id.clone(), server);
        });
    }
}
