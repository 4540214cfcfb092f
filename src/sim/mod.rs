//! The simulated Rackspace cloud: one axum server on loopback serving two or more regions, used by
//! `imgferry demo`, `imgferry sim serve` and the tests (DESIGN §5, docs/simulator.md).
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
pub mod faults;
pub mod files_backend;
pub mod identity;
pub mod images;
pub mod object_store;
pub mod stats;

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
    /// Regions whose Cloud Files is an external Swift account URL.
    pub object_stores: BTreeMap<String, String>,
    /// Servers that exist at start (each also gets a base image it was "built" from).
    pub servers: Vec<SeedServer>,
    pub faults: Plan,
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
            object_stores: BTreeMap::new(),
            servers: Vec::new(),
            faults: Plan::default(),
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
    object_stores: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl Shared {
    fn compute_url(&self, region: &str) -> String {
        format!(
            "{}/{}/servers/v2/{TENANT}",
            self.base_url,
            region.to_lowercase()
        )
    }

    fn images_url(&self, region: &str) -> String {
        format!("{}/{}/images/v2", self.base_url, region.to_lowercase())
    }

    fn files_url(&self, region: &str) -> String {
        match self.object_stores.get(&region.to_uppercase()) {
            Some(url) => url.clone(),
            None => format!(
                "{}/{}/v1/MossoCloudFS_{TENANT}",
                self.base_url,
                region.to_lowercase()
            ),
        }
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
    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The Identity v2.0 endpoint, to pass as `--identity-url`.
    pub fn identity_url(&self) -> String {
        format!("{}/identity/v2.0", self.shared.base_url)
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
    let shared = Arc::new(Shared {
        base_url: format!("http://{addr}"),
        regions: config.regions.iter().map(|r| r.to_uppercase()).collect(),
        account: config.account.clone(),
        tokens: identity::Tokens::default(),
        store: object_store::Store::new(root, config.max_object_size, Arc::clone(&stats)),
        stats,
        cloud: cloud::Cloud::default(),
        faults: faults::Faults::default(),
        timing: config.timing,
        export_segment_size: config.export_segment_size,
        object_stores: config
            .object_stores
            .iter()
            .map(|(r, u)| (r.to_uppercase(), u.clone()))
            .collect(),
        http: reqwest::Client::builder().build().map_err(Error::Client)?,
    });
    shared.faults.set(config.faults.clone());
    seed(&shared, &config.servers);
    let app = Router::new()
        .route("/_sim/stats", get(stats_endpoint))
        .route("/info", get(swift_info))
        .route("/identity/v2.0/tokens", post(tokens))
        .route("/{region}/servers/v2/{tenant}/{*rest}", any(compute_route))
        .route("/{region}/images/versions", get(image_versions))
        .route("/{region}/images/v2/{*rest}", any(images_route))
        .route("/{region}/v1/{account}", any(files_account))
        .route("/{region}/v1/{account}/{container}", any(files_container))
        .route(
            "/{region}/v1/{account}/{container}/{*object}",
            any(files_object),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            apply_faults,
        ))
        .with_state(Arc::clone(&shared));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
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
        };
        let server = cloud::Server {
            id: cloud::new_id(),
            name: s.name.clone(),
            image_id: image.id.clone(),
            flavor: "general1-2".into(),
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

async fn stats_endpoint(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats.snapshot()).into_response()
}

/// Swift's capabilities document; python-swiftclient reads it to decide whether SLO is available.
async fn swift_info(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(serde_json::json!({
        "swift": {"version": "2.38.3-imgferry-sim", "max_file_size": shared.store_max()},
        "slo": {"max_manifest_segments": object_store::MAX_SLO_SEGMENTS, "min_segment_size": object_store::MIN_SLO_SEGMENT,
                "max_manifest_size": 8 << 20},
        "dlo": {"max_get_time": 86400},
        "bulk_delete": {"max_deletes_per_request": 10000, "max_failed_deletes": 1000},
    }))
    .into_response()
}

impl Shared {
    fn store_max(&self) -> u64 {
        object_store::MAX_OBJECT_SIZE
    }
}

async fn tokens(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.stats.request("POST", "identity:tokens");
    let compute = |r: &str| shared.compute_url(r);
    let images = |r: &str| shared.images_url(r);
    let files = |r: &str| shared.files_url(r);
    let catalog = identity::Catalog {
        regions: &shared.regions,
        tenant: TENANT,
        compute_url: &compute,
        images_url: &images,
        files_url: &files,
    };
    identity::authenticate(
        &body,
        &shared.account,
        &shared.tokens,
        shared.timing.token_ttl,
        &catalog,
    )
}

/// Which service and region a path belongs to, for fault matching.
fn classify(path: &str) -> (faults::Service, Option<&str>) {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or("");
    match (first, parts.next()) {
        ("identity", _) => (faults::Service::Identity, None),
        (region, Some("servers")) => (faults::Service::Compute, Some(region)),
        (region, Some("images")) => (faults::Service::Images, Some(region)),
        (region, _) => (faults::Service::Files, Some(region)),
    }
}

/// Runs every request through the fault plan: failures answer at once, delays wait, token expiry
/// happens before the request is handled, and body shaping wraps the response (and, for a throttle,
/// the request body too, so uploads are paced like downloads).
async fn apply_faults(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // Rules match the decoded path, however the client chose to escape it.
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    if path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let (service, region) = classify(&path);
    let method = req.method().to_string();
    let target = faults::Target {
        service,
        region,
        method: &method,
        path: &path,
    };
    let (actions, link) = shared.faults.check(&target);
    for action in &actions {
        match action {
            faults::Action::Fail {
                status,
                retry_after_secs,
            } => {
                tracing::debug!(%path, status, "simulated failure");
                return faults::failure(service, *status, *retry_after_secs);
            }
            faults::Action::Delay { ms } => {
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await
            }
            faults::Action::ExpireTokens => shared.tokens.expire_all(),
            faults::Action::FailImport { code } => shared.faults.fail_next_import(*code),
            _ => {}
        }
    }
    let rate = actions
        .iter()
        .filter_map(|a| match a {
            faults::Action::Throttle { bytes_per_sec } => Some(*bytes_per_sec),
            _ => None,
        })
        .chain(link)
        .min();
    let req = match rate {
        Some(rate) => {
            let (parts, body) = req.into_parts();
            let paced = faults::throttle(Box::pin(body.into_data_stream()), rate);
            Request::from_parts(parts, Body::from_stream(paced))
        }
        None => req,
    };
    let resp = next.run(req).await;
    for action in &actions {
        if let faults::Action::DelayResponse { ms } = action {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
        }
    }
    let resp = faults::drop_listing_entries(resp, &actions).await;
    faults::shape_body(resp, &actions, link)
}

/// Checks the token (and for compute the tenant) before a service sees the request.
fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    shared.tokens.valid(token)
}

