//! Helpers shared by the integration tests: VHD checks, qemu-img, and the simulated two-region
//! `World` that drives the real binary (with its `Run` record, the seeded config and digests).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imgferry::sim::{self, DiskSpec, SeedServer, SimConfig, SimHandle};
use imgferry::vhd::build::{Builder, Kind, Style};
use imgferry::vhd::{self, MemSource, Policy, Report};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A fixed "now" (2026-11-27T00:00:00Z) so timestamp checks do not depend on the clock, and the
/// 40 GiB limits the case tables were written against (the semantics at the limit are the same
/// for any limit; the 160 GiB default has its own tests).
pub fn policy() -> Policy {
    Policy {
        now: UNIX_EPOCH + Duration::from_secs(1_795_737_600),
        max_virtual_size: 40 << 30,
        max_physical_size: 40 << 30,
    }
}

/// Validates bytes held in memory.
pub fn check(bytes: &[u8]) -> Report {
    futures::executor::block_on(vhd::validate(&MemSource { bytes }, &policy()))
        .expect("an in-memory source never fails to read")
}

/// Validates a file on disk.
pub fn check_file(path: &Path) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = vhd::FileSource::open(path).expect("open");
    rt.block_on(vhd::validate(&source, &policy()))
        .expect("read")
}

/// The predicted code, or `None` for "accepted".
pub fn code(report: &Report) -> Option<u16> {
    report.verdict.code.map(|c| c.number())
}

/// A readable dump for assertion messages.
pub fn explain(report: &Report) -> String {
    report.render_human("image")
}

/// The qemu-img binary, or `None` (with a printed reason) when it is missing outside CI. In CI its
/// absence is a failure: `.ci/run` installs it.
pub fn qemu_img() -> Option<PathBuf> {
    let found = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("qemu-img"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "qemu-img is missing in CI; .ci/run must install qemu-utils"
    );
    eprintln!("skipping: qemu-img is not installed");
    None
}

/// Runs qemu-img with `args` in `dir`, failing the test on error.
pub fn run_qemu(dir: &Path, args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds since the VHD epoch for a SystemTime, for building timestamps.
#[allow(dead_code)]
pub fn vhd_seconds(t: SystemTime) -> u32 {
    let unix = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(unix - 946_684_800).unwrap_or(u32::MAX)
}

/// Authenticates against a simulator with its account's API key, through imgferry's own identity
/// client.
#[allow(dead_code)]
pub async fn sim_session(sim: &imgferry::sim::SimHandle) -> imgferry::api::identity::Session {
    let http = imgferry::http::client().expect("http client");
    let creds = sim.account().credentials();
    imgferry::api::identity::authenticate(&http, &sim.identity_url(), &creds, &Default::default())
        .await
        .expect("authenticate against the simulator")
}

pub const MIB: u64 = 1 << 20;

/// The URL of a real service `.ci/run` starts (`var`, set by `how`), trailing `/` trimmed; `None`
/// with a printed reason when it is unset locally. In CI its absence is a failure.
pub fn service_url(var: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url.trim_end_matches('/').to_string()),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must start it and set {var} ({how})"
            );
            eprintln!("skipping: {var} is not set (run {how})");
            None
        }
    }
}

