//! The OpenStack side's Nova v2.1 (`/nova/{region}/v2.1/…`: flavors, create, show, list by name,
//! delete a server) and Neutron (`/neutron/{region}/v2.0/networks`), enough to boot an imported
//! image. Upstream Nova cannot run here (it needs RabbitMQ, placement and a hypervisor), so these
//! refusals follow its code rather than a test against it: an image that is unknown or not
//! active, an unknown flavor, a flavor disk smaller than the image, and no network named when
//! several are available (openstack/nova `nova/api/openstack/compute/servers.py` `create`,
//! `nova/compute/api.py` `_validate_flavor_image_nostatus`, `nova/exception.py`
//! `NetworkAmbiguous`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::openstack::error;

/// Flavors: (id, name, vcpus, RAM in MiB, root disk in GiB).
pub const FLAVORS: [(&str, &str, u32, u32, u64); 3] = [
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
];
/// Networks: (id, name). Two, so a boot that names none is ambiguous, as in most clouds.
pub const NETWORKS: [(&str, &str); 2] = [
    ("a1b2c3d4-0000-4000-8000-00000000e001", "public"),
    ("a1b2c3d4-0000-4000-8000-00000000e002", "private"),
];

/// A server of the OpenStack side.
#[derive(Clone)]
pub struct CloudServer {
    id: String,
    name: String,
    region: String,
    project: String,
    image: String,
    flavor: String,
    network: String,
    ready_at: Instant,
}

/// The OpenStack side's servers.
#[derive(Default)]
pub struct Servers {
    all: std::sync::Mutex<BTreeMap<String, CloudServer>>,
}

impl Servers {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CloudServer>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many servers were ever created and still exist (for tests).
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

fn server_json(s: &CloudServer) -> Value {
    let status = if Instant::now() >= s.ready_at {
        "ACTIVE"
    } else {
        "BUILD"
    };
    let net = NETWORKS
        .iter()
        .find(|(id, _)| *id == s.network)
        .map_or("public", |(_, n)| n);
    let last = s.id.bytes().last().unwrap_or(0) % 200 + 10;
    json!({"id": s.id, "name": s.name, "status": status,
        "image": {"id": s.image}, "flavor": {"id": s.flavor},
        "addresses": {net: [{"addr": format!("192.0.2.{last}"), "version": 4,
            "OS-EXT-IPS:type": "fixed"}]},
        "links": [{"rel": "self", "href": format!("/servers/{}", s.id)}]})
}

/// Every `/nova/{region}/v2.1/…` request.
pub(super) async fn nova(
    State(shared): State<Arc<Shared>>,
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
        &format!("nova:{}", parts.first().unwrap_or(&"")),
    );
    let mine = |s: &&CloudServer| s.project == project && s.region == region;
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["flavors"] | ["flavors", "detail"]) => axum::Json(json!({"flavors":
            FLAVORS.iter().map(flavor_json).collect::<Vec<_>>()}))
        .into_response(),
        ("GET", ["flavors", id]) => match FLAVORS.iter().find(|f| f.0 == *id) {
            Some(f) => axum::Json(json!({"flavor": flavor_json(f)})).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Flavor {id} could not be found."),
            ),
        },
        ("GET", ["servers"]) => {
            let name = query.iter().find(|(k, _)| k == "name").map(|(_, v)| v);
            let servers = shared.openstack_servers.lock();
            let found: Vec<Value> = servers
                .values()
                .filter(mine)
                // Nova's name filter is a pattern: a substring matches too.
                .filter(|s| name.is_none_or(|n| s.name.contains(n.as_str())))
                .map(|s| json!({"id": s.id, "name": s.name, "links": []}))
                .collect();
            axum::Json(json!({"servers": found})).into_response()
        }
        ("GET", ["servers", id]) => match shared.openstack_servers.lock().get(*id).filter(mine) {
            Some(s) => axum::Json(json!({"server": server_json(s)})).into_response(),
            None => error(StatusCode::NOT_FOUND, "Instance could not be found."),
        },
        ("DELETE", ["servers", id]) => match shared.openstack_servers.lock().remove(*id) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => error(StatusCode::NOT_FOUND, "Instance could not be found."),
        },
        ("POST", ["servers", id, "action"]) => {
            let Some(server) = shared
                .openstack_servers
                .lock()
                .get(*id)
                .filter(mine)
                .cloned()
            else {
                return error(StatusCode::NOT_FOUND, "Instance could not be found.");
            };
            let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            create_image(&shared, &server, &bytes).await
        }
        ("POST", ["servers"]) => {
            let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            create(&shared, &region, &project, &bytes)
        }
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

