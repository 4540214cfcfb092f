//! The simulator's HTTP surface: one route per service path, the token and region checks every
//! service request passes, and the handlers that hand requests to the services.

use super::*;

/// All routes, behind the fault middleware.
pub(super) fn router(shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/stats", get(stats_endpoint))
        .route("/info", get(swift_info))
        .route("/identity/v2.0/tokens", post(tokens))
        .route("/identity-uk/v2.0/tokens", post(second_tokens))
        .route("/keystone/v3/auth/tokens", post(super::openstack::tokens))
        .route("/glance/{region}/v2/{*rest}", any(super::openstack::glance))
        .route(
            "/nova/{region}/v2.1/{*rest}",
            any(super::openstack_compute::nova),
        )
        .route(
            "/neutron/{region}/v2.0/{*rest}",
            get(super::openstack_compute::neutron),
        )
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
            Arc::clone(shared),
            super::middleware::apply_faults,
        ))
        .with_state(Arc::clone(shared))
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
    login(&shared, &body, &shared.account, TENANT)
}

/// The second account's identity endpoint.
async fn second_tokens(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match &shared.second {
        Some(s) => login(&shared, &body, &s.account, SECOND_TENANT),
        None => compute::fault(StatusCode::NOT_FOUND, "itemNotFound", "No such endpoint"),
    }
}

/// A login of `account`, whose catalog lists `tenant`'s regions only.
fn login(shared: &Shared, body: &[u8], account: &Account, tenant: &'static str) -> Response {
    shared.stats.request("POST", "identity:tokens");
    let compute = |r: &str| shared.compute_url(r);
    let images = |r: &str| shared.images_url(r);
    let files = |r: &str| shared.files_url(r);
    let regions = shared.regions_of(tenant);
    let catalog = identity::Catalog {
        regions: &regions,
        tenant,
        compute_url: &compute,
        images_url: &images,
        files_url: &files,
        files_internal_url: &|r: &str| shared.files_internal_url(r),
    };
    identity::authenticate(
        body,
        account,
        &shared.tokens,
        shared.timing.token_ttl,
        &catalog,
    )
}

/// Checks the token before a service sees the request: it must be valid and issued for the
/// account that owns `region` (one account's token opens nothing of another's).
fn authorised(shared: &Shared, headers: &HeaderMap, region: &str) -> bool {
    let token = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    shared.tokens.valid_for(token, shared.tenant_of(region))
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
    let Some(region) = region_known(&shared, &region).filter(|r| tenant == shared.tenant_of(r))
    else {
        return compute::fault(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "Resource could not be found",
        );
    };
    if !authorised(&shared, &headers, &region) {
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
    if !authorised(&shared, &headers, &region) {
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
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if method == Method::PATCH {
        return images::patch(&shared, &region, &rest, content_type, &body);
    }
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
    if account != format!("MossoCloudFS_{}", shared.tenant_of(&code)) {
        return Err(Denied::UnknownEndpoint);
    }
    if !authorised(shared, headers, &code) {
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
    // ServiceNet requests arrive on the internal host name.
    if headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.starts_with("localhost"))
    {
        shared.stats.servicenet(&region);
    }
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
