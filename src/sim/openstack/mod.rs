//! An OpenStack cloud beside the legacy one: Keystone v3 (`POST /keystone/v3/auth/tokens`, the
//! password method) and Glance v2 images (`/glance/{region}/v2/images…`: create, upload, read
//! with ranges, list with property filters, delete; the `glance-direct` import: `/v2/info/import`,
//! stage, import, the image's tasks). It is no more lenient than upstream, as
//! `tests/it/real_openstack.rs` checks by sending the same requests to both: the format
//! inspection of uploads (glance `glance/location.py`), 413 over the size cap, 409 for a second
//! upload, 401 for an unknown token or a wrong password, images visible to their project only.
//!
//! Users are those of `scripts/openstack-loopback.sh`: alice (project alpha) and bob (project
//! beta), domain `Default` (id `default`), password `<user>-secret`. Application credentials are
//! not simulated: that login is refused with 401.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::{Shared, SimHandle};

mod data;
mod import;

/// The regions of the OpenStack cloud.
pub const REGIONS: [&str; 2] = ["RegionOne", "RegionTwo"];
/// Glance's default `image_size_cap` (glance `glance/common/config.py`).
pub const SIZE_CAP: u64 = 1 << 40;
/// Keystone's default token lifetime (`[token] expiration`, one hour).
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Formats Glance's inspector recognises (oslo.utils `imageutils/format_inspector.py`).
const INSPECTABLE: [&str; 8] = ["raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso", "gpt"];
/// Glance's default `enabled_import_methods` (glance `glance/common/config.py`), as real Glance
/// 33 lists them in `/v2/info/import`.
const IMPORT_METHODS: [&str; 3] = ["glance-direct", "web-download", "copy-image"];
/// `disk_format` values Glance accepts (`[image_format] disk_formats`).
const DISK_FORMATS: [&str; 11] = [
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
/// Attributes a client may not set (glance `glance/api/v2/images.py`, `_readonly_properties` and
/// `_reserved_properties`).
const READ_ONLY: [&str; 12] = [
    "id",
    "status",
    "size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "owner",
    "virtual_size",
    "direct_url",
    "locations",
];

/// The OpenStack side's state.
#[derive(Default)]
pub struct OpenStack {
    /// Tokens and the project each was issued for.
    tokens: super::identity::Tokens,
    images: Mutex<BTreeMap<String, Image>>,
    dir: PathBuf,
    /// `image_size_cap`: an upload past it is refused with 413.
    size_cap: u64,
    /// `PUT …/file` is refused with 403 (a policy denying `upload_image`).
    refuse_direct: bool,
    /// Imports left to fail (a fault).
    fail_imports: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
struct Image {
    record: serde_json::Map<String, Value>,
    region: String,
    project: String,
    /// Its import tasks, as `GET /v2/images/{id}/tasks` lists them.
    tasks: Vec<Value>,
    /// What a whole stage received: its md5, sha512 and first bytes.
    staged: Option<(String, String, Vec<u8>)>,
}

impl OpenStack {
    /// The OpenStack side, keeping image data in `glance/` under the simulator's data directory.
    pub fn under(root: &std::path::Path, size_cap: u64) -> std::io::Result<Self> {
        let dir = root.join("glance");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            size_cap,
            ..Self::default()
        })
    }

    /// The project of a request to `region`: a 404 for a region the cloud does not have, a 401
    /// without a valid token (every Glance, Nova and Neutron request passes this first).
    /// The refusal is the status and message [`error`] answers with.
    pub(super) fn admit(
        &self,
        region: &str,
        headers: &HeaderMap,
    ) -> Result<String, (StatusCode, &'static str)> {
        if !REGIONS.contains(&region) {
            return Err((StatusCode::NOT_FOUND, "The resource could not be found."));
        }
        project_of(self, headers).ok_or((
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        ))
    }

    /// What Nova needs to know of image `id` to boot it, when `project` sees it in `region`: its
    /// status, size and virtual size.
    pub(super) fn bootable(
        &self,
        id: &str,
        region: &str,
        project: &str,
    ) -> Option<(String, u64, Option<u64>)> {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        let i = images
            .get(id)
            .filter(|i| i.project == project && i.region == region)?;
        let r = &i.record;
        Some((
            r.get("status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            r.get("size").and_then(Value::as_u64).unwrap_or(0),
            r.get("virtual_size").and_then(Value::as_u64),
        ))
    }

    /// Fails the next `n` imports (a fault).
    pub fn failing_imports(self, n: usize) -> Self {
        self.fail_imports
            .store(n, std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// Refuses direct uploads (`PUT …/file`) with 403 when `refuse` is set.
    pub fn refusing_direct_upload(mut self, refuse: bool) -> Self {
        self.refuse_direct = refuse;
        self
    }
}

impl SimHandle {
    /// The simulated OpenStack cloud's Keystone v3 root.
    pub fn keystone_url(&self) -> String {
        format!("{}/keystone/v3", self.shared.base_url)
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "title": status.canonical_reason().unwrap_or("")}});
    (status, axum::Json(body)).into_response()
}

/// `POST /keystone/v3/auth/tokens`.
pub(super) async fn tokens(State(shared): State<std::sync::Arc<Shared>>, body: Bytes) -> Response {
    shared.stats.request("POST", "keystone:tokens");
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let user = &req["auth"]["identity"]["password"]["user"];
    let (name, password) = (user["name"].as_str(), user["password"].as_str());
    let in_default =
        |d: &Value| d["id"].as_str() == Some("default") || d["name"].as_str() == Some("Default");
    let project = &req["auth"]["scope"]["project"];
    let wanted = project["name"].as_str();
    let known = [("alice", "alpha"), ("bob", "beta")];
    let Some((user_name, project_name)) = known.iter().copied().find(|(u, p)| {
        Some(*u) == name
            && password == Some(format!("{u}-secret").as_str())
            && in_default(&user["domain"])
            && wanted == Some(*p)
            && in_default(&project["domain"])
    }) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        );
    };
    let os = &shared.openstack;
    let (token, expires) = os.tokens.issue_for(TOKEN_TTL, project_name);
    crate::secrets::register(&token);
    let endpoints = |path: &str| -> Vec<Value> {
        REGIONS
            .iter()
            .flat_map(|r| {
                let url = format!("{}/{path}", shared.base_url).replace("{r}", r);
                ["public", "internal", "admin"]
                    .map(|i| json!({"interface": i, "region_id": r, "region": r, "url": url}))
            })
            .collect()
    };
    let body = json!({"token": {
        "methods": ["password"],
        "expires_at": jiff::Timestamp::try_from(expires).map(|t| t.to_string()).unwrap_or_default(),
        "user": {"id": format!("{user_name}-id"), "name": user_name, "domain": {"id": "default", "name": "Default"}},
        "project": {"id": format!("{project_name}-id"), "name": project_name, "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "member-id", "name": "member"}, {"id": "reader-id", "name": "reader"}],
        "catalog": [
            {"type": "image", "name": "glance", "endpoints": endpoints("glance/{r}")},
            {"type": "compute", "name": "nova", "endpoints": endpoints("nova/{r}/v2.1")},
            {"type": "network", "name": "neutron", "endpoints": endpoints("neutron/{r}")},
        ],
    }});
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = token.parse() {
        resp.headers_mut().insert("X-Subject-Token", v);
    }
    resp
}

