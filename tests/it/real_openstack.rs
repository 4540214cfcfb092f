//! imgferry's OpenStack clients against real upstream Keystone 30 and Glance 33 on loopback
//! (`scripts/openstack-loopback.sh`, started by `.ci/run`, which sets `IMGFERRY_KEYSTONE_URL`):
//! Keystone v3 logins, the catalog, and Glance taking a VHD converted to qcow2 on the way —
//! accepted by its format inspection, stored with the sha512 imgferry computed, and identical
//! to the VHD per `qemu-img compare`. Skipped with a printed reason when the services are not
//! running outside CI.

use futures::StreamExt;
use imgferry::api::glance::{Glance, UploadError};
use imgferry::api::keystone::{self, Credentials, Domain, Project};
use imgferry::api::{Error, JsonService, auth::Auth};
use imgferry::http::RetryConfig;
use imgferry::vhd::build::{Builder, Kind, Style};
use sha2::{Digest, Sha512};

use crate::support::{MIB, qcow2_of, qemu_img, service_url};

/// The loopback Keystone and Glance keep their data in sqlite, which refuses a second writer now
/// and then ("database is locked", answered as a 500) when requests overlap; a production Glance
/// runs on MySQL or PostgreSQL. So the tests against them take turns: each holds this while it
/// talks to them.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn keystone_url() -> Option<String> {
    service_url(
        "IMGFERRY_KEYSTONE_URL",
        "export IMGFERRY_KEYSTONE_URL=$(scripts/openstack-loopback.sh start 18500)",
    )
}

fn password(user: &str, project: &str) -> Credentials {
    Credentials::Password {
        username: user.into(),
        user_domain: Domain::Name("Default".into()),
        password: format!("{user}-secret"),
        project: Project::Name {
            name: project.into(),
            domain: Domain::Id("default".into()),
        },
    }
}

async fn glance_as(url: &str, creds: &Credentials) -> Glance {
    let http = reqwest::Client::new();
    let session = keystone::authenticate(&http, url, creds, &RetryConfig::default())
        .await
        .unwrap();
    let base = session
        .endpoint("image", "public", Some("RegionOne"))
        .unwrap();
    Glance::new(JsonService::new(
        http,
        &base,
        Auth::fixed(&session.token),
        RetryConfig::default(),
    ))
}

