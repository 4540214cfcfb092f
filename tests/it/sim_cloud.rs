//! The simulator's identity, compute and image services, exports and imports, and its faults,
//! driven over HTTP as a client would.

use std::time::{Duration, Instant};

use imgferry::sim::{
    self, Action, DiskSpec, Plan, Rule, SeedServer, Service, SimConfig, SimHandle,
};
use md5::{Digest, Md5};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::MIB;

struct Cloud {
    sim: SimHandle,
    http: Client,
    token: String,
}

fn seeded(config: SimConfig) -> SimConfig {
    SimConfig {
        servers: vec![SeedServer {
            region: "DFW".into(),
            name: "web-1".into(),
            disk: DiskSpec {
                virtual_size: 24 * MIB,
                allocated: 0.5,
                seed: 7,
            },
            variant: Default::default(),
        }],
        ..config
    }
}

impl Cloud {
    async fn start(config: SimConfig) -> Self {
        let sim = sim::spawn(seeded(config)).await.expect("start simulator");
        let http = Client::new();
        let token = crate::support::sim_session(&sim).await.token;
        Self { sim, http, token }
    }

    async fn call(&self, method: Method, url: String, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn json(&self, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.call(method, url, body).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for(&self, url: String, pointer: &str, done: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.json(Method::GET, url.clone(), None).await;
            if v.pointer(pointer)
                .and_then(Value::as_str)
                .is_some_and(|s| done.contains(&s))
            {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting on {url}: {v}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn server_id(&self) -> String {
        self.sim.servers("DFW")[0].0.clone()
    }

    /// Images web-1, exports it to `exports` in DFW, and returns (image id, export location).
    async fn snapshot_and_export(&self) -> (String, String) {
        let compute = self.sim.compute_url("DFW");
        let r = self
            .call(
                Method::POST,
                format!("{compute}/servers/{}/action", self.server_id()),
                Some(json!({"createImage": {"name": "snap"}})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let image_id = r.headers()["location"]
            .to_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let images = self.sim.images_url("DFW");
        self.wait_for(
            format!("{images}/images/{image_id}"),
            "/status",
            &["active"],
        )
        .await;
        let files = self.sim.object_store_url("DFW");
        self.call(Method::PUT, format!("{files}/exports"), None)
            .await;
        let (status, task) = self
            .json(Method::POST, format!("{images}/tasks"), Some(json!({"type": "export", "input": {"image_uuid": image_id, "receiving_swift_container": "exports"}})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(task["status"], "pending");
        let done = self
            .wait_for(
                format!("{images}/tasks/{}", task["id"].as_str().unwrap()),
                "/status",
                &["success", "failure"],
            )
            .await;
        assert_eq!(done["status"], "success", "{done}");
        (
            image_id,
            done["result"]["export_location"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// Starts an import in `region` from `location` and waits for it to end.
    async fn import(&self, region: &str, location: &str, props: Value) -> Value {
        let images = self.sim.images_url(region);
        let (status, task) = self
            .json(Method::POST, format!("{images}/tasks"), Some(json!({"type": "import", "input": {"import_from": location, "import_from_format": "vhd", "image_properties": props}})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        self.wait_for(
            format!("{images}/tasks/{}", task["id"].as_str().unwrap()),
            "/status",
            &["success", "failure"],
        )
        .await
    }

    async fn get_bytes(&self, url: String) -> Vec<u8> {
        self.call(Method::GET, url, None)
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    async fn put_bytes(&self, url: String, bytes: Vec<u8>) -> StatusCode {
        let len = bytes.len().to_string();
        let r = self
            .http
            .put(url)
            .header("X-Auth-Token", &self.token)
            .header("Content-Length", len)
            .body(bytes);
        r.send().await.unwrap().status()
    }
}

fn disk_bytes(disk: &sim::Disk) -> Vec<u8> {
    let mut out = Vec::new();
    disk.write_to(&mut out).unwrap();
    out
}

#[tokio::test]
async fn identity_issues_tokens_and_a_catalog() {
    let sim = sim::spawn(SimConfig::default()).await.unwrap();
    let http = Client::new();
    let a = sim.account().clone();
    let url = format!("{}/tokens", sim.identity_url());
    for creds in [
        json!({"RAX-KSKEY:apiKeyCredentials": {"username": a.username, "apiKey": a.api_key}}),
        json!({"passwordCredentials": {"username": a.username, "password": a.password}}),
    ] {
        let r = http
            .post(&url)
            .json(&json!({"auth": creds}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["access"]["token"]["expires"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        let catalog = v["access"]["serviceCatalog"].as_array().unwrap();
        let by_type = |t: &str| catalog.iter().find(|s| s["type"] == t).unwrap().clone();
        assert_eq!(by_type("compute")["name"], "cloudServersOpenStack");
        assert_eq!(by_type("image")["name"], "cloudImages");
        let files = by_type("object-store");
        assert_eq!(files["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(files["endpoints"][0]["tenantId"], "MossoCloudFS_100100");
        assert!(
            by_type("image")["endpoints"][1]["publicURL"]
                .as_str()
                .unwrap()
                .ends_with("/iad/images/v2")
        );
    }
    let wrong = http
        .post(&url)
        .json(&json!({"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": a.username, "apiKey": "nope"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let v: Value = wrong.json().await.unwrap();
    assert_eq!(
        v["unauthorized"]["message"],
        "Unable to authenticate user with credentials provided."
    );
    let malformed = http.post(&url).body("{").send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert!(malformed.text().await.unwrap().contains("badRequest"));
}

#[tokio::test]
async fn tokens_expire() {
    let mut timing = sim::Timing::instant();
    timing.token_ttl = Duration::from_millis(200);
    let c = Cloud::start(SimConfig {
        timing,
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/servers", c.sim.compute_url("DFW"));
    assert_eq!(
        c.call(Method::GET, url.clone(), None).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = c.json(Method::GET, url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["unauthorized"]["code"], 401);
}

#[tokio::test]
async fn servers_build_list_image_and_delete() {
    let c = Cloud::start(SimConfig::default()).await;
    let compute = c.sim.compute_url("DFW");
    let (_, list) = c
        .json(Method::GET, format!("{compute}/servers?name=web"), None)
        .await;
    assert_eq!(list["servers"].as_array().unwrap().len(), 1);
    let (_, detail) = c
        .json(
            Method::GET,
            format!("{compute}/servers/{}", c.server_id()),
            None,
        )
        .await;
    let base_image = detail["server"]["image"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Create a server from the base image: 202, Location, BUILD then ACTIVE.
    let r = c
        .call(Method::POST, format!("{compute}/servers"), Some(json!({"server": {"name": "new-1", "imageRef": base_image, "flavorRef": "general1-2"}})))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let id = v["server"]["id"].as_str().unwrap().to_string();
    assert!(location.ends_with(&id));
    assert!(v["server"]["adminPass"].is_string());
    let (_, s) = c
        .json(Method::GET, format!("{compute}/servers/{id}"), None)
        .await;
    assert_eq!(s["server"]["status"], "BUILD");
    let s = c
        .wait_for(
            format!("{compute}/servers/{id}"),
            "/server/status",
            &["ACTIVE"],
        )
        .await;
    assert_eq!(s["server"]["addresses"]["public"][0]["version"], 4);
    // createImage: 202 with Location; a second one while imaging is refused with 409.
    let action = format!("{compute}/servers/{id}/action");
    let r = c
        .call(
            Method::POST,
            action.clone(),
            Some(json!({"createImage": {"name": "snap-1"}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/images/")
    );
    let (status, busy) = c
        .json(
            Method::POST,
            action,
            Some(json!({"createImage": {"name": "snap-2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        busy["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("task_state")
    );
    let (_, s) = c
        .json(Method::GET, format!("{compute}/servers/{id}"), None)
        .await;
    assert!(
        s["server"]["OS-EXT-STS:task_state"]
            .as_str()
            .unwrap()
            .starts_with("image_")
    );
    // Errors: bad image, malformed body, unknown server; then delete.
    let (status, v) = c
        .json(
            Method::POST,
            format!("{compute}/servers"),
            Some(json!({"server": {"name": "x", "imageRef": "nope", "flavorRef": "2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(
        c.json(Method::GET, format!("{compute}/servers/missing"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.call(Method::DELETE, format!("{compute}/servers/{id}"), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(Method::DELETE, format!("{compute}/servers/{id}"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let stats = c.sim.stats();
    assert_eq!(stats.created["server"], ["DFW/new-1"]);
    assert_eq!(stats.created["snapshot"], ["DFW/snap-1"]);
}

#[tokio::test]
async fn export_writes_the_image_as_a_dlo_of_real_vhd_bytes() {
    let c = Cloud::start(SimConfig::default()).await;
    let (image_id, location) = c.snapshot_and_export().await;
    assert_eq!(location, format!("exports/{image_id}.vhd"));
    let files = c.sim.object_store_url("DFW");
    let exported = c.get_bytes(format!("{files}/{location}")).await;
    let want = disk_bytes(&c.sim.image_disk("DFW", &image_id).unwrap());
    assert_eq!(exported, want, "the export is the image's VHD");
    let list: Value = c
        .call(Method::GET, format!("{files}/exports?format=json"), None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len() as u64,
        1 + (want.len() as u64).div_ceil(MIB),
        "{names:?}"
    );
    assert!(names.contains(&format!("{image_id}.vhd-00001").as_str()));
    // The export is a valid, importable VHD.
    let report = futures::executor::block_on(imgferry::vhd::validate(
        &imgferry::vhd::MemSource { bytes: &exported },
        &Default::default(),
    ))
    .unwrap();
    assert!(report.verdict.accepted, "{}", report.render_human("export"));
    // Exporting again into the same container fails as Rackspace's does.
    let images = c.sim.images_url("DFW");
    let (_, task) = c
        .json(Method::POST, format!("{images}/tasks"), Some(json!({"type": "export", "input": {"image_uuid": image_id, "receiving_swift_container": "exports"}})))
        .await;
    let done = c
        .wait_for(
            format!("{images}/tasks/{}", task["id"].as_str().unwrap()),
            "/status",
            &["success", "failure"],
        )
        .await;
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("already has an object"),
        "{done}"
    );
    assert!(done["expires_at"].is_string());
}

#[tokio::test]
async fn import_validates_and_creates_an_identical_image() {
    let c = Cloud::start(SimConfig::default()).await;
    let (image_id, location) = c.snapshot_and_export().await;
    let bytes = c
        .get_bytes(format!("{}/{location}", c.sim.object_store_url("DFW")))
        .await;
    let iad = c.sim.object_store_url("IAD");
    c.call(Method::PUT, format!("{iad}/imports"), None).await;
    assert_eq!(
        c.put_bytes(format!("{iad}/imports/web.vhd"), bytes.clone())
            .await,
        StatusCode::CREATED
    );
    let done = c
        .import("IAD", "imports/web.vhd", json!({"name": "web-copy"}))
        .await;
    assert_eq!(done["status"], "success", "{done}");
    let new_id = done["result"]["image_id"].as_str().unwrap();
    let (_, image) = c
        .json(
            Method::GET,
            format!("{}/images/{new_id}", c.sim.images_url("IAD")),
            None,
        )
        .await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["name"], "web-copy");
    assert_eq!(image["checksum"], hex::encode(Md5::digest(&bytes)));
    assert_eq!(
        disk_bytes(&c.sim.image_disk("IAD", new_id).unwrap()),
        disk_bytes(&c.sim.image_disk("DFW", &image_id).unwrap())
    );
    let (_, by_name) = c
        .json(
            Method::GET,
            format!("{}/images?name=web-copy", c.sim.images_url("IAD")),
            None,
        )
        .await;
    assert_eq!(by_name["images"].as_array().unwrap().len(), 1);
    let (_, tasks) = c
        .json(
            Method::GET,
            format!(
                "{}/tasks?type=import&status=success",
                c.sim.images_url("IAD")
            ),
            None,
        )
        .await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
    assert!(
        tasks["tasks"][0].get("input").is_none(),
        "list entries omit input"
    );
    assert_eq!(c.sim.stats().created["imported_image"], ["IAD/web-copy"]);
    // Images can be deleted.
    let url = format!("{}/images/{new_id}", c.sim.images_url("IAD"));
    assert_eq!(
        c.call(Method::DELETE, url.clone(), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.call(Method::GET, url.clone(), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.call(Method::DELETE, url, None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn import_follows_an_slo_manifest() {
    let c = Cloud::start(SimConfig::default()).await;
    let (image_id, location) = c.snapshot_and_export().await;
    let bytes = c
        .get_bytes(format!("{}/{location}", c.sim.object_store_url("DFW")))
        .await;
    let iad = c.sim.object_store_url("IAD");
    c.call(Method::PUT, format!("{iad}/imports"), None).await;
    let mut manifest = Vec::new();
    for (i, chunk) in bytes.chunks(MIB as usize).enumerate() {
        let name = format!("imports/web.vhd.segments/{i:06}");
        assert_eq!(
            c.put_bytes(format!("{iad}/{name}"), chunk.to_vec()).await,
            StatusCode::CREATED
        );
        manifest.push(json!({"path": format!("/{name}"), "etag": hex::encode(Md5::digest(chunk)), "size_bytes": chunk.len()}));
    }
    let r = c
        .call(
            Method::PUT,
            format!("{iad}/imports/web.vhd?multipart-manifest=put"),
            Some(Value::Array(manifest)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let done = c
        .import("IAD", "imports/web.vhd", json!({"name": "from-slo"}))
        .await;
    assert_eq!(done["status"], "success", "{done}");
    let new_id = done["result"]["image_id"].as_str().unwrap();
    assert_eq!(
        disk_bytes(&c.sim.image_disk("IAD", new_id).unwrap()),
        disk_bytes(&c.sim.image_disk("DFW", &image_id).unwrap())
    );
}

#[tokio::test]
async fn imports_fail_with_the_documented_code_or_message() {
    let c = Cloud::start(SimConfig::default()).await;
    let iad = c.sim.object_store_url("IAD");
    c.call(Method::PUT, format!("{iad}/imports"), None).await;
    // Not a VHD at all: 396.
    c.put_bytes(format!("{iad}/imports/raw.img"), vec![0; 4 * MIB as usize])
        .await;
    let done = c
        .import("IAD", "imports/raw.img", json!({"name": "x"}))
        .await;
    assert_eq!(done["status"], "failure");
    assert!(
        done["message"].as_str().unwrap().starts_with("396: "),
        "{done}"
    );
    // A differencing disk: 721.
    let mut child = imgferry::vhd::build::Builder::new(
        imgferry::vhd::build::Kind::Dynamic,
        imgferry::vhd::build::Style::XenServer,
        4 * MIB,
    )
    .build();
    child.edit_footers(true, |f| f[60..64].copy_from_slice(&4u32.to_be_bytes()));
    c.put_bytes(format!("{iad}/imports/child.vhd"), child.bytes.clone())
        .await;
    let done = c
        .import("IAD", "imports/child.vhd", json!({"name": "x"}))
        .await;
    assert!(
        done["message"].as_str().unwrap().starts_with("721: "),
        "{done}"
    );
    // A fault-injected code on a good image.
    let good = imgferry::vhd::build::Builder::new(
        imgferry::vhd::build::Kind::Dynamic,
        imgferry::vhd::build::Style::XenServer,
        4 * MIB,
    )
    .block(0, 1)
    .build();
    c.put_bytes(format!("{iad}/imports/good.vhd"), good.bytes)
        .await;
    for code in [111u16, 413, 523, 609, 614] {
        c.sim.fail_next_import(code);
        let done = c
            .import("IAD", "imports/good.vhd", json!({"name": "x"}))
            .await;
        assert!(
            done["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{code}: ")),
            "{done}"
        );
    }
    // Wrong location, extra properties.
    let done = c
        .import("IAD", "imports/missing.vhd", json!({"name": "x"}))
        .await;
    // Rackspace's own words (openstack-archive/cloudcafe `glance/common/constants.py`).
    assert_eq!(
        done["message"],
        "Image not found for import. Possible invalid location"
    );
    let done = c
        .import(
            "IAD",
            "imports/good.vhd",
            json!({"name": "x", "os_type": "linux"}),
        )
        .await;
    assert!(
        done["message"]
            == "Unsupported element in image_properties, please consult the documentation.",
        "{done}"
    );
    assert!(!c.sim.stats().created.contains_key("imported_image"));
}

#[tokio::test]
async fn task_and_image_errors() {
    let c = Cloud::start(SimConfig::default()).await;
    let images = c.sim.images_url("DFW");
    let (status, _) = c
        .json(
            Method::POST,
            format!("{images}/tasks"),
            Some(json!({"type": "copy", "input": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        c.call(Method::GET, format!("{images}/tasks/nope"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.call(Method::GET, format!("{images}/images/nope"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (_, task) = c
        .json(Method::POST, format!("{images}/tasks"), Some(json!({"type": "export", "input": {"image_uuid": "nope", "receiving_swift_container": "exports"}})))
        .await;
    let done = c
        .wait_for(
            format!("{images}/tasks/{}", task["id"].as_str().unwrap()),
            "/status",
            &["failure"],
        )
        .await;
    assert_eq!(
        done["message"],
        "Requested image for export was not found: nope"
    );
    let (_, schema) = c
        .json(Method::GET, format!("{images}/schemas/task"), None)
        .await;
    assert_eq!(schema["name"], "task");
    let unauthorised = c.http.get(format!("{images}/images")).send().await.unwrap();
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);
}

fn rule(service: Service, path: &str, nth: u64, times: u64, action: Action) -> Rule {
    Rule::new(service, "GET", action)
        .any_method()
        .path(path)
        .firing(nth, times)
}

#[tokio::test]
async fn faults_fail_delay_and_throttle() {
    let c = Cloud::start(SimConfig::default()).await;
    let compute = c.sim.compute_url("DFW");
    let files = c.sim.object_store_url("DFW");
    c.call(Method::PUT, format!("{files}/c"), None).await;
    c.put_bytes(format!("{files}/c/o"), vec![5; MIB as usize])
        .await;
    c.sim.set_faults(Plan::with_rules(vec![
        rule(
            Service::Compute,
            "/servers",
            2,
            2,
            Action::Fail {
                status: 503,
                retry_after_secs: None,
            },
        ),
        rule(
            Service::Compute,
            "/detail",
            1,
            1,
            Action::Fail {
                status: 413,
                retry_after_secs: Some(2),
            },
        ),
        rule(
            Service::Files,
            "/c/limited",
            1,
            1,
            Action::Fail {
                status: 429,
                retry_after_secs: Some(3),
            },
        ),
        rule(Service::Images, "/images", 1, 1, Action::Delay { ms: 300 }),
        rule(
            Service::Files,
            "/c/o",
            1,
            1,
            Action::Throttle {
                bytes_per_sec: 4 * MIB,
            },
        ),
    ]));
    let servers = format!("{compute}/servers");
    let statuses = [
        c.call(Method::GET, servers.clone(), None).await.status(),
        c.call(Method::GET, servers.clone(), None).await.status(),
        c.call(Method::GET, servers.clone(), None).await.status(),
        c.call(Method::GET, servers.clone(), None).await.status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );
    let r = c
        .call(Method::GET, format!("{compute}/servers/detail"), None)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["retry-after"], "2");
    let v: Value = r.json().await.unwrap();
    assert!(v["overLimit"]["retryAt"].as_str().unwrap().ends_with('Z'));
    let r = c
        .call(Method::GET, format!("{files}/c/limited"), None)
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "3");
    let t = Instant::now();
    c.call(
        Method::GET,
        format!("{}/images", c.sim.images_url("DFW")),
        None,
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(c.get_bytes(format!("{files}/c/o")).await.len() as u64, MIB);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "1 MiB at 4 MiB/s took {took:?}"
    );
}

#[tokio::test]
async fn faults_reset_flip_and_expire() {
    let c = Cloud::start(SimConfig::default()).await;
    let files = c.sim.object_store_url("DFW");
    c.call(Method::PUT, format!("{files}/c"), None).await;
    let data: Vec<u8> = (0..MIB as usize).map(|i| i as u8).collect();
    c.put_bytes(format!("{files}/c/o"), data.clone()).await;
    c.sim.set_faults(Plan::with_rules(vec![
        rule(
            Service::Files,
            "/c/o",
            1,
            1,
            Action::ResetAfter { bytes: 100_000 },
        ),
        rule(
            Service::Files,
            "/c/o",
            2,
            1,
            Action::FlipByte { offset: 12345 },
        ),
        rule(Service::Files, "/c/o", 4, 1, Action::ExpireTokens),
    ]));
    let r = c.call(Method::GET, format!("{files}/c/o"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "the connection is reset mid-body");
    // A fresh client: the pool may otherwise hand out the connection the reset just closed.
    let c = Cloud {
        http: Client::new(),
        ..c
    };
    let flipped = c.get_bytes(format!("{files}/c/o")).await;
    assert_eq!(flipped.len(), data.len());
    let diffs: Vec<usize> = (0..data.len()).filter(|&i| flipped[i] != data[i]).collect();
    assert_eq!(diffs, [12345]);
    assert_eq!(c.get_bytes(format!("{files}/c/o")).await, data);
    assert_eq!(
        c.call(Method::GET, format!("{files}/c/o"), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn link_throttle_paces_uploads_and_downloads() {
    let c = Cloud::start(SimConfig {
        faults: Plan {
            throttle_bytes_per_sec: Some(8 * MIB),
            rules: vec![],
        },
        ..SimConfig::default()
    })
    .await;
    let files = c.sim.object_store_url("DFW");
    c.call(Method::PUT, format!("{files}/c"), None).await;
    let t = Instant::now();
    c.put_bytes(format!("{files}/c/o"), vec![1; 2 * MIB as usize])
        .await;
    let up = t.elapsed();
    let t = Instant::now();
    c.get_bytes(format!("{files}/c/o")).await;
    let down = t.elapsed();
    assert!(
        up >= Duration::from_millis(200),
        "2 MiB up at 8 MiB/s took {up:?}"
    );
    assert!(
        down >= Duration::from_millis(200),
        "2 MiB down at 8 MiB/s took {down:?}"
    );
}

#[tokio::test]
async fn faults_load_from_json() {
    let plan: Plan = serde_json::from_str(
        r#"{"throttle_bytes_per_sec": 16777216,
            "rules": [{"service": "files", "method": "GET", "path_contains": ".vhd-00002", "nth": 1,
                       "action": {"kind": "reset_after", "bytes": 1048576}},
                      {"service": "compute", "nth": 2, "times": 3,
                       "action": {"kind": "fail", "status": 413, "retry_after_secs": 1}},
                      {"action": {"kind": "fail_import", "code": 609}}]}"#,
    )
    .unwrap();
    assert_eq!(plan.rules.len(), 3);
    assert_eq!(plan.rules[1].times, 3);
    assert_eq!(plan.rules[2].nth, 1);
    assert_eq!(plan.rules[2].action, Action::FailImport { code: 609 });
}

#[tokio::test]
async fn task_list_refuses_type_filters_other_than_import() {
    // Upstream Glance (glance/api/v2/tasks.py, `_get_filters`) accepts only `type=import`.
    let c = Cloud::start(SimConfig::default()).await;
    let images = c.sim.images_url("DFW");
    let (status, v) = c
        .json(Method::GET, format!("{images}/tasks?type=export"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v.to_string().contains("Invalid type value: export"), "{v}");
    for ok in ["tasks?type=import", "tasks", "tasks?status=success"] {
        let (status, _) = c.json(Method::GET, format!("{images}/{ok}"), None).await;
        assert_eq!(status, StatusCode::OK, "{ok}");
    }
}
