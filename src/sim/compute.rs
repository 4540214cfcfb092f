//! Cloud Servers (Nova v2) as the simulator serves it: servers create, get, list (with `?name=`),
//! detail and delete; the createImage action with the `Location` header; BUILD → ACTIVE; 409
//! `conflictingRequest` while a server is imaging (rackerlabs/docs-cloud-servers `api-docs/api-reference/methods/post-create-image-of-specified-server-servers-server-id-actions.rst`).

use std::time::{Instant, SystemTime};

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::cloud::{Image, Origin, Server, new_id, timestamp};

/// A Nova-style fault body: `{"<name>": {"code": N, "message": "..."}}`.
pub fn fault(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ name: { "code": status.as_u16(), "message": message } })),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    fault(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        &format!("{what} could not be found"),
    )
}

/// createImage is "not available for OnMetal servers" (docs-cloud-servers, createImage); the exact
/// answer is not documented, so the simulator refuses with a 400.
const ONMETAL: &str = "createImage is not available for OnMetal servers";

/// Rackspace's flavors and their system disks in GB (rackerlabs/mimic
/// `mimic/model/flavor_objects.py`, Rackspace's own mock): Compute v1 and Memory v1 have no local
/// disk ("must be booted from volume … image-based builds are not supported", docs-cloud-servers
/// boot-from-volume page); OnMetal has a 32 GB disk.
pub const FLAVORS: &[(&str, &str, u64)] = &[
    ("2", "512MB Standard Instance", 20),
    ("3", "1GB Standard Instance", 40),
    ("4", "2GB Standard Instance", 80),
    ("5", "4GB Standard Instance", 160),
    ("6", "8GB Standard Instance", 320),
    ("7", "15GB Standard Instance", 620),
    ("8", "30GB Standard Instance", 1200),
    ("general1-1", "1 GB General Purpose v1", 20),
    ("general1-2", "2 GB General Purpose v1", 40),
    ("general1-4", "4 GB General Purpose v1", 80),
    ("general1-8", "8 GB General Purpose v1", 160),
    ("io1-15", "15 GB I/O v1", 40),
    ("io1-30", "30 GB I/O v1", 40),
    ("io1-60", "60 GB I/O v1", 40),
    ("io1-90", "90 GB I/O v1", 40),
    ("io1-120", "120 GB I/O v1", 40),
    ("compute1-4", "3.75 GB Compute v1", 0),
    ("compute1-8", "7.5 GB Compute v1", 0),
    ("compute1-15", "15 GB Compute v1", 0),
    ("compute1-30", "30 GB Compute v1", 0),
    ("compute1-60", "60 GB Compute v1", 0),
    ("memory1-15", "15 GB Memory v1", 0),
    ("memory1-30", "30 GB Memory v1", 0),
    ("memory1-60", "60 GB Memory v1", 0),
    ("memory1-120", "120 GB Memory v1", 0),
    ("memory1-240", "240 GB Memory v1", 0),
    ("onmetal-compute1", "OnMetal Compute v1", 32),
    ("onmetal-io1", "OnMetal IO v1", 32),
    ("onmetal-memory1", "OnMetal Memory v1", 32),
];

/// The flavor `id`'s name and disk in GB.
pub fn flavor(id: &str) -> Option<(&'static str, u64)> {
    FLAVORS
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, name, disk)| (*name, *disk))
}

/// Whether an image-based build of `image` fits `flavor`: the flavor must exist and have a
/// local disk at least as large as the image's virtual size (Nova's
/// `FlavorDiskSmallerThanImage`: "Flavor's disk is too small for requested image").
fn flavor_fits(flavor_id: &str, image: &Image) -> Result<(), Box<Response>> {
    let Some((_, disk_gb)) = flavor(flavor_id) else {
        return Err(Box::new(fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!("Flavor {flavor_id} could not be found."),
        )));
    };
    if disk_gb == 0 {
        // Nova's policy refusal of an image-backed build on a flavor without a local disk, as
        // Rackspace answers it (juju/juju PR #6583, docker/machine issue #1773).
        return Err(Box::new(fault(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Policy doesn't allow compute_flavor:create:image_backed to be performed.",
        )));
    }
    if !crate::api::compute::flavor_class_allowed(
        image.properties.get("flavor_classes").map(String::as_str),
        flavor_id,
    ) {
        // No source gives Nova's answer (or says it checks at all); the simulator assumes the
        // stricter rule and refuses (docs/real-cloud.md).
        return Err(Box::new(fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!(
                "Flavor {flavor_id} is not allowed for this image (flavor_classes {})",
                image
                    .properties
                    .get("flavor_classes")
                    .map_or("", String::as_str)
            ),
        )));
    }
    let image_size = image.virtual_size;
    if disk_gb << 30 < image_size {
        return Err(Box::new(fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!(
                "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image is {image_size} bytes.",
                disk_gb << 30
            ),
        )));
    }
    Ok(())
}

