//! Cloud Images (Glance v2) as the simulator serves it: images get, list (`?name=`) and delete;
//! tasks create, get and list (filtered by type and status); exports written as DLO segments of the
//! image's real VHD; imports that read the object (following DLO and SLO manifests), validate it with
//! imgferry's own validator and either create an active image or fail with the documented code
//! (rackerlabs/docs-cloud-images `api-docs/api-reference/methods/`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::cloud::{Image, Origin, Task, new_id, timestamp};
use super::compute::fault;
use super::disk::Disk;
use crate::vhd::{self, ImportCode, Policy};

/// Serves `/{region}/images/v2/{rest}`.
pub fn handle(
    shared: &Arc<Shared>,
    region: &str,
    method: &Method,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    match (method, rest) {
        (&Method::GET, ["images"]) => list_images(shared, region, query),
        (&Method::GET, ["images", id]) => shared
            .cloud
            .with(region, |r| r.images.get(*id).map(image_json))
            .map_or_else(|| not_found("Image"), |v| axum::Json(v).into_response()),
        (&Method::DELETE, ["images", id]) => match shared.cloud.with(region, |r| r.images.remove(*id)) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found("Image"),
        },
        (&Method::POST, ["tasks"]) => create_task(shared, region, body),
        (&Method::GET, ["tasks"]) => list_tasks(shared, region, query),
        (&Method::GET, ["tasks", id]) => shared
            .cloud
            .with(region, |r| r.tasks.get(*id).map(task_json))
            .map_or_else(|| not_found("Task"), |v| axum::Json(v).into_response()),
        (&Method::GET, ["versions"] | []) => axum::Json(json!({"versions": [{"id": "v2.2", "status": "CURRENT",
            "links": [{"rel": "self", "href": format!("{}/", shared.images_url(region))}]}]}))
        .into_response(),
        (&Method::GET, ["schemas", "image"]) => axum::Json(image_schema()).into_response(),
        (&Method::GET, ["schemas", "images"]) => {
            axum::Json(json!({"name": "images", "properties": {"images": {"type": "array", "items": image_schema()}}}))
                .into_response()
        }
        (&Method::GET, ["schemas", "task"]) => axum::Json(task_schema()).into_response(),
        (&Method::GET, ["schemas", "tasks"]) => {
            axum::Json(json!({"name": "tasks", "properties": {"tasks": {"type": "array", "items": task_schema()}}}))
                .into_response()
        }
        _ => not_found("Resource"),
    }
}

fn not_found(what: &str) -> Response {
    // Glance answers 404 with a short plain-text page, not JSON.
    (
        StatusCode::NOT_FOUND,
        format!("404 Not Found\n\nThe resource could not be found.\n\n {what} not found"),
    )
        .into_response()
}

fn image_json(i: &Image) -> Value {
    let mut v = json!({
        "id": i.id, "name": i.name, "status": i.status(), "visibility": "private", "protected": false,
        "tags": [], "created_at": timestamp(i.created), "updated_at": timestamp(SystemTime::now()),
        "file": format!("/v2/images/{}/file", i.id), "self": format!("/v2/images/{}", i.id),
        "schema": "/v2/schemas/image", "container_format": "ovf", "disk_format": "vhd",
        "size": i.disk.len(), "min_disk": i.min_disk, "min_ram": i.min_ram, "owner": i.owner,
        "com.rackspace__1__options": i.options,
        "image_type": match i.origin { Origin::Base => "base", Origin::Snapshot => "snapshot", Origin::Imported => "import" },
    });
    if let Some(server) = &i.instance_uuid {
        v["instance_uuid"] = json!(server);
    }
    if let Some(sum) = &i.checksum {
        v["checksum"] = json!(sum);
    }
    for (k, val) in &i.properties {
        v[k.as_str()] = json!(val);
    }
    v
}

/// Attributes Glance manages itself: a JSON patch that touches one is refused with 403.
const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "created_at",
    "updated_at",
    "file",
    "self",
    "schema",
    "size",
    "virtual_size",
    "checksum",
    "container_format",
    "disk_format",
    "direct_url",
    "instance_uuid",
];

