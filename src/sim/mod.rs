//! The simulated Rackspace cloud: one axum server on loopback serving several regions, used by
//! `imgferry demo`, `imgferry sim serve` and the tests (DESIGN §5).
//!
//! This version serves **Cloud Files** (see [`object_store`]) and the stats endpoint. Identity,
//! Cloud Servers, Cloud Images and the fault injector are still to come; until identity exists,
//! tests get tokens from [`SimHandle::issue_token`].
//!
//! URL layout: `http://127.0.0.1:PORT/<region>/v1/MossoCloudFS_<tenant>/<container>/<object>`, with
//! the region in lower case, and `GET /_sim/stats` for the counters.

pub mod object_store;
pub mod stats;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use md5::{Digest, Md5};

pub use stats::{Snapshot, Stats};

/// The tenant id the simulated account uses; Cloud Files prefixes it with `MossoCloudFS_`.
pub const TENANT: &str = "100100";

/// How to run the simulated cloud.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Region codes, upper case (`DFW`, `IAD`).
    pub regions: Vec<String>,
    /// Where object data lives; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// The Cloud Files single-object limit.
    pub max_object_size: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            regions: vec!["DFW".into(), "IAD".into()],
            data_dir: None,
            max_object_size: object_store::MAX_OBJECT_SIZE,
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
}

struct Shared {
    regions: Vec<String>,
    tokens: Mutex<HashSet<String>>,
    store: object_store::Store,
    stats: Arc<Stats>,
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
        format!("http://{}", self.addr)
    }

    /// The Cloud Files account URL of `region`, as the catalog will advertise it.
    pub fn object_store_url(&self, region: &str) -> String {
        format!(
            "{}/{}/v1/MossoCloudFS_{TENANT}",
            self.base_url(),
            region.to_lowercase()
        )
    }

    /// Issues a token every service accepts.
    pub fn issue_token(&self) -> String {
        let mut tokens = self.shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let seed = format!("{:?}-{}", std::time::SystemTime::now(), tokens.len());
        let token = hex::encode(Md5::digest(seed.as_bytes()));
        tokens.insert(token.clone());
        token
    }

    /// Invalidates every token, as if they all expired now.
    pub fn expire_tokens(&self) {
        self.shared
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn stats(&self) -> Snapshot {
        self.shared.stats.snapshot()
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
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        regions: config.regions.iter().map(|r| r.to_uppercase()).collect(),
        tokens: Mutex::new(HashSet::new()),
        store: object_store::Store::new(root, config.max_object_size, Arc::clone(&stats)),
        stats,
    });
    let app = Router::new()
        .route("/_sim/stats", get(stats_endpoint))
        .route("/{region}/v1/{account}", any(files_account))
        .route("/{region}/v1/{account}/{container}", any(files_container))
        .route(
            "/{region}/v1/{account}/{container}/{*object}",
            any(files_object),
        )
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::Bind)?;
    let addr = listener.local_addr().map_err(Error::Bind)?;
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

async fn stats_endpoint(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats.snapshot()).into_response()
}

/// Why a request was turned away before reaching a service.
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
    let code = region.to_uppercase();
    if !shared.regions.contains(&code) || account != format!("MossoCloudFS_{TENANT}") {
        return Err(Denied::UnknownEndpoint);
    }
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let known = shared
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(token);
    if !known {
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
    let trans = format!(
        "tx{}",
        &hex::encode(Md5::digest(
            format!("{:?}", std::time::Instant::now()).as_bytes()
        ))[..21]
    );
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