/// `POST /servers/{id}/action` with `createImage`: 202 with the new image's URL in `Location`
/// (Nova's answer before microversion 2.45), the image `queued` in Glance and `active` a moment
/// later, holding the server's disk (the image it was booted from). A server still building is
/// refused with 409, as Nova refuses one not in a state it images from.
async fn create_image(shared: &Arc<Shared>, server: &CloudServer, body: &[u8]) -> Response {
    let Some(name) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["createImage"]["name"].as_str().map(str::to_string))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute createImage: name is required",
        );
    };
    if Instant::now() < server.ready_at {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "Cannot 'createImage' instance {} while it is in vm_state building",
                server.id
            ),
        );
    }
    let made = super::openstack::snapshot(
        shared,
        &server.image,
        &name,
        (&server.region, &server.project),
        &server.id,
        shared.timing.imaging,
    )
    .await;
    match made {
        Some(id) => {
            shared.stats.created("openstack_snapshot", id.clone());
            let location = format!(
                "{}/glance/{}/v2/images/{id}",
                shared.base_url, server.region
            );
            let mut resp = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = location.parse() {
                resp.headers_mut().insert("Location", v);
            }
            resp
        }
        None => error(
            StatusCode::CONFLICT,
            "The server's image is gone; it cannot be imaged",
        ),
    }
}

fn flavor_json(f: &(&str, &str, u32, u32, u64)) -> Value {
    json!({"id": f.0, "name": f.1, "vcpus": f.2, "ram": f.3, "disk": f.4,
        "links": [{"rel": "self", "href": format!("/flavors/{}", f.0)}]})
}

/// `POST /servers`, refused as Nova refuses (see the module documentation).
fn create(shared: &Arc<Shared>, region: &str, project: &str, body: &[u8]) -> Response {
    let os = &shared.openstack;
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let s = &req["server"];
    let (Some(name), Some(image), Some(flavor)) = (
        s["name"].as_str(),
        s["imageRef"].as_str(),
        s["flavorRef"].as_str(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute server: name, imageRef and flavorRef are required",
        );
    };
    let Some((status, size, virtual_size)) = os.bootable(image, region, project) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Image {image} could not be found."),
        );
    };
    if status != "active" {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Image {image} is not active."),
        );
    }
    let Some(f) = FLAVORS.iter().find(|f| f.0 == flavor) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Flavor {flavor} could not be found."),
        );
    };
    let disk = f.4 << 30;
    let needed = size.max(virtual_size.unwrap_or(0));
    if needed > disk {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Flavor's disk is too small for requested image. Flavor disk is {disk} bytes, \
                 image is {needed} bytes."
            ),
        );
    }
    let network = match s["networks"].as_array().map(Vec::as_slice) {
        None | Some([]) => {
            return error(
                StatusCode::CONFLICT,
                "Multiple possible networks found, use a Network ID to be more specific.",
            );
        }
        Some([n, ..]) => {
            let uuid = n["uuid"].as_str().unwrap_or_default();
            if !NETWORKS.iter().any(|(id, _)| *id == uuid) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Network {uuid} could not be found."),
                );
            }
            uuid.to_string()
        }
    };
    let id = super::openstack::uuid_like(&format!("server{name}{project}"));
    let server = CloudServer {
        id: id.clone(),
        name: name.to_string(),
        region: region.to_string(),
        project: project.to_string(),
        image: image.to_string(),
        flavor: flavor.to_string(),
        network,
        ready_at: Instant::now() + shared.timing.build,
    };
    shared.openstack_servers.lock().insert(id.clone(), server);
    shared.stats.created("openstack_server", id.clone());
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"server": {"id": id, "adminPass": "Sim-Pass-5678",
            "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
            "links": [{"rel": "self", "href": format!("/servers/{id}")}]}})),
    )
        .into_response()
}

/// Every `/neutron/{region}/v2.0/…` request: the network list, filtered by `name` or `id`.
pub(super) async fn neutron(
    State(shared): State<Arc<Shared>>,
    Path((region, rest)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, why)) = shared.openstack.admit(&region, &headers) {
        return error(status, why);
    }
    if rest.trim_matches('/') != "networks" {
        return error(StatusCode::NOT_FOUND, "The resource could not be found.");
    }
    let found: Vec<Value> = NETWORKS
        .iter()
        .filter(|(id, name)| {
            query.iter().all(|(k, v)| match k.as_str() {
                "name" => name == v,
                "id" => id == v,
                _ => true,
            })
        })
        .map(|(id, name)| json!({"id": id, "name": name, "status": "ACTIVE", "shared": true}))
        .collect();
    axum::Json(json!({"networks": found})).into_response()
}