/// What Rackspace reserves: add and replace are refused with 403 (openstack-archive/cloudroast
/// `cloudroast/glance/generators.py` `UpdateAddRemoveImageRestricted`, "Properties that are
/// reserved"; `visibility` is "unauthorized" there). `tags` and `protected` are settable in the
/// real service but have their own shapes; the simulator refuses them (stricter, never used here).
const RESERVED: &[&str] = &[
    "image_type",
    "location",
    "locations",
    "os_type",
    "owner",
    "user_id",
    "visibility",
    "tags",
    "protected",
];

/// Upstream Glance's default `image_property_quota`: more additional properties are refused with
/// 413 (glance `doc/source/admin/useful-image-properties.rst`). Rackspace's own value is not
/// published; the simulator uses the upstream default.
pub const PROPERTY_QUOTA: usize = 128;

/// `PATCH /v2/images/{id}` with `application/openstack-images-v2.1-json-patch` (Glance v2):
/// `add` of an existing property is 409, `replace` or `remove` of a missing one is 409, a
/// read-only or reserved attribute or a protected `com.rackspace*` property is 403, `min_disk` and
/// `min_ram` take integers, paths are RFC 6901 JSON pointers (`~1` is `/`, `~0` is `~`), and more
/// than [`PROPERTY_QUOTA`] additional properties is 413. Without a customer-admin role, 403.
pub fn patch(
    shared: &Arc<Shared>,
    region: &str,
    rest: &[&str],
    content_type: &str,
    body: &[u8],
) -> Response {
    let ["images", id] = rest else {
        return not_found("Resource");
    };
    if !content_type.starts_with("application/openstack-images-v2.1-json-patch") {
        return fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedMediaType",
            "Unsupported Content-Type",
        );
    }
    if !shared.may_manage_images(region) {
        return fault(StatusCode::FORBIDDEN, "forbidden", NOT_ADMIN);
    }
    let Ok(ops) = serde_json::from_slice::<Vec<Value>>(body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Malformed JSON patch",
        );
    };
    let outcome = shared.cloud.with(region, |r| {
        let image = r
            .images
            .get_mut(*id)
            .ok_or((StatusCode::NOT_FOUND, "Image not found".to_string()))?;
        let mut edited = image.clone();
        for op in &ops {
            apply_op(&mut edited, op)?;
        }
        if edited.properties.len() > PROPERTY_QUOTA {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The limit has been exceeded on the number of allowed image properties. \
                     Attempted: {}, Maximum: {PROPERTY_QUOTA}",
                    edited.properties.len()
                ),
            ));
        }
        *image = edited;
        Ok(image_json(image))
    });
    match outcome {
        Ok(v) => axum::Json(v).into_response(),
        Err((status, message)) => fault(status, "error", &message),
    }
}

/// What a customer without the admin roles is told (the exact text is not documented).
pub const NOT_ADMIN: &str =
    "You are not authorized to complete this action (a customer admin role is required)";

/// An RFC 6901 JSON pointer with one reference token: `/name`, with `~1` for `/` and `~0` for `~`.
fn pointer_key(path: &str) -> Option<String> {
    let token = path.strip_prefix('/')?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    let mut key = String::new();
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => key.push('~'),
                Some('1') => key.push('/'),
                _ => return None,
            }
        } else {
            key.push(c);
        }
    }
    Some(key)
}

