//! imgferry against rackerlabs/mimic, Rackspace's own mock of Identity v2.0, the catalog, Nova,
//! Glance and Swift: a model of the legacy cloud that nobody here wrote. `.ci/run` starts it
//! (`scripts/mimic.sh start`) and sets IMGFERRY_MIMIC_URL; locally these tests skip with a printed
//! reason when it is unset. Mimic has no export or import tasks, so what is compared is the login,
//! the catalog, server and flavor lookups, the eligibility rules and the dry run.

use serde_json::Value;

pub fn mimic_url() -> Option<String> {
    crate::support::service_url("IMGFERRY_MIMIC_URL", "scripts/mimic.sh start")
}

/// A mimic user (mimic makes one per user name) and its token and catalog.
struct Mimic {
    identity: String,
    username: String,
    token: String,
    access: Value,
    state: tempfile::TempDir,
}

impl Mimic {
    async fn login(identity: &str, username: &str) -> Self {
        let access: Value = reqwest::Client::new()
            .post(format!("{identity}/tokens"))
            .json(&serde_json::json!({"auth": {"RAX-KSKEY:apiKeyCredentials":
                {"username": username, "apiKey": "MIMICKEY0000imgferry"}}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            identity: identity.to_string(),
            username: username.to_string(),
            token: access["access"]["token"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            access,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// The public URL of the service named `name` in `region`.
    fn url(&self, name: &str, region: &str) -> String {
        let catalog = self.access["access"]["serviceCatalog"].as_array().unwrap();
        let service = catalog.iter().find(|s| s["name"] == name).unwrap();
        service["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["region"] == region)
            .and_then(|e| e["publicURL"].as_str())
            .unwrap()
            .to_string()
    }

    /// Creates a server in `region` from the first image whose name contains `image_name`.
    async fn server(&self, region: &str, image_name: &str, flavor: &str) -> String {
        let nova = self.url("cloudServersOpenStack", region);
        let http = reqwest::Client::new();
        let images: Value = http
            .get(format!("{nova}/images/detail"))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let image = images["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"].as_str().unwrap_or("").contains(image_name))
            .unwrap_or_else(|| panic!("mimic has no image like {image_name}"));
        let created: Value = http
            .post(format!("{nova}/servers"))
            .header("X-Auth-Token", &self.token)
            .json(&serde_json::json!({"server": {"name": "web-1", "imageRef": image["id"], "flavorRef": flavor}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["server"]["id"].as_str().unwrap().to_string()
    }

    /// `imgferry migrate ARGS` against mimic (JSON events); returns the exit code and the error.
    async fn migrate(&self, args: &[&str]) -> (i32, String, Vec<Value>) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
            .args(["--output", "json", "migrate"])
            .args(args)
            .env("RAX_IDENTITY_URL", &self.identity)
            .env("RAX_USERNAME", &self.username)
            .env("RAX_API_KEY", "MIMICKEY0000imgferry")
            .env_remove("RAX_PASSWORD")
            .env("IMGFERRY_STATE_DIR", self.state.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let error = events
            .iter()
            .rev()
            .find(|e| e["event"] == "error")
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_string();
        (out.status.code().unwrap_or(-1), error, events)
    }
}

#[tokio::test]
async fn the_login_and_catalog_of_rackspaces_mock_read_as_imgferry_expects() {
    let Some(identity) = mimic_url() else { return };
    let http = imgferry::http::client().unwrap();
    let creds = imgferry::credentials::Credentials {
        username: "imgferry-catalog".into(),
        secret: imgferry::credentials::Secret::ApiKey("MIMICKEY0000imgferry".into()),
        tenant: None,
    };
    let session =
        imgferry::api::identity::authenticate(&http, &identity, &creds, &Default::default())
            .await
            .expect("mimic logs in");
    assert!(
        session.expires.is_some(),
        "mimic's -05:00 expiry form is read"
    );
    assert!(session.tenant.is_some());
    assert!(
        session.roles.iter().any(|r| r == "identity:user-admin"),
        "{:?}",
        session.roles
    );
    // Mimic lists two compute services; imgferry takes Nova, not mimic's control API.
    let compute = session.endpoint("compute", "ORD").unwrap();
    assert!(compute.contains("/NovaApi-"), "{compute}");
    for (kind, region) in [
        ("image", "DFW"),
        ("object-store", "IAD"),
        ("compute", "IAD"),
    ] {
        session.endpoint(kind, region).unwrap();
    }
    let lon = session.endpoint("compute", "LON").unwrap_err().to_string();
    assert!(lon.contains("UK accounts"), "{lon}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_and_early_refusals_against_rackspaces_mock() {
    let Some(identity) = mimic_url() else { return };
    let m = Mimic::login(&identity, "imgferry-dry-run").await;
    let server = m.server("ORD", "(PVHVM)", "general1-2").await;
    let base = [
        "--from",
        "ORD",
        "--to",
        "IAD",
        "--server",
        server.as_str(),
        "--dry-run",
    ];
    let (code, error, events) = m.migrate(&base).await;
    assert_eq!(code, 0, "{error} {events:#?}");
    let plan = events
        .iter()
        .find(|e| e["event"] == "plan")
        .expect("a plan");
    assert!(plan.to_string().contains("web-1"), "{plan}");
    // Flavor lookups: no local disk, too small a disk, not offered.
    for (boot, says) in [
        ("compute1-4", "no local disk"),
        ("general1-1", "smaller than"),
        ("nope-1", "not offered"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--boot", boot]);
        let (code, error, _) = m.migrate(&args).await;
        assert_eq!(code, 3, "{boot}: {error}");
        assert!(error.contains(says), "{boot}: {error}");
    }
    // A 320 GB flavor's export is over the 160 GiB import limit: code 413 before any snapshot.
    let big = m.server("ORD", "(PVHVM)", "6").await;
    let (code, error, _) = m
        .migrate(&[
            "--from",
            "ORD",
            "--to",
            "IAD",
            "--server",
            &big,
            "--dry-run",
        ])
        .await;
    assert_eq!(code, 3, "{error}");
    assert!(
        error.contains("code 413") && error.contains("320 GB"),
        "{error}"
    );
    // An unknown server.
    let (code, error, _) = m
        .migrate(&[
            "--from",
            "ORD",
            "--to",
            "IAD",
            "--server",
            "no-such-server",
            "--dry-run",
        ])
        .await;
    assert_eq!(code, 2, "{error}");
    assert!(
        error.contains("no server with the id or name no-such-server"),
        "{error}"
    );
}