/// GETs the task at `url` until it has ended (success or failure), within 60 s.
pub async fn wait_task(http: &reqwest::Client, token: &str, url: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(url)
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "success" || v["status"] == "failure" {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`seeded`] with its one server given `variant`.
pub fn seeded_with(variant: imgferry::sim::Variant) -> SimConfig {
    let mut config = seeded();
    config.servers[0].variant = variant;
    config
}

/// A simulator with a 24 MiB (half allocated) server `web-1` in DFW, and a private state dir.
pub struct World {
    pub sim: SimHandle,
    pub state: tempfile::TempDir,
    pub files: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub events: Vec<Value>,
    /// Kept for the `{:#?}` dumps in assertion messages.
    #[allow(dead_code)]
    pub stderr: String,
}

impl Run {
    pub fn event(&self, kind: &str) -> Option<&Value> {
        self.events.iter().rev().find(|e| e["event"] == kind)
    }

    pub fn report(&self) -> &Value {
        let last = self.events.last().expect("at least one event");
        assert_eq!(
            last["event"], "report",
            "the last line is the report: {self:#?}"
        );
        &last["report"]
    }

    pub fn id(&self) -> String {
        self.events
            .iter()
            .find(|e| e["event"] == "started")
            .and_then(|e| e["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no started event: {self:#?}"))
    }

    pub fn error(&self) -> String {
        self.event("error")
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

pub fn seeded() -> SimConfig {
    SimConfig {
        servers: vec![SeedServer {
            region: "DFW".into(),
            name: "web-1".into(),
            disk: DiskSpec {
                virtual_size: 24 * MIB,
                allocated: 0.5,
                seed: 11,
            },
            variant: Default::default(),
        }],
        export_segment_size: 2 * MIB,
        ..SimConfig::default()
    }
}

impl World {
    pub async fn start(config: SimConfig) -> Self {
        Self {
            sim: sim::spawn(config).await.expect("simulator"),
            state: tempfile::tempdir().unwrap(),
            files: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.command_as("json", args)
    }

    /// The binary with `--output OUTPUT`, the simulator's credentials and a private state dir.
    pub fn command_as(&self, output: &str, args: &[&str]) -> tokio::process::Command {
        let a = self.sim.account();
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_imgferry"));
        c.args(["--output", output])
            .args(args)
            .env("RAX_IDENTITY_URL", self.sim.identity_url())
            .env("RAX_USERNAME", &a.username)
            .env("RAX_API_KEY", &a.api_key)
            .env_remove("RAX_PASSWORD")
            .env("IMGFERRY_STATE_DIR", self.state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// `migrate --from DFW --to IAD ARGS` with fast polling and small segments.
    pub fn migrate_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "migrate",
            "--from",
            "DFW",
            "--to",
            "IAD",
            "--poll-interval",
            "0.02",
            "--segment-size",
            "1MiB",
            "--concurrency",
            "3",
        ];
        all.extend_from_slice(args);
        all
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        output(self.command(args)).await
    }

    /// Migration `id`'s state file.
    pub fn saved(&self, id: &str) -> Value {
        let path = self.state.path().join(format!("{id}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The export migration `id` recorded, as `CONTAINER/OBJECT`.
    pub fn export_of(&self, id: &str) -> String {
        let e = &self.saved(id)["facts"]["export"];
        format!(
            "{}/{}",
            e["container"].as_str().unwrap(),
            e["object"].as_str().unwrap()
        )
    }

    /// The exported VHD's bytes (`CONTAINER/OBJECT`), read from the simulated Cloud Files in DFW.
    pub async fn export_bytes(&self, export: &str) -> Vec<u8> {
        let url = format!("{}/{export}", self.sim.object_store_url("DFW"));
        reqwest::Client::new()
            .get(url)
            .header("X-Auth-Token", self.sim.issue_token())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    pub async fn migrate(&self, args: &[&str]) -> Run {
        self.run(&Self::migrate_args(args)).await
    }

    /// Resumes until the migration is done (a resume can itself be stopped by nothing here, so
    /// one attempt must do it).
    pub async fn resume(&self, id: &str) -> Run {
        self.run(&["resume", id, "--poll-interval", "0.02"]).await
    }

    pub fn server(&self) -> String {
        self.sim
            .servers("DFW")
            .into_iter()
            .find(|(_, n)| n == "web-1")
            .map(|(id, _)| id)
            .expect("seeded server")
    }

    pub fn base_image(&self) -> String {
        self.sim
            .images("DFW")
            .into_iter()
            .find(|(_, n)| n == "web-1 base image")
            .map(|(id, _)| id)
            .expect("seeded base image")
    }

    pub fn source_sha256(&self) -> String {
        sha256_disk(
            self.sim
                .server_disk("DFW", &self.server())
                .expect("server disk"),
        )
    }

    /// Asserts a successful, booted migration whose image bytes equal `expected_sha256`.
    pub fn assert_migrated(&self, run: &Run, expected_sha256: &str) {
        assert_eq!(run.code, 0, "{run:#?}");
        let r = run.report();
        assert_eq!(r["step"], "Done");
        assert_eq!(
            r["sha256"], expected_sha256,
            "transfer digest = source digest"
        );
        let image = r["imported_image"].as_str().expect("imported image id");
        let imported = sha256_disk(self.sim.image_disk("IAD", image).expect("imported image"));
        assert_eq!(imported, expected_sha256, "imported bytes = source bytes");
        let boot = r["boot_server"].as_str().expect("booted server id");
        assert!(
            self.sim.servers("IAD").iter().any(|(id, _)| id == boot),
            "booted server exists in IAD"
        );
        let booted = sha256_disk(self.sim.server_disk("IAD", boot).expect("boot disk"));
        assert_eq!(booted, expected_sha256, "the booted server runs the image");
        let unbootable = self.sim.stats().unbootable;
        assert!(
            unbootable.is_empty(),
            "guests that did not boot (an image without vm_mode): {unbootable:?}"
        );
        assert_eq!(r["import_verdict"], "accepted");
        assert!(!r["boot_addresses"].as_array().unwrap().is_empty());
    }

    /// Asserts the simulator created exactly one snapshot, export task, import task and imported
    /// image, and `servers` servers: nothing twice.
    pub fn assert_created_once(&self, servers: usize) {
        let created = self.sim.stats().created;
        for (kind, n) in [
            ("server", servers),
            ("snapshot", 1),
            ("export_task", 1),
            ("import_task", 1),
            ("imported_image", 1),
        ] {
            assert_eq!(
                created.get(kind).map_or(0, Vec::len),
                n,
                "{kind}: {created:?}"
            );
        }
    }

    /// Image `id` as the image service of `region` shows it.
    pub async fn image_json(&self, region: &str, id: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/images/{id}", self.sim.images_url(region)))
            .header("X-Auth-Token", self.sim.issue_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Exports `image` of DFW into a fresh container by the service's own task (no imgferry) and
    /// returns the task once it has ended.
    pub async fn export_task(&self, image: &str) -> Value {
        let http = reqwest::Client::new();
        let token = self.sim.issue_token();
        let images = self.sim.images_url("DFW");
        let put = http
            .put(format!("{}/exports", self.sim.object_store_url("DFW")))
            .header("X-Auth-Token", &token)
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let task: Value = http
            .post(format!("{images}/tasks"))
            .header("X-Auth-Token", &token)
            .json(&serde_json::json!({"type": "export", "input": {"image_uuid": image, "receiving_swift_container": "exports"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!("{images}/tasks/{}", task["id"].as_str().unwrap());
        wait_task(&http, &token, &url).await
    }

    /// How many resources of `kind` the simulator created.
    /// The ids of the migration records in the state directory, sorted.
    pub fn records(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state.path())
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".json")
                            .filter(|id| id.starts_with("m-"))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// How many migration records the state directory holds.
    pub fn state_files(&self) -> usize {
        self.records().len()
    }

    pub fn created(&self, kind: &str) -> usize {
        self.sim.stats().created.get(kind).map_or(0, Vec::len)
    }

    /// Writes `bytes` as a file in the scratch dir.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.files.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Runs an imgferry command (with `--output json`) to its end: its exit code and its events.
pub async fn output(mut c: tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("imgferry finishes within 2 minutes")
        .expect("run imgferry");
    Run {
        code: out.status.code().unwrap_or(-1),
        events: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends a signal to a process with kill(1).
pub fn signal(pid: u32, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

pub fn sha256_disk(disk: imgferry::sim::Disk) -> String {
    disk.sha256().expect("read the disk")
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A valid dynamic VHD with random data in a few blocks.
pub fn good_vhd() -> Vec<u8> {
    let mut b = Builder::new(Kind::Dynamic, Style::XenServer, 16 * MIB);
    for i in [0u32, 1, 3, 6] {
        b = b.random_block(i, 40 + u64::from(i));
    }
    b.build().bytes
}

/// Every file under `dir`, as text.
pub fn files_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            out.push((p.display().to_string(), text));
        }
    }
    out
}

/// `migrate` with fast polling, a boot, and the seeded server as the source.
pub fn server_args(w: &World) -> Vec<String> {
    World::migrate_args(&["--boot", "general1-2"])
        .into_iter()
        .map(str::to_string)
        .chain(["--server".to_string(), w.server()])
        .collect()
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A dynamic VHD converted to qcow2 through the streaming converter, pushed in 1 MiB pieces as a
/// stream would arrive (the layout from the footer copy, the header and the BAT first).
pub fn qcow2_of(vhd: &[u8]) -> Vec<u8> {
    use imgferry::vhd::{dynamic, footer};
    let f = footer::Footer::new(vhd[..512].try_into().unwrap());
    let h = dynamic::Header::new(vhd[512..1536].try_into().unwrap());
    let at = h.table_offset() as usize;
    let bat = &vhd[at..at + h.max_entries() as usize * 4];
    let mut c = imgferry::convert::VhdToQcow2::new(&f, &h, bat).unwrap();
    let mut out = c.metadata();
    for (i, piece) in vhd.chunks(MIB as usize).enumerate() {
        c.push(i as u64 * MIB, piece, &mut out).unwrap();
    }
    c.finish().unwrap();
    assert_eq!(out.len() as u64, c.output_len());
    out
}