fn apply_op(image: &mut Image, op: &Value) -> Result<(), (StatusCode, String)> {
    let path = op["path"].as_str().unwrap_or("");
    let Some(key) = pointer_key(path) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("Invalid JSON pointer: {path}"),
        ));
    };
    if READ_ONLY.contains(&key.as_str()) || key == "name" && op["op"] == "remove" {
        return Err((
            StatusCode::FORBIDDEN,
            format!("Attribute '{key}' is read-only."),
        ));
    }
    if RESERVED.contains(&key.as_str()) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("Attribute '{key}' is reserved."),
        ));
    }
    if key.starts_with("com.rackspace") {
        return Err((
            StatusCode::FORBIDDEN,
            format!("Property '{key}' is protected"),
        ));
    }
    if key == "min_disk" || key == "min_ram" {
        let (Some("add" | "replace"), Some(n)) = (op["op"].as_str(), op["value"].as_u64()) else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Invalid value for '{key}': an integer is required"),
            ));
        };
        if key == "min_disk" {
            image.min_disk = n;
        } else {
            image.min_ram = n;
        }
        return Ok(());
    }
    if key == "name" {
        let (Some("add" | "replace"), Some(n)) = (op["op"].as_str(), op["value"].as_str()) else {
            return Err((StatusCode::BAD_REQUEST, "Invalid value for 'name'".into()));
        };
        image.name = n.to_string();
        return Ok(());
    }
    let props = &mut image.properties;
    let value = op["value"].as_str().map(str::to_string);
    match (op["op"].as_str(), value) {
        (Some("add"), Some(v)) if !props.contains_key(&key) => {
            props.insert(key, v);
        }
        (Some("add"), Some(_)) => {
            return Err((
                StatusCode::CONFLICT,
                format!("Property {key} already present."),
            ));
        }
        (Some("replace"), Some(v)) if props.contains_key(&key) => {
            props.insert(key, v);
        }
        (Some("remove"), _) if props.remove(&key).is_some() => {}
        (Some("replace" | "remove"), _) => {
            return Err((
                StatusCode::CONFLICT,
                format!("Property {key} does not exist."),
            ));
        }
        _ => return Err((StatusCode::BAD_REQUEST, "Invalid operation".to_string())),
    }
    Ok(())
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn list_images(shared: &Shared, region: &str, query: &[(String, String)]) -> Response {
    let name = param(query, "name");
    let status = param(query, "status");
    let images: Vec<Value> = shared.cloud.with(region, |r| {
        r.images
            .values()
            .filter(|i| name.is_none_or(|n| i.name == n) && status.is_none_or(|s| i.status() == s))
            .map(image_json)
            .collect()
    });
    axum::Json(json!({"images": images, "first": "/v2/images", "schema": "/v2/schemas/images"}))
        .into_response()
}

fn task_json(t: &Task) -> Value {
    let mut v = json!({
        "id": t.id, "type": t.kind, "status": t.status, "input": t.input, "result": t.result,
        "message": t.message, "owner": super::TENANT,
        "created_at": timestamp(t.created), "updated_at": timestamp(t.updated),
        "self": format!("/v2/tasks/{}", t.id), "schema": "/v2/schemas/task",
    });
    if matches!(t.status, "success" | "failure") {
        v["expires_at"] = json!(timestamp(
            t.updated + std::time::Duration::from_secs(48 * 3600)
        ));
    }
    v
}

/// A permissive image schema: python-glanceclient builds its model from it, and Rackspace images
/// carry many extra properties, so extra properties are allowed.
fn image_schema() -> Value {
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            // Server-set fields are readOnly, as in upstream Glance; glanceclient makes CLI options
            // from the others, and a writable `file` would clash with its own --file.
            "id": {"type": "string"}, "name": {"type": ["null", "string"]},
            "status": {"type": "string", "readOnly": true},
            "visibility": {"type": "string"}, "protected": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "string", "readOnly": true}, "updated_at": {"type": "string", "readOnly": true},
            "file": {"type": "string", "readOnly": true}, "self": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true}, "container_format": {"type": ["null", "string"]},
            "disk_format": {"type": ["null", "string"]}, "size": {"type": ["null", "integer"], "readOnly": true},
            "checksum": {"type": ["null", "string"], "readOnly": true}, "min_disk": {"type": "integer"},
            "min_ram": {"type": "integer"}, "owner": {"type": ["null", "string"]},
            "instance_uuid": {"type": "string"}, "image_type": {"type": "string"},
        },
    })
}