fn region_known(shared: &Shared, region: &str) -> Option<String> {
    let code = region.to_uppercase();
    shared.regions.contains(&code).then_some(code)
}

/// The route label for stats: ids replaced by `{id}`.
fn route_label(service: &str, rest: &[&str]) -> String {
    let parts: Vec<&str> = rest
        .iter()
        .map(|p| {
            if p.len() >= 32 && p.contains('-') {
                "{id}"
            } else {
                p
            }
        })
        .collect();
    format!("{service}:{}", parts.join("/"))
}

async fn compute_route(
    State(shared): State<Arc<Shared>>,
    Path((region, tenant, rest)): Path<(String, String, String)>,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(region) = region_known(&shared, &region).filter(|_| tenant == TENANT) else {
        return compute::fault(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "Resource could not be found",
        );
    };
    if !authorised(&shared, &headers) {
        return compute::fault(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The request you have made requires authentication.",
        );
    }
    let rest: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    shared
        .stats
        .request(method.as_str(), &route_label("compute", &rest));
    compute::handle(&shared, &region, &method, &rest, &query, &body)
}

/// Glance's version document; python-glanceclient asks for it before choosing an API version.
async fn image_versions(State(shared): State<Arc<Shared>>, Path(region): Path<String>) -> Response {
    let href = format!("{}/", shared.images_url(&region));
    axum::Json(serde_json::json!({"versions": [
        {"id": "v2.2", "status": "CURRENT", "links": [{"rel": "self", "href": href}]},
    ]}))
    .into_response()
}

