//! Changes to an image after its creation on the OpenStack side: JSON patches, and the
//! `glance-direct` import of staged data, as real Glance 33 answers them.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    IMPORT_METHODS, Image, OpenStack, READ_ONLY, Shared, accepts, error, inspect, uuid_like,
};

/// `PATCH /v2/images/{id}` (a JSON patch): `add`, `replace` and `remove` of a property, and of
/// `/tags` whole. As Glance 33 answers: `add` of an existing property replaces it (200); a
/// path into a list (`/tags/-`) is 400; a read-only attribute 403; removing a missing property
/// 409. Nothing is applied unless every operation is.
pub(super) fn patch(os: &OpenStack, id: &str, body: &[u8]) -> Response {
    let Ok(Value::Array(ops)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "Body is not a JSON patch");
    };
    let mut images = os.images.lock().unwrap_or_else(|e| e.into_inner());
    let Some(image) = images.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "No image found");
    };
    let mut record = image.record.clone();
    for op in &ops {
        let (Some(kind), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "Operation objects must contain op and path",
            );
        };
        let key = path.trim_start_matches('/');
        if key.is_empty() || key.contains('/') {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid JSON pointer for this resource: '{path}'"),
            );
        }
        if READ_ONLY.contains(&key) || key.starts_with("os_glance") {
            return error(
                StatusCode::FORBIDDEN,
                &format!("Attribute '{key}' is read-only."),
            );
        }
        match kind {
            "add" | "replace" => {
                if kind == "replace" && !record.contains_key(key) {
                    return error(
                        StatusCode::CONFLICT,
                        &format!("Property {key} does not exist."),
                    );
                }
                record.insert(key.to_string(), op["value"].clone());
            }
            "remove" if record.remove(key).is_some() => {}
            "remove" => {
                return error(
                    StatusCode::CONFLICT,
                    &format!("Property {key} does not exist."),
                );
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid operation: {kind}"),
                );
            }
        }
    }
    image.record = record.clone();
    axum::Json(Value::Object(record)).into_response()
}

/// `POST /v2/images/{id}/import` with `glance-direct`: answered 202 with the image `importing`;
/// a moment later the staged data is inspected as an upload would be. Data that is not its
/// declared format leaves the image `importing` for good, with `os_glance_failed_import` naming
/// the store and a failed task, as real Glance 33 does.
pub(super) fn import(
    shared: &std::sync::Arc<Shared>,
    id: &str,
    image: &Image,
    body: &[u8],
) -> Response {
    let method = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["method"]["name"].as_str().map(str::to_string));
    let Some(method) = method.filter(|m| IMPORT_METHODS.contains(&m.as_str())) else {
        return error(StatusCode::BAD_REQUEST, "Import method is not valid");
    };
    if method != "glance-direct" {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Import method {method} is not simulated"),
        );
    }
    let status = image
        .record
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (status, &image.staged) {
        ("uploading", Some(_)) => {}
        ("queued" | "uploading", _) => {
            return error(
                StatusCode::CONFLICT,
                "Image needs to be staged before 'glance-direct' method can be used",
            );
        }
        _ => {
            return error(
                StatusCode::CONFLICT,
                &format!("Image with status {status} cannot be target for import"),
            );
        }
    }
    if let Some(i) = shared
        .openstack
        .images
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(id)
    {
        i.tasks.push(import_task(id, "processing", ""));
        i.record.insert("status".into(), json!("importing"));
        i.record
            .insert("os_glance_importing_to_stores".into(), json!("local"));
    }
    let (shared, id, image) = (std::sync::Arc::clone(shared), id.to_string(), image.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        run_import(&shared.openstack, &id, &image).await;
    });
    StatusCode::ACCEPTED.into_response()
}

/// An import task as `GET /v2/images/{id}/tasks` lists it.
fn import_task(id: &str, state: &str, message: &str) -> Value {
    json!({"id": uuid_like(&format!("task{id}")), "type": "api_image_import", "status": state,
        "message": message, "image_id": id, "input": {"image_id": id,
        "import_req": {"method": {"name": "glance-direct"}}, "backend": ["local"]}})
}

/// The import itself: the staged data inspected as an upload is; `active` with its digests, or
/// `importing` for good with the store named in `os_glance_failed_import` and a failed task.
async fn run_import(os: &OpenStack, id: &str, image: &Image) {
    let declared = image
        .record
        .get("disk_format")
        .and_then(Value::as_str)
        .unwrap_or("raw");
    let Some((md5, sha512, head)) = image.staged.clone() else {
        return;
    };
    let faulted = os
        .fail_imports
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    let staged = os.dir.join(format!("{id}.staged"));
    let moved = !faulted
        && accepts(declared, inspect(&head))
        && tokio::fs::rename(&staged, os.dir.join(id)).await.is_ok();
    let mut images = os.images.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = images.get_mut(id) else {
        return;
    };
    i.tasks.pop();
    i.record
        .insert("os_glance_importing_to_stores".into(), json!(""));
    if moved {
        let size = i.record.get("size").and_then(Value::as_u64).unwrap_or(0);
        i.tasks.push(import_task(
            id,
            "success",
            &format!("Copied {} MiB", size >> 20),
        ));
        for (k, v) in [
            ("status", json!("active")),
            ("checksum", json!(md5)),
            ("os_hash_algo", json!("sha512")),
            ("os_hash_value", json!(sha512)),
            ("os_glance_failed_import", json!("")),
        ] {
            i.record.insert(k.into(), v);
        }
    } else {
        i.tasks.push(import_task(
            id,
            "failure",
            "Task failed due to Internal Error",
        ));
        i.record
            .insert("os_glance_failed_import".into(), json!("local"));
    }
}