fn task_schema() -> Value {
    json!({
        "name": "task",
        "properties": {
            "id": {"type": "string"}, "type": {"type": "string", "enum": ["import", "export"]},
            "status": {"type": "string", "enum": ["pending", "processing", "success", "failure"]},
            "input": {"type": ["null", "object"]}, "result": {"type": ["null", "object"]},
            "owner": {"type": "string"}, "message": {"type": "string"},
            "expires_at": {"type": ["null", "string"]}, "created_at": {"type": "string"},
            "updated_at": {"type": "string"}, "self": {"type": "string"}, "schema": {"type": "string"},
        },
    })
}

fn list_tasks(shared: &Shared, region: &str, query: &[(String, String)]) -> Response {
    let kind = param(query, "type");
    // Upstream Glance (glance/api/v2/tasks.py, `_get_filters`) refuses any type filter but
    // `import`; Rackspace does not document lifting that, so neither does the simulator.
    if let Some(k) = kind.filter(|k| *k != "import") {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!("Invalid type value: {k}"),
        );
    }
    let status = param(query, "status");
    let mut tasks: Vec<(SystemTime, Value)> = shared.cloud.with(region, |r| {
        r.tasks
            .values()
            .filter(|t| kind.is_none_or(|k| t.kind == k) && status.is_none_or(|s| t.status == s))
            .map(|t| {
                // List entries omit input, result and message, as upstream's partial schema does.
                let v = json!({"id": t.id, "type": t.kind, "status": t.status, "owner": super::TENANT,
                    "created_at": timestamp(t.created), "updated_at": timestamp(t.updated),
                    "self": format!("/v2/tasks/{}", t.id), "schema": "/v2/schemas/task"});
                (t.created, v)
            })
            .collect()
    });
    tasks.sort_by_key(|t| std::cmp::Reverse(t.0));
    let tasks: Vec<Value> = tasks.into_iter().map(|(_, v)| v).collect();
    axum::Json(json!({"tasks": tasks, "first": "/v2/tasks", "schema": "/v2/schemas/tasks"}))
        .into_response()
}

fn create_task(shared: &Arc<Shared>, region: &str, body: &[u8]) -> Response {
    // Tasks need a customer-admin role (Cloud Images FAQ: identity:user-admin, admin or
    // cloudImages:admin).
    if !shared.may_manage_images(region) {
        return fault(StatusCode::FORBIDDEN, "forbidden", NOT_ADMIN);
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Malformed request body",
        );
    };
    let kind = match req["type"].as_str() {
        Some("export") => "export",
        Some("import") => "import",
        _ => return fault(StatusCode::BAD_REQUEST, "badRequest", "Invalid task type"),
    };
    if !req["input"].is_object() {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Task input must be an object",
        );
    }
    let now = SystemTime::now();
    let task = Task {
        id: new_id(),
        kind,
        status: "pending",
        input: req["input"].clone(),
        result: None,
        message: String::new(),
        created: now,
        updated: now,
    };
    let view = task_json(&task);
    let id = task.id.clone();
    shared
        .cloud
        .with(region, |r| r.tasks.insert(id.clone(), task));
    shared
        .stats
        .created(&format!("{kind}_task"), format!("{region}/{id}"));
    let shared = Arc::clone(shared);
    let region = region.to_string();
    tokio::spawn(async move { run_task(shared, region, id).await });
    (StatusCode::CREATED, axum::Json(view)).into_response()
}

fn set_task(shared: &Shared, region: &str, id: &str, f: impl FnOnce(&mut Task)) {
    shared.cloud.with(region, |r| {
        if let Some(t) = r.tasks.get_mut(id) {
            f(t);
            t.updated = SystemTime::now();
        }
    });
}

