//! Cloud Servers (Nova v2) as the simulator serves it: servers create, get, list (with `?name=`),
//! detail and delete; the createImage action with the `Location` header; BUILD → ACTIVE; 409
//! `conflictingRequest` while a server is imaging (reference/rackspace-api.md §2).

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
                r.servers.get(*id).map(|s| server_json(s, &base, true))
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
        _ => not_found("Resource"),
    }
}

fn server_json(s: &Server, base: &str, detail: bool) -> Value {
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
        "image": {"id": s.image_id}, "flavor": {"id": s.flavor},
        "addresses": addresses, "accessIPv4": if status == "ACTIVE" { "203.0.113.10" } else { "" },
        "created": timestamp(s.created), "updated": timestamp(SystemTime::now()),
        "tenant_id": super::TENANT, "user_id": "10001", "links": links,
    })
}

fn list(
    shared: &Shared,
    region: &str,
    query: &[(String, String)],
    base: &str,
    detail: bool,
) -> Response {
    let name = query
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let servers: Vec<Value> = shared.cloud.with(region, |r| {
        r.servers
            .values()
            .filter(|s| name.is_none_or(|n| s.name.contains(n)))
            .map(|s| server_json(s, base, detail))
            .collect()
    });
    axum::Json(json!({ "servers": servers })).into_response()
}

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
    let id = new_id();
    let server = Server {
        id: id.clone(),
        name: name.to_string(),
        image_id: image.id,
        flavor: flavor.to_string(),
        created: SystemTime::now(),
        ready_at: Instant::now() + shared.timing.build,
        imaging_until: None,
        disk: image.disk,
    };
    shared
        .cloud
        .with(region, |r| r.servers.insert(id.clone(), server));
    shared.stats.created("server", format!("{region}/{name}"));
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
        let until = now + shared.timing.imaging;
        server.imaging_until = Some((now, until));
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
        };
        let image_id = image.id.clone();
        r.images.insert(image_id.clone(), image);
        Ok(image_id)
    });
    match outcome {
        Err(None) => not_found("Instance"),
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