fn flavor_json(id: &str) -> Option<Value> {
    let (name, disk) = flavor(id)?;
    Some(
        json!({"flavor": {"id": id, "name": name, "disk": disk, "ram": 0, "vcpus": 0,
        "OS-FLV-EXT-DATA:ephemeral": 0}}),
    )
}

/// Serves `/{region}/servers/v2/{tenant}/{rest}`.
pub fn handle(
    shared: &Shared,
    region: &str,
    method: &Method,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    let base = shared.compute_url(region);
    match (method, rest) {
        (&Method::GET, ["servers"]) => list(shared, region, query, &base, false),
        (&Method::GET, ["servers", "detail"]) => list(shared, region, query, &base, true),
        (&Method::POST, ["servers"]) => create(shared, region, body, &base),
        (&Method::GET, ["servers", id]) => shared
            .cloud
            .with(region, |r| {
                r.servers
                    .get(*id)
                    .map(|s| server_json(s, &base, true, shared.tenant_of(region)))
            })
            .map_or_else(
                || not_found("Instance"),
                |v| axum::Json(json!({ "server": v })).into_response(),
            ),
        (&Method::DELETE, ["servers", id]) => {
            let removed = shared.cloud.with(region, |r| r.servers.remove(*id));
            match removed {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => not_found("Instance"),
            }
        }
        (&Method::POST, ["servers", id, "action"]) => action(shared, region, id, body, &base),
        (&Method::GET, ["flavors", id]) => {
            flavor_json(id).map_or_else(|| not_found("Flavor"), |v| axum::Json(v).into_response())
        }
        _ => not_found("Resource"),
    }
}

fn server_json(s: &Server, base: &str, detail: bool, tenant: &str) -> Value {
    let links = json!([{"href": format!("{base}/servers/{}", s.id), "rel": "self"}]);
    if !detail {
        return json!({"id": s.id, "name": s.name, "links": links});
    }
    let status = s.status();
    let addresses = if status == "ACTIVE" {
        json!({"public": [{"addr": "203.0.113.10", "version": 4}], "private": [{"addr": "10.176.0.10", "version": 4}]})
    } else {
        json!({})
    };
    json!({
        "id": s.id, "name": s.name, "status": status,
        "progress": if status == "ACTIVE" { 100 } else { 50 },
        "OS-EXT-STS:vm_state": status.to_lowercase(),
        "OS-EXT-STS:task_state": s.task_state(),
        "OS-EXT-STS:power_state": if status == "ACTIVE" { 1 } else { 0 },
        "OS-DCF:diskConfig": "MANUAL",
        // A server booted from a volume shows an empty image (Nova's API for volume-backed servers).
        "image": if s.boot_from_volume { json!("") } else { json!({"id": s.image_id}) },
        "flavor": {"id": s.flavor},
        "addresses": addresses, "accessIPv4": if status == "ACTIVE" { "203.0.113.10" } else { "" },
        "created": timestamp(s.created), "updated": timestamp(SystemTime::now()),
        "tenant_id": tenant, "user_id": "10001", "links": links,
    })
}

/// Nova's paginated list: at most `limit` servers (and never more than [`MAX_LIMIT`], Nova's
/// `osapi_max_limit` default) after `marker`, with a `servers_links` "next" link when more follow.
/// An unknown marker is a 400, as in Nova.
fn list(
    shared: &Shared,
    region: &str,
    query: &[(String, String)],
    base: &str,
    detail: bool,
) -> Response {
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let name = get("name");
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    let marker = get("marker");
    let page = shared.cloud.with(region, |r| {
        let mut matching = r
            .servers
            .values()
            .filter(|s| name.is_none_or(|n| s.name.contains(n)))
            .skip_while(|s| marker.is_some_and(|m| s.id != m));
        if let Some(m) = marker {
            // The marker itself is not repeated; a marker that matches nothing is an error.
            if matching.next().is_none_or(|s| s.id != m) {
                return None;
            }
        }
        let mut servers: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .map(|s| server_json(s, base, detail, shared.tenant_of(region)))
            .collect();
        let more = matching.next().is_some();
        let next = more
            .then(|| servers.last().map(|v| v["id"].clone()))
            .flatten();
        Some((std::mem::take(&mut servers), next))
    });
    match page {
        None => fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!("marker [{}] not found", marker.unwrap_or_default()),
        ),
        Some((servers, None)) => axum::Json(json!({ "servers": servers })).into_response(),
        Some((servers, Some(last))) => {
            let href = format!(
                "{base}/servers?limit={limit}&marker={}",
                last.as_str().unwrap_or_default()
            );
            axum::Json(
                json!({ "servers": servers, "servers_links": [{"rel": "next", "href": href}] }),
            )
            .into_response()
        }
    }
}