/// pending for half the task time, processing while the work runs (and at least the other half),
/// then success or failure.
async fn run_task(shared: Arc<Shared>, region: String, id: String) {
    let started = Instant::now();
    tokio::time::sleep(shared.timing.task / 2).await;
    set_task(&shared, &region, &id, |t| t.status = "processing");
    let Some((kind, input)) = shared.cloud.with(&region, |r| {
        r.tasks.get(&id).map(|t| (t.kind, t.input.clone()))
    }) else {
        return;
    };
    let outcome = if kind == "export" {
        super::export::export(&shared, &region, &input).await
    } else {
        import(&shared, &region, &input).await
    };
    let left = shared.timing.task.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    set_task(&shared, &region, &id, |t| match outcome {
        Ok(result) => {
            t.status = "success";
            t.result = Some(result);
            // Rackspace's 2015 tests expect an empty message on success (cloudcafe
            // `glance/behaviors.py` `validate_task`; the 2014 docs showed "None").
            t.message = String::new();
        }
        Err(message) => {
            t.status = "failure";
            t.message = message;
        }
    });
}

/// Reads the object, validates it as Rackspace's import would, and creates the image.
async fn import(shared: &Shared, region: &str, input: &Value) -> Result<Value, String> {
    let location = input["import_from"].as_str().unwrap_or_default();
    let props = input["image_properties"].as_object();
    let Some(name) = props.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Err("Invalid input: image_properties.name is required".into());
    };
    if props.is_some_and(|p| p.len() > 1) {
        // openstack-archive/cloudcafe `cloudcafe/glance/common/constants.py`.
        return Err(
            "Unsupported element in image_properties, please consult the documentation.".into(),
        );
    }
    if input["import_from_format"]
        .as_str()
        .is_some_and(|f| f != "vhd")
    {
        return Err("Invalid input: import_from_format must be vhd".into());
    }
    let not_found = || "Image not found for import. Possible invalid location".to_string();
    let (container, object) = location.split_once('/').ok_or_else(not_found)?;
    let files = shared.files(region);
    let source = files
        .open(region, container, object)
        .await?
        .ok_or_else(not_found)?;
    if let Some(code) = shared.faults.take_import_failure() {
        return Err(coded_message(code));
    }
    let report = vhd::validate(&source, &Policy::default())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(code) = report.verdict.code {
        return Err(coded_message(code));
    }
    let id = new_id();
    let dir = shared
        .store
        .spool_dir(region)
        .parent()
        .map(|p| p.join("images"))
        .unwrap_or_default();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let path = dir.join(format!("{id}.vhd"));
    let (len, md5) = source.copy_to(&path).await?;
    let now = Instant::now();
    let image = Image {
        id: id.clone(),
        name: name.to_string(),
        created: SystemTime::now(),
        created_at: now,
        ready_at: now,
        disk: Disk::File { path, len },
        origin: Origin::Imported,
        instance_uuid: None,
        checksum: Some(md5),
        owner: shared.tenant_of(region).to_string(),
        options: "0".into(),
        volume_backed: false,
        virtual_size: report.virtual_size.as_ref().map_or(len, |v| v.bytes),
        min_disk: 0,
        min_ram: 0,
        // An import keeps only the name it was given, and the service presets some properties of
        // its own. Which ones is not documented; cloudroast's filters of imported images use
        // these (`cloudroast/glance/generators.py` `ListImagesFilters`).
        properties: [
            ("auto_disk_config", "False"),
            ("os_type", "linux"),
            ("user_id", "10001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    shared
        .cloud
        .with(region, |r| r.images.insert(id.clone(), image));
    shared
        .stats
        .created("imported_image", format!("{region}/{name}"));
    Ok(json!({"image_id": id}))
}

/// The failure message of a rejected import: Rackspace documents the code, not the exact wording,
/// so clients must find the number (rackerlabs/rackspace-how-to `content/cloud-images/cloud-images-faq.md` and rackerlabs/docs-cloud-images `api-docs/api-reference/methods/post-task-to-import-image-tasks.rst`).
pub fn coded_message(code: ImportCode) -> String {
    format!(
        "{}: The image cannot be imported. {}.",
        code.number(),
        capitalise(code.meaning())
    )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