/// The project of a valid token, if the request carries one.
fn project_of(os: &OpenStack, headers: &HeaderMap) -> Option<String> {
    os.tokens
        .tenant_of(headers.get("x-auth-token")?.to_str().ok()?)
}

/// Every `/glance/{region}/v2/…` request.
pub(super) async fn glance(
    State(shared): State<std::sync::Arc<Shared>>,
    Path((region, rest)): Path<(String, String)>,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let os = &shared.openstack;
    let project = match os.admit(&region, &headers) {
        Ok(p) => p,
        Err((status, why)) => return error(status, why),
    };
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    shared.stats.request(
        method.as_str(),
        &format!("glance:{}", parts.first().unwrap_or(&"")),
    );
    let visible = |id: &str| {
        let images = os.images.lock().unwrap_or_else(|e| e.into_inner());
        images
            .get(id)
            .filter(|i| i.project == project && i.region == region)
            .cloned()
    };
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["images"]) => {
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            create(os, &region, &project, &bytes)
        }
        ("GET", ["images"]) => list(os, &region, &project, &query),
        ("GET", ["images", id]) => match visible(id) {
            Some(i) => axum::Json(Value::Object(i.record)).into_response(),
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        ("DELETE", ["images", id]) => {
            if visible(id).is_none() {
                return error(StatusCode::NOT_FOUND, "No image found");
            }
            os.images
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(*id);
            let _ = tokio::fs::remove_file(os.dir.join(id)).await;
            let _ = tokio::fs::remove_file(os.dir.join(format!("{id}.staged"))).await;
            StatusCode::NO_CONTENT.into_response()
        }
        ("PUT", ["images", _, "file"]) if os.refuse_direct => {
            data::drain(body).await;
            error(
                StatusCode::FORBIDDEN,
                "You are not authorized to complete upload_image action.",
            )
        }
        ("PUT", ["images", id, "file"]) => match visible(id) {
            Some(i) => data::upload(os, id, &i, body, data::Receive::File).await,
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        ("PUT", ["images", id, "stage"]) => match visible(id) {
            Some(i) => data::upload(os, id, &i, body, data::Receive::Stage).await,
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        ("POST", ["images", id, "import"]) => match visible(id) {
            Some(i) => {
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                import::import(&shared, id, &i, &bytes)
            }
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        ("GET", ["images", id, "tasks"]) => match visible(id) {
            Some(i) => axum::Json(json!({"tasks": i.tasks})).into_response(),
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        // The tasks API is for admins (Glance's `tasks_api_access` policy).
        ("GET", ["tasks"]) => error(
            StatusCode::FORBIDDEN,
            "You are not authorized to complete get_tasks action.",
        ),
        ("PATCH", ["images", id]) => match visible(id) {
            Some(_) => {
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                import::patch(os, id, &bytes)
            }
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        ("GET", ["info", "import"]) => axum::Json(json!({"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": IMPORT_METHODS}}))
        .into_response(),
        ("GET", ["images", id, "file"]) => match visible(id) {
            Some(i) => data::download(os, id, &i, &headers).await,
            None => error(StatusCode::NOT_FOUND, "No image found"),
        },
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

/// `GET /v2/images?KEY=VALUE…`: the project's images in the region whose properties match.
fn list(os: &OpenStack, region: &str, project: &str, query: &[(String, String)]) -> Response {
    let images = os.images.lock().unwrap_or_else(|e| e.into_inner());
    let found: Vec<&serde_json::Map<String, Value>> = images
        .values()
        .filter(|i| i.project == project && i.region == region)
        .map(|i| &i.record)
        .filter(|r| {
            query.iter().all(|(k, v)| {
                matches!(k.as_str(), "limit" | "marker" | "sort")
                    || r.get(k).and_then(Value::as_str) == Some(v.as_str())
            })
        })
        .collect();
    axum::Json(json!({"images": found, "first": "/v2/images", "schema": "/v2/schemas/images"}))
        .into_response()
}

fn create(os: &OpenStack, region: &str, project: &str, body: &[u8]) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Body is not a JSON object");
    };
    for key in req.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            return error(
                StatusCode::FORBIDDEN,
                &format!("Attribute '{key}' is read-only."),
            );
        }
        if key.starts_with("os_glance") {
            return error(
                StatusCode::FORBIDDEN,
                &format!("Attribute '{key}' is reserved."),
            );
        }
    }
    if let Some(f) = req.get("disk_format").and_then(Value::as_str)
        && !DISK_FORMATS.contains(&f)
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid value '{f}' for parameter 'disk_format'"),
        );
    }
    let now = jiff::Timestamp::now().to_string();
    let id = uuid_like(&format!("{now}{project}{}", req.len()));
    let mut record = serde_json::Map::new();
    for (k, v) in [
        ("id", json!(id)),
        ("status", json!("queued")),
        ("visibility", json!("shared")),
        ("protected", json!(false)),
        ("owner", json!(format!("{project}-id"))),
        ("size", Value::Null),
        ("virtual_size", Value::Null),
        ("checksum", Value::Null),
        ("os_hash_algo", Value::Null),
        ("os_hash_value", Value::Null),
        ("min_disk", json!(0)),
        ("min_ram", json!(0)),
        ("tags", json!([])),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("self", json!(format!("/v2/images/{id}"))),
        ("file", json!(format!("/v2/images/{id}/file"))),
        ("schema", json!("/v2/schemas/image")),
    ] {
        record.insert(k.into(), v);
    }
    record.extend(req);
    let image = Image {
        record: record.clone(),
        region: region.to_string(),
        project: project.to_string(),
        tasks: Vec::new(),
        staged: None,
    };
    os.images
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, image);
    (StatusCode::CREATED, axum::Json(Value::Object(record))).into_response()
}