/// Nova's default `osapi_max_limit`: the most servers one list answer holds.
pub const MAX_LIMIT: usize = 1000;

fn create(shared: &Shared, region: &str, body: &[u8], base: &str) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Malformed request body",
        );
    };
    let s = &req["server"];
    let (Some(name), Some(image_ref), Some(flavor)) = (
        s["name"].as_str(),
        s["imageRef"].as_str(),
        s["flavorRef"].as_str(),
    ) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "name, imageRef and flavorRef are required",
        );
    };
    let image = shared
        .cloud
        .with(region, |r| r.images.get(image_ref).cloned());
    let Some(image) = image.filter(|i| i.status() == "active") else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!("Image {image_ref} could not be found."),
        );
    };
    if let Err(refusal) = flavor_fits(flavor, &image) {
        return *refusal;
    }
    let id = new_id();
    let server = Server {
        id: id.clone(),
        name: name.to_string(),
        image_id: image.id.clone(),
        flavor: flavor.to_string(),
        boot_from_volume: false,
        created: SystemTime::now(),
        ready_at: Instant::now() + shared.timing.build,
        imaging_until: None,
        disk: image.disk.clone(),
    };
    shared
        .cloud
        .with(region, |r| r.servers.insert(id.clone(), server));
    shared.stats.created("server", format!("{region}/{name}"));
    if image.properties.get("vm_mode").is_none_or(|m| m.is_empty()) {
        // XenServer starts a VHD image without vm_mode as PV: a PVHVM guest then fails in its
        // bootloader while Nova reports ACTIVE (support-how-to, preparing an image for import;
        // nova `nova/virt/xenapi/vm_utils.py` `determine_vm_mode`). The server goes ACTIVE; the
        // stats record that its guest never ran.
        shared.stats.unbootable(format!("{region}/{name}"));
    }
    let location = format!("{base}/servers/{id}");
    let body = json!({"server": {
        "id": id, "OS-DCF:diskConfig": "MANUAL", "adminPass": "Sim-Pass-1234",
        "links": [{"href": location, "rel": "self"}],
    }});
    let mut resp = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn action(shared: &Shared, region: &str, id: &str, body: &[u8], base: &str) -> Response {
    let owner = shared.tenant_of(region);
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Malformed request body",
        );
    };
    let Some(name) = req["createImage"]["name"].as_str() else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Unsupported action; only createImage is simulated",
        );
    };
    let now = Instant::now();
    // The closure returns the refusal as text; the lock is released before responses are built.
    let outcome: Result<String, Option<String>> = shared.cloud.with(region, |r| {
        let server = r.servers.get_mut(id).ok_or(None)?;
        if server.status() != "ACTIVE" {
            return Err(Some(format!(
                "Cannot 'createImage' instance {id} while it is in vm_state building"
            )));
        }
        if let Some(state) = server.task_state() {
            return Err(Some(format!(
                "Cannot 'createImage' instance {id} while it is in task_state {state}"
            )));
        }
        if server.flavor.starts_with("onmetal") {
            return Err(Some(ONMETAL.to_string()));
        }
        let until = now + shared.timing.imaging;
        server.imaging_until = Some((now, until));
        let base = r.images.get(&server.image_id);
        let options = base.map_or_else(|| "0".to_string(), |b| b.options.clone());
        let virtual_size = base.map_or_else(|| server.disk.len(), |b| b.virtual_size);
        let (min_disk, min_ram) = base.map_or((0, 0), |b| (b.min_disk, b.min_ram));
        // Nova copies the base image's properties into a snapshot.
        let properties = base.map(|b| b.properties.clone()).unwrap_or_default();
        let image = Image {
            id: new_id(),
            name: name.to_string(),
            created: SystemTime::now(),
            created_at: now,
            ready_at: until,
            disk: server.disk.clone(),
            origin: Origin::Snapshot,
            instance_uuid: Some(id.to_string()),
            checksum: None,
            // A snapshot belongs to the account that took it.
            owner: owner.to_string(),
            options,
            volume_backed: server.boot_from_volume,
            virtual_size,
            min_disk,
            min_ram,
            properties,
        };
        let image_id = image.id.clone();
        r.images.insert(image_id.clone(), image);
        Ok(image_id)
    });
    match outcome {
        Err(None) => not_found("Instance"),
        Err(Some(m)) if m == ONMETAL => fault(StatusCode::BAD_REQUEST, "badRequest", ONMETAL),
        Err(Some(busy)) => fault(StatusCode::CONFLICT, "conflictingRequest", &busy),
        Ok(image_id) => {
            shared.stats.created("snapshot", format!("{region}/{name}"));
            let mut resp = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/images/{image_id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
    }
}