/// The bytes as a streamed body of 256 KiB chunks (no Content-Length: chunked, as a pipelined
/// upload sends them).
fn streamed(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(256 << 10).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks).boxed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_v3_logs_in_by_password_and_application_credential_and_finds_glance() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let http = reqwest::Client::new();
    let retry = RetryConfig::default();
    let s = keystone::authenticate(&http, &url, &password("alice", "alpha"), &retry)
        .await
        .unwrap();
    assert!(s.roles.iter().any(|r| r == "member"), "{:?}", s.roles);
    assert!(s.expires.is_some());
    let image = s.endpoint("image", "public", Some("regionone")).unwrap();
    assert!(image.starts_with("http://127.0.0.1:"), "{image}");
    let unknown = s
        .endpoint("image", "public", Some("RegionTwo"))
        .unwrap_err();
    assert!(unknown.contains("RegionOne"), "{unknown}");
    // A wrong password: refused with the status, and the password never shown.
    let mut wrong = password("alice", "alpha");
    if let Credentials::Password { password, .. } = &mut wrong {
        *password = "not-alices-password-123".into();
    }
    match keystone::authenticate(&http, &url, &wrong, &retry).await {
        Err(e @ Error::LoginRefused { status: 401, .. }) => {
            assert!(!e.to_string().contains("not-alices-password"), "{e}");
        }
        other => panic!("expected a refused login, got {other:?}"),
    }
    // An application credential of alice's, then a login with it alone.
    let made: serde_json::Value = http
        .post(format!(
            "{url}/users/{}/application_credentials",
            s.user_id.clone().unwrap()
        ))
        .header("X-Auth-Token", &s.token)
        // Names are unique per user, and the services outlive one test run.
        .json(&serde_json::json!({"application_credential": {
            "name": format!("imgferry-test-{}", std::process::id())}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cred = &made["application_credential"];
    let app = Credentials::ApplicationCredential {
        id: cred["id"].as_str().unwrap().into(),
        secret: cred["secret"].as_str().unwrap().into(),
    };
    let by_app = keystone::authenticate(&http, &url, &app, &retry)
        .await
        .unwrap();
    assert_eq!(by_app.project_id, s.project_id);
    assert!(by_app.endpoint("image", "public", None).is_ok());
    // The same logins from a clouds.yaml, read as openstacksdk reads it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clouds.yaml"),
        format!(
            "clouds:\n  lab:\n    auth:\n      auth_url: {url}\n      username: bob\n      \
             password: bob-secret\n      project_name: beta\n      user_domain_name: Default\n      \
             project_domain_id: default\n    region_name: RegionOne\n  lab-app:\n    auth_type: \
             v3applicationcredential\n    auth:\n      auth_url: {url}\n      \
             application_credential_id: {}\n      application_credential_secret: {}\n",
            cred["id"].as_str().unwrap(),
            cred["secret"].as_str().unwrap()
        ),
    )
    .unwrap();
    let none = |_: &str| None;
    let lookup = imgferry::profiles::Lookup {
        profile: None,
        os_cloud: None,
        env: &none,
        home: Some(dir.path().to_path_buf()),
        cwd: dir.path().to_path_buf(),
    };
    for name in ["lab", "lab-app"] {
        let cloud = imgferry::clouds::resolve(&lookup, name).unwrap();
        let s = keystone::authenticate(&http, &cloud.auth_url, &cloud.credentials, &retry)
            .await
            .unwrap();
        s.endpoint("image", &cloud.interface, cloud.region.as_deref())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhd_converted_on_the_way_is_taken_by_real_glance_as_qcow2_and_reads_back_identical() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    converted_upload(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_glance_takes_the_converted_vhd_as_real_glance_does() {
    let sim = imgferry::sim::spawn(imgferry::sim::SimConfig::default())
        .await
        .unwrap();
    converted_upload(&sim.keystone_url()).await;
}

async fn converted_upload(url: &str) {
    let url = url.to_string();
    let glance = glance_as(&url, &password("alice", "alpha")).await;
    // XenServer-style, blocks out of order in the file, across two L2 tables of the qcow2.
    let vhd = Builder::new(Kind::Dynamic, Style::XenServer, 600 * MIB)
        .random_block(290, 1)
        .random_block(0, 2)
        .block(100, 0x42)
        .build()
        .bytes;
    let qcow2 = qcow2_of(&vhd);
    let sha512 = hex::encode(Sha512::digest(&qcow2));
    let mut props = serde_json::Map::new();
    let tag = format!("m-conformance-{}", std::process::id());
    props.insert("imgferry_migration".into(), tag.clone().into());
    props.insert("os_distro".into(), "ubuntu".into());
    let image = glance.create("converted", "qcow2", &props).await.unwrap();
    assert_eq!(image.status, "queued");
    glance
        .upload(&image.id, streamed(qcow2.clone()), "qcow2")
        .await
        .unwrap();
    let stored = glance.get(&image.id).await.unwrap().unwrap();
    assert_eq!(stored.status, "active");
    assert_eq!(stored.size, Some(qcow2.len() as u64));
    assert_eq!(stored.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(stored.os_hash_value.as_deref(), Some(sha512.as_str()));
    assert_eq!(stored.rest["os_distro"], "ubuntu");
    // Found again by the property a resumed run would look for.
    let found = glance.find("imgferry_migration", &tag).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, image.id);
    // Ranged reads of the stored data: 206 with the bytes asked for.
    let ranged = glance
        .service
        .http
        .get(glance.service.url(&format!("v2/images/{}/file", image.id)))
        .header("X-Auth-Token", glance.service.auth.token())
        .header("Range", "bytes=65536-131071")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &qcow2[65536..131072]);
    // What Glance stored is the VHD's disk, per qemu-img.
    if qemu_img().is_some() {
        let dir = tempfile::tempdir().unwrap();
        let whole = glance
            .service
            .http
            .get(glance.service.url(&format!("v2/images/{}/file", image.id)))
            .header("X-Auth-Token", glance.service.auth.token())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(dir.path().join("from-glance.qcow2"), &whole).unwrap();
        std::fs::write(dir.path().join("source.vhd"), &vhd).unwrap();
        let out = std::process::Command::new("qemu-img")
            .args([
                "compare",
                "-f",
                "vpc",
                "-F",
                "qcow2",
                "source.vhd",
                "from-glance.qcow2",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    glance.delete(&image.id).await.unwrap();
    assert!(glance.get(&image.id).await.unwrap().is_none());
    glance.delete(&image.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_glance_refuses_bytes_that_are_not_the_declared_format() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    format_refusals(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_glance_refuses_what_real_glance_refuses() {
    let sim = imgferry::sim::spawn(imgferry::sim::SimConfig::default())
        .await
        .unwrap();
    format_refusals(&sim.keystone_url()).await;
}

async fn format_refusals(url: &str) {
    let glance = glance_as(url, &password("bob", "beta")).await;
    let fixed = Builder::new(Kind::Fixed, Style::XenServer, 4 * MIB)
        .random_block(1, 9)
        .build()
        .bytes;
    let none = serde_json::Map::new();
    // A fixed VHD declared vhd: Glance's inspector reads it as raw.
    let a = glance.create("fixed-as-vhd", "vhd", &none).await.unwrap();
    match glance.upload(&a.id, streamed(fixed.clone()), "vhd").await {
        Err(UploadError::WrongFormat { declared, .. }) => assert_eq!(declared, "vhd"),
        other => panic!("expected 415, got {other:?}"),
    }
    // Raw bytes declared qcow2.
    let b = glance.create("raw-as-qcow2", "qcow2", &none).await.unwrap();
    let raw = fixed[..fixed.len() - 512].to_vec();
    assert!(matches!(
        glance.upload(&b.id, streamed(raw.clone()), "qcow2").await,
        Err(UploadError::WrongFormat { .. })
    ));
    // The same bytes declared raw are taken: a fixed VHD is raw plus a footer.
    let c = glance.create("fixed-as-raw", "raw", &none).await.unwrap();
    glance.upload(&c.id, streamed(raw), "raw").await.unwrap();
    assert_eq!(glance.get(&c.id).await.unwrap().unwrap().status, "active");
    for id in [a.id, b.id, c.id] {
        glance.delete(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_keystone_token_is_replaced_by_logging_in_again() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let http = reqwest::Client::new();
    let (auth, session) = Auth::login_v3(
        &http,
        &url,
        password("alice", "alpha"),
        &RetryConfig::default(),
    )
    .await
    .unwrap();
    let base = session.endpoint("image", "public", None).unwrap();
    let glance = Glance::new(JsonService::new(
        http.clone(),
        &base,
        auth.clone(),
        RetryConfig::default(),
    ));
    glance.find("name", "nothing-by-this-name").await.unwrap();
    // Revoke the token (as an expiry or an operator would end it): the next request gets 401.
    let first = auth.token();
    let revoked = http
        .delete(format!("{url}/auth/tokens"))
        .header("X-Auth-Token", &first)
        .header("X-Subject-Token", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    // One 401, one new login, and the request goes through.
    assert!(
        glance
            .find("name", "nothing-by-this-name")
            .await
            .unwrap()
            .is_empty()
    );
    assert_ne!(auth.token(), first);
}

/// One request of the conformance run, and what came back: its status and, for JSON answers, the
/// top-level keys and the image's status when there is one.
async fn step(
    http: &reqwest::Client,
    what: &str,
    req: reqwest::RequestBuilder,
    seen: &mut Vec<String>,
) -> (u16, serde_json::Value, Option<String>) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let token = resp
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    let image_status = body["status"]
        .as_str()
        .map(|s| format!(" status={s}"))
        .unwrap_or_default();
    seen.push(format!("{what}: {status}{image_status}"));
    let _ = http;
    (status, body, token)
}

/// The same requests, in order, with what each answered: run against the simulator and against
/// real Keystone and Glance, the two lists must be equal.
async fn conformance(url: &str) -> Vec<String> {
    // No pooled connections: gunicorn closes one whose upload it refused part-way (415), and a
    // raw client would send the next request on it (imgferry's own requests retry a reset).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let login = |user: &str, pw: &str| {
        serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": pw}}},
            "scope": {"project": {"name": if user == "alice" {"alpha"} else {"beta"},
                "domain": {"id": "default"}}}}})
    };
    let tokens = format!("{url}/auth/tokens");
    step(
        &http,
        "wrong password",
        http.post(&tokens).json(&login("alice", "nope-not-it")),
        &mut seen,
    )
    .await;
    let (_, body, token) = step(
        &http,
        "login alice",
        http.post(&tokens).json(&login("alice", "alice-secret")),
        &mut seen,
    )
    .await;
    let alice = token.unwrap();
    let (_, _, bob) = step(
        &http,
        "login bob",
        http.post(&tokens).json(&login("bob", "bob-secret")),
        &mut seen,
    )
    .await;
    let bob = bob.unwrap();
    let glance = body["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "image")
        .unwrap()["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["interface"] == "public" && e["region_id"] == "RegionOne")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let images = format!("{glance}/v2/images");
    let as_alice = |r: reqwest::RequestBuilder| r.header("X-Auth-Token", &alice);
    step(&http, "no token", http.get(&images), &mut seen).await;
    step(
        &http,
        "bad disk_format",
        as_alice(http.post(&images)).json(&serde_json::json!({
        "name": "x", "disk_format": "nonsense", "container_format": "bare"})),
        &mut seen,
    )
    .await;
    step(
        &http,
        "read-only status",
        as_alice(http.post(&images)).json(&serde_json::json!({
        "name": "x", "disk_format": "raw", "container_format": "bare", "status": "active"})),
        &mut seen,
    )
    .await;
    let tag = format!("m-conf-{}", std::process::id());
    let (_, made, _) = step(
        &http,
        "create raw",
        as_alice(http.post(&images)).json(&serde_json::json!({
        "name": "x", "disk_format": "raw", "container_format": "bare", "imgferry_migration": tag})),
        &mut seen,
    )
    .await;
    let id = made["id"].as_str().unwrap().to_string();
    let (_, vhd_made, _) = step(
        &http,
        "create vhd",
        as_alice(http.post(&images)).json(&serde_json::json!({
        "name": "y", "disk_format": "vhd", "container_format": "bare"})),
        &mut seen,
    )
    .await;
    let vhd_id = vhd_made["id"].as_str().unwrap().to_string();
    let fixed = Builder::new(Kind::Fixed, Style::XenServer, 2 * MIB)
        .block(0, 3)
        .build()
        .bytes;
    let file = |id: &str| format!("{images}/{id}/file");
    let octets = |r: reqwest::RequestBuilder| r.header("Content-Type", "application/octet-stream");
    step(
        &http,
        "fixed VHD as vhd",
        octets(as_alice(http.put(file(&vhd_id)))).body(streamed(fixed.clone())),
        &mut seen,
    )
    .await;
    step(
        &http,
        "after the refusal",
        as_alice(http.get(format!("{images}/{vhd_id}"))),
        &mut seen,
    )
    .await;
    step(
        &http,
        "upload raw",
        octets(as_alice(http.put(file(&id)))).body(streamed(fixed.clone())),
        &mut seen,
    )
    .await;
    step(
        &http,
        "upload again",
        octets(as_alice(http.put(file(&id)))).body(streamed(fixed.clone())),
        &mut seen,
    )
    .await;
    step(
        &http,
        "active",
        as_alice(http.get(format!("{images}/{id}"))),
        &mut seen,
    )
    .await;
    let ranged = as_alice(http.get(file(&id)))
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    seen.push(format!("range: {}", ranged.status().as_u16()));
    let (_, listed, _) = step(
        &http,
        "find by property",
        as_alice(http.get(format!("{images}?imgferry_migration={tag}"))),
        &mut seen,
    )
    .await;
    seen.push(format!(
        "found: {}",
        listed["images"].as_array().map_or(0, Vec::len)
    ));
    step(
        &http,
        "another project",
        http.get(format!("{images}/{id}"))
            .header("X-Auth-Token", &bob),
        &mut seen,
    )
    .await;
    step(
        &http,
        "delete",
        as_alice(http.delete(format!("{images}/{id}"))),
        &mut seen,
    )
    .await;
    step(
        &http,
        "deleted",
        as_alice(http.get(format!("{images}/{id}"))),
        &mut seen,
    )
    .await;
    step(
        &http,
        "delete again",
        as_alice(http.delete(format!("{images}/{id}"))),
        &mut seen,
    )
    .await;
    step(
        &http,
        "delete vhd",
        as_alice(http.delete(format!("{images}/{vhd_id}"))),
        &mut seen,
    )
    .await;
    glance_direct_conformance(&http, &glance, &alice, &mut seen).await;
    patch_conformance(&http, &glance, &alice, &mut seen).await;
    seen
}

/// JSON patches and the tasks API as real Glance 33 answers them: the tasks list is for admins
/// (403); `add` of an existing property replaces it; `replace` or `remove` of a missing one is
/// 409; a read-only or reserved attribute 403; a path into a list (`/tags/-`) or below a
/// property 400; any operation but add, remove and replace 400; `/tags` replaced whole.
async fn patch_conformance(
    http: &reqwest::Client,
    glance: &str,
    token: &str,
    seen: &mut Vec<String>,
) {
    let images = format!("{glance}/v2/images");
    let with = |r: reqwest::RequestBuilder| r.header("X-Auth-Token", token);
    step(
        http,
        "tasks list",
        with(http.get(format!("{glance}/v2/tasks"))),
        seen,
    )
    .await;
    let (_, made, _) = step(
        http,
        "create with tags",
        with(http.post(&images)).json(&serde_json::json!({"name": "p", "disk_format": "raw",
            "container_format": "bare", "tags": ["a"]})),
        seen,
    )
    .await;
    let id = made["id"].as_str().unwrap().to_string();
    let url = format!("{images}/{id}");
    for (what, ops) in [
        (
            "append a tag",
            serde_json::json!([{"op": "add", "path": "/tags/-", "value": "b"}]),
        ),
        (
            "replace the tags",
            serde_json::json!([{"op": "replace", "path": "/tags", "value": ["a", "b"]}]),
        ),
        (
            "add a property",
            serde_json::json!([{"op": "add", "path": "/team", "value": "x"}]),
        ),
        (
            "add it again",
            serde_json::json!([{"op": "add", "path": "/team", "value": "y"}]),
        ),
        (
            "replace a missing one",
            serde_json::json!([{"op": "replace", "path": "/nothere", "value": "x"}]),
        ),
        (
            "remove a missing one",
            serde_json::json!([{"op": "remove", "path": "/nothere"}]),
        ),
        (
            "add status",
            serde_json::json!([{"op": "add", "path": "/status", "value": "active"}]),
        ),
        (
            "add os_glance_x",
            serde_json::json!([{"op": "add", "path": "/os_glance_x", "value": "1"}]),
        ),
        (
            "add below a property",
            serde_json::json!([{"op": "add", "path": "/a/b", "value": "1"}]),
        ),
        (
            "move",
            serde_json::json!([{"op": "move", "path": "/a", "from": "/name"}]),
        ),
    ] {
        let body = serde_json::to_vec(&ops).unwrap();
        let (status, image, _) = step(
            http,
            what,
            with(http.patch(&url))
                .header(
                    "Content-Type",
                    "application/openstack-images-v2.1-json-patch",
                )
                .body(body),
            seen,
        )
        .await;
        if status == 200 {
            // Tags are a set: Glance lists them in no particular order.
            let mut tags: Vec<String> = image["tags"]
                .as_array()
                .map(|t| t.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            tags.sort();
            seen.push(format!("  team={} tags={}", image["team"], tags.join(",")));
        }
    }
    step(http, "delete", with(http.delete(&url)), seen).await;
}

/// The `glance-direct` import as real Glance 33 runs it: the methods offered, the 409s of a stage
/// or an import out of turn, a stage making the image `uploading` with its size, the import
/// making it `active`; and data that is not its declared format failing the import, which
/// leaves the image `importing` with `os_glance_failed_import` set and a failed task.
async fn glance_direct_conformance(
    http: &reqwest::Client,
    glance: &str,
    token: &str,
    seen: &mut Vec<String>,
) {
    let images = format!("{glance}/v2/images");
    let with = |r: reqwest::RequestBuilder| r.header("X-Auth-Token", token);
    let octets =
        |r: reqwest::RequestBuilder| with(r).header("Content-Type", "application/octet-stream");
    let (_, info, _) = step(
        http,
        "import methods",
        with(http.get(format!("{glance}/v2/info/import"))),
        seen,
    )
    .await;
    seen.push(format!("offered: {}", info["import-methods"]["value"]));
    let direct = serde_json::json!({"method": {"name": "glance-direct"}});
    let fixed = Builder::new(Kind::Fixed, Style::XenServer, 2 * MIB)
        .block(0, 5)
        .build()
        .bytes;
    // Real Glance takes a few hundred milliseconds to run an import in its task engine.
    let settle = |id: String| {
        let (http, url) = (http.clone(), format!("{images}/{id}"));
        let token = token.to_string();
        async move {
            let mut last = serde_json::Value::Null;
            for _ in 0..100 {
                last = http
                    .get(&url)
                    .header("X-Auth-Token", &token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let failed = last["os_glance_failed_import"].as_str().unwrap_or_default();
                if last["status"] != "importing" || !failed.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            format!(
                "imported: status={} failed={}",
                last["status"], last["os_glance_failed_import"]
            )
        }
    };
    for (name, format, bytes) in [("good", "raw", fixed.clone()), ("liar", "qcow2", fixed)] {
        let (_, made, _) = step(http, &format!("create {name}"), with(http.post(&images)).json(
            &serde_json::json!({"name": name, "disk_format": format, "container_format": "bare"})),
            seen).await;
        let id = made["id"].as_str().unwrap().to_string();
        let import = format!("{images}/{id}/import");
        let stage = format!("{images}/{id}/stage");
        step(
            http,
            "import before the stage",
            with(http.post(&import)).json(&direct),
            seen,
        )
        .await;
        step(
            http,
            "stage",
            octets(http.put(&stage)).body(streamed(bytes.clone())),
            seen,
        )
        .await;
        let (_, staged, _) = step(
            http,
            "staged",
            with(http.get(format!("{images}/{id}"))),
            seen,
        )
        .await;
        seen.push(format!("staged size: {}", staged["size"]));
        step(
            http,
            "stage again",
            octets(http.put(&stage)).body(streamed(bytes.clone())),
            seen,
        )
        .await;
        step(
            http,
            "file while staged",
            octets(http.put(format!("{images}/{id}/file"))).body(streamed(bytes)),
            seen,
        )
        .await;
        step(http, "import", with(http.post(&import)).json(&direct), seen).await;
        seen.push(settle(id.clone()).await);
        let (_, tasks, _) = step(
            http,
            "tasks",
            with(http.get(format!("{images}/{id}/tasks"))),
            seen,
        )
        .await;
        seen.push(format!(
            "task: {}",
            tasks["tasks"]
                .as_array()
                .and_then(|t| t.last())
                .map_or("none".into(), |t| t["status"].to_string())
        ));
        step(
            http,
            "import again",
            with(http.post(&import)).json(&direct),
            seen,
        )
        .await;
        step(
            http,
            "delete",
            with(http.delete(format!("{images}/{id}"))),
            seen,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_as_real_keystone_and_glance_do() {
    let sim = imgferry::sim::spawn(imgferry::sim::SimConfig::default())
        .await
        .unwrap();
    let simulated = conformance(&sim.keystone_url()).await;
    eprintln!("{}", simulated.join("\n"));
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let real = conformance(&url).await;
    assert_eq!(
        simulated, real,
        "simulator (left) vs real Keystone and Glance (right)"
    );
}

/// `migrate --to-cloud` from the simulated legacy cloud into real Glance: the export converted
/// to qcow2 on the way, one image, digests equal to Glance's own, and the same disk as the VHD
/// per `qemu-img compare`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_moves_into_real_glance_converted_and_identical() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::to_cloud::server_to_cloud(&w, &url, &[]).await;
    let Some(_) = qemu_img() else { return };
    // The disk itself, as qemu reads both files.
    let glance = crate::to_cloud::GlanceView::login(&url, "alice", "alpha").await;
    let id = &w.records()[0];
    let saved = w.saved(id);
    let image = saved["facts"]["imported_image"].as_str().unwrap();
    let vhd = w.file("export.vhd", &w.export_bytes(&w.export_of(id)).await);
    let qcow2 = w.file("stored.qcow2", &glance.data(image).await);
    crate::support::run_qemu(
        w.files.path(),
        &[
            "compare",
            "-f",
            "vpc",
            "-F",
            "qcow2",
            vhd.to_str().unwrap(),
            qcow2.to_str().unwrap(),
        ],
    );
}

/// SIGKILL in the middle of the upload into real Glance, then `resume`: real Glance put the image
/// back to `queued`, and the resumed run fills that same image; never a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_into_real_glance_killed_midway_resumes_into_one_image() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::to_cloud::large()).await;
    crate::to_cloud::killed_upload_resumes_into_one_image(&w, &url, &[]).await;
}

/// `--upload-method glance-direct` into real Glance: staged, imported by real Glance's task
/// engine, the same qcow2 and digests as a direct upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_moves_into_real_glance_by_glance_direct() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::to_cloud::server_to_cloud(&w, &url, &["--upload-method", "glance-direct"]).await;
}

/// SIGKILL in the middle of a stage into real Glance, then `resume`: real Glance put the image
/// back to `queued`, and the resumed run stages and imports into that same image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_into_real_glance_killed_midway_resumes_into_one_image() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::to_cloud::large()).await;
    let args = ["--upload-method", "glance-direct"];
    crate::to_cloud::killed_upload_resumes_into_one_image(&w, &url, &args).await;
}

/// `--from-cloud --to-cloud` between two projects of real Keystone and Glance: the same bytes and
/// sha512 on both sides, the image's own properties carried, one image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_moves_between_two_projects_of_real_glance() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::from_cloud::cloud_to_cloud(&w, &url, "RegionOne").await;
}

/// `--from-cloud --to-file` from real Glance, by parallel ranged reads, into a file identical to
/// the image (real Glance answers ranged GETs with 206). The kill and resume of a download are
/// tested on the simulator's throttled link (`from_cloud.rs`): on loopback, real Glance serves
/// the whole image before a kill can be aimed at its middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_real_glance_downloads_to_a_file() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::from_cloud::cloud_to_file(&w, &url, false).await;
}

/// `--disk-format raw` into real Glance: a dynamic VHD read block by block, accepted by Glance's
/// raw inspection, identical to `qemu-img convert -O raw` of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_vhd_goes_into_real_glance_as_raw() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::to_cloud::dynamic_vhd_as_raw(&w, &url).await;
}

/// `--from-cloud --to REGION` from real Glance: a compressed qcow2 image downloaded from real
/// Glance, made a dynamic VHD, imported into the simulated legacy IAD and booted; the imported
/// VHD is the image's disk per `qemu-img compare`, its KVM-only properties not carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qcow2_image_of_real_glance_is_imported_into_a_legacy_region() {
    let Some(url) = keystone_url() else { return };
    let _turn = TURN.lock().await;
    if crate::support::qemu_img().is_none() {
        return;
    }
    let w = crate::support::World::start(crate::support::seeded()).await;
    crate::to_legacy::qcow2_to_legacy(&w, &url).await;
}