async fn images_route(
    State(shared): State<Arc<Shared>>,
    Path((region, rest)): Path<(String, String)>,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(region) = region_known(&shared, &region) else {
        return (
            StatusCode::NOT_FOUND,
            "404 Not Found\n\nThe resource could not be found.",
        )
            .into_response();
    };
    if !authorised(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized\n\nThis server could not verify that you are authorized.",
        )
            .into_response();
    }
    let rest: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    shared
        .stats
        .request(method.as_str(), &route_label("images", &rest));
    images::handle(&shared, &region, &method, &rest, &query, &body)
}

/// Why a Cloud Files request was turned away before reaching the store.
enum Denied {
    UnknownEndpoint,
    Unauthorized,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::UnknownEndpoint => (
                StatusCode::NOT_FOUND,
                "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>",
            )
                .into_response(),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to \
                 access the document you requested.</p></html>",
            )
                .into_response(),
        }
    }
}

/// Checks the region and the token, returning the region's upper-case code.
fn admit(
    shared: &Shared,
    region: &str,
    account: &str,
    headers: &HeaderMap,
) -> Result<String, Denied> {
    let code = region_known(shared, region).ok_or(Denied::UnknownEndpoint)?;
    if account != format!("MossoCloudFS_{TENANT}") {
        return Err(Denied::UnknownEndpoint);
    }
    if !authorised(shared, headers) {
        return Err(Denied::Unauthorized);
    }
    Ok(code)
}

type Params = Query<BTreeMap<String, String>>;

async fn files(
    shared: Arc<Shared>,
    (region, account, container, object): (String, String, Option<String>, Option<String>),
    method: Method,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let region = match admit(&shared, &region, &account, &headers) {
        Ok(r) => r,
        Err(denied) => return denied.into_response(),
    };
    let req = object_store::Request {
        region: &region,
        method: &method,
        container: container.as_deref(),
        object: object.as_deref(),
        query: &query,
        headers: &headers,
    };
    let mut resp = shared.store.handle(req, body).await;
    // Every Swift response carries a transaction id.
    let seed = format!("{:?}", std::time::Instant::now());
    let trans = format!("tx{}", &hex::encode(Md5::digest(seed.as_bytes()))[..21]);
    if let Ok(v) = trans.parse() {
        resp.headers_mut().insert("x-trans-id", v);
    }
    resp
}

async fn files_account(
    State(shared): State<Arc<Shared>>,
    Path((region, account)): Path<(String, String)>,
    method: Method,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    files(
        shared,
        (region, account, None, None),
        method,
        q,
        headers,
        body,
    )
    .await
}

async fn files_container(
    State(shared): State<Arc<Shared>>,
    Path((region, account, container)): Path<(String, String, String)>,
    method: Method,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    files(
        shared,
        (region, account, Some(container), None),
        method,
        q,
        headers,
        body,
    )
    .await
}

async fn files_object(
    State(shared): State<Arc<Shared>>,
    Path((region, account, container, object)): Path<(String, String, String, String)>,
    method: Method,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    files(
        shared,
        (region, account, Some(container), Some(object)),
        method,
        q,
        headers,
        body,
    )
    .await
}