/// A UUID-shaped id from a seed.
pub(super) fn uuid_like(seed: &str) -> String {
    let h = hex::encode(Md5::digest(
        format!("{seed}{:?}", SystemTime::now()).as_bytes(),
    ));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What Glance's inspector would call these bytes: qcow2 by its magic, a dynamic VHD by the
/// footer copy at its start; anything else (a fixed VHD included) is raw.
fn inspect(head: &[u8]) -> &'static str {
    if head.starts_with(b"QFI\xfb") {
        "qcow2"
    } else if head.starts_with(b"conectix") {
        "vhd"
    } else {
        "raw"
    }
}

fn set_status(os: &OpenStack, id: &str, status: &str, extra: &[(&str, Value)]) {
    if let Some(i) = os
        .images
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(id)
    {
        i.record.insert("status".into(), json!(status));
        for (k, v) in extra {
            i.record.insert((*k).into(), v.clone());
        }
    }
}

/// A snapshot of a server booted from image `from`: a new image named `name`, `queued` now and
/// `active` after `after`, with the same data. `None` when `from` is gone.
pub(super) async fn snapshot(
    shared: &std::sync::Arc<Shared>,
    from: &str,
    name: &str,
    (region, project): (&str, &str),
    server: &str,
    after: Duration,
) -> Option<String> {
    let os = &shared.openstack;
    let source = os
        .images
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(from)
        .cloned()?;
    let id = uuid_like(&format!("snapshot{name}{server}"));
    tokio::fs::copy(os.dir.join(from), os.dir.join(&id))
        .await
        .ok()?;
    let now = jiff::Timestamp::now().to_string();
    let digests = ["size", "checksum", "os_hash_algo", "os_hash_value"];
    let mut record = source.record.clone();
    for key in digests {
        record.insert(key.into(), Value::Null);
    }
    for (k, v) in [
        ("id", json!(id)),
        ("name", json!(name)),
        ("status", json!("queued")),
        ("image_type", json!("snapshot")),
        ("instance_uuid", json!(server)),
        ("base_image_ref", json!(from)),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("self", json!(format!("/v2/images/{id}"))),
        ("file", json!(format!("/v2/images/{id}/file"))),
    ] {
        record.insert(k.into(), v);
    }
    let done: Vec<(&'static str, Value)> = digests
        .iter()
        .map(|k| (*k, source.record.get(*k).cloned().unwrap_or(Value::Null)))
        .collect();
    os.images.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id.clone(),
        Image {
            record,
            region: region.to_string(),
            project: project.to_string(),
            tasks: Vec::new(),
            staged: None,
        },
    );
    let (shared, made) = (std::sync::Arc::clone(shared), id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        set_status(&shared.openstack, &made, "active", &done);
    });
    Some(id)
}

/// Whether Glance takes data its inspector calls `found` as `declared`: the same format, raw
/// data under a format it has no inspector for, or anything declared raw (glance
/// `glance/location.py`).
fn accepts(declared: &str, found: &str) -> bool {
    found == declared || (found == "raw" && !INSPECTABLE.contains(&declared)) || declared == "raw"
}
