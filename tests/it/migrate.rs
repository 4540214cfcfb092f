//! End-to-end migrations: the real `imgferry` binary against the simulated two-region cloud, one
//! test per entry point, rejections, dry runs, locks, Ctrl-C, and one run with the destination's
//! Cloud Files on real OpenStack Swift. Kill-and-resume tests are in `resume.rs`.
//!
//! Every successful run is checked the same way: the migration reports Done, the destination has
//! an ACTIVE booted server, and the bytes of the imported image (and of the booted server's disk)
//! have the same SHA-256 as the source VHD.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use imgferry::sim::{self, DiskSpec, SeedServer, SimConfig, SimHandle};
use imgferry::vhd::ImportCode;
use imgferry::vhd::build::{Builder, Kind, Style, put_u32};
use imgferry::vhd::footer::off;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const MIB: u64 = 1 << 20;

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
        let out = tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
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

    /// How many resources of `kind` the simulator created.
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

fn sha256_file(path: &Path) -> String {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_entry_images_exports_moves_imports_and_boots() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--name",
            "web-1 copy",
        ])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    let r = run.report();
    assert_eq!(r["imported_image_name"], "web-1 copy");
    assert_eq!(r["predicted_code"], Value::Null);
    assert!(r["segments"].as_u64().unwrap() >= 6, "{r}");
    // Progress was reported as it happened: steps, waits and transfer events.
    for kind in [
        "started",
        "step_started",
        "step_finished",
        "state",
        "waiting",
        "transfer",
    ] {
        assert!(run.event(kind).is_some(), "no {kind} event");
    }
    w.assert_created_once(1);
    // The admin password is shown in the run's report but never stored.
    assert_eq!(r["admin_pass"], "Sim-Pass-1234");
    let state = std::fs::read_to_string(w.state.path().join(format!("{}.json", run.id()))).unwrap();
    assert!(!state.contains("Sim-Pass-1234"));
    assert!(!state.contains(&w.sim.account().api_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_entry_starts_at_the_export() {
    let w = World::start(seeded()).await;
    let image = w.base_image();
    let run = w
        .migrate(&["--image", &image, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(w.created("snapshot"), 0);
    assert_eq!(w.created("export_task"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_entry_starts_at_an_existing_export() {
    let w = World::start(seeded()).await;
    // An export made earlier (by hand or by another tool) is the starting point.
    let first = w.migrate(&["--image", &w.base_image()]).await;
    assert_eq!(first.code, 0, "{first:#?}");
    let export = first.report()["export"].as_str().unwrap().to_string();
    let before = w.created("export_task");
    let run = w
        .migrate(&["--export", &export, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(w.created("export_task"), before, "no new export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhd_entry_uploads_a_local_file() {
    let w = World::start(seeded()).await;
    let path = w.file("disk.vhd", &good_vhd());
    let run = w
        .run(&[
            "migrate",
            "--to",
            "iad",
            "--vhd",
            path.to_str().unwrap(),
            "--boot",
            "general1-2",
            "--poll-interval",
            "0.02",
            "--segment-size",
            "1MiB",
        ])
        .await;
    w.assert_migrated(&run, &sha256_file(&path));
    let r = run.report();
    assert_eq!(
        r["md5"],
        hex::encode(md5::Md5::digest(std::fs::read(&path).unwrap()))
    );
    assert_eq!(r["from"], Value::Null);
    assert_eq!(w.created("snapshot") + w.created("export_task"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_server_entry_builds_a_server_first() {
    let w = World::start(seeded()).await;
    let spec = format!("{}:general1-2", w.base_image());
    let run = w
        .migrate(&[
            "--create-server",
            &spec,
            "--boot",
            "general1-2",
            "--cleanup",
            "all",
        ])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(
        w.created("server"),
        2,
        "the source server and the booted one"
    );
    // --cleanup all removed the server and snapshot imgferry created, and the staging copies.
    let id = run.id();
    assert!(!w.sim.servers("DFW").iter().any(|(_, n)| n.contains(&id)));
    assert!(!w.sim.images("DFW").iter().any(|(_, n)| n.contains(&id)));
    assert!(
        w.sim.servers("DFW").iter().any(|(_, n)| n == "web-1"),
        "not ours: kept"
    );
    let cleaned = run.report()["cleaned"].as_array().unwrap().len();
    assert_eq!(cleaned, 4, "{}", run.report());
}

/// Builds a doomed image for each code the pre-flight must catch.
fn doomed(code: u16) -> Vec<u8> {
    let d = || {
        Builder::new(Kind::Dynamic, Style::Qemu, 8 * MIB)
            .block(0, 0xA1)
            .build()
    };
    match code {
        396 => vec![0x5a; 3 * MIB as usize],
        413 => {
            Builder::new(Kind::Dynamic, Style::Qemu, 41 << 30)
                .block(0, 1)
                .build()
                .bytes
        }
        523 => {
            let mut i = d();
            i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, 5));
            i.bytes
        }
        721 => {
            let mut i = d();
            i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, 4));
            i.bytes
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_stops_doomed_local_images_before_any_transfer() {
    let w = World::start(seeded()).await;
    for code in [396u16, 413, 523, 721] {
        let path = w.file(&format!("doomed-{code}.vhd"), &doomed(code));
        let run = w.migrate(&["--vhd", path.to_str().unwrap()]).await;
        assert_eq!(run.code, 3, "{code}: {run:#?}");
        let msg = run.error();
        assert!(msg.contains(&format!("code {code}")), "{msg}");
        let meaning = ImportCode::from_number(code).unwrap().meaning();
        assert!(msg.contains(meaning), "{msg}");
        assert!(msg.contains("nothing was transferred"), "{msg}");
    }
    let stats = w.sim.stats();
    assert_eq!(
        stats.bytes_in.get("IAD").copied().unwrap_or(0),
        0,
        "{stats:?}"
    );
    assert!(!stats.created.contains_key("import_task"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_preflight_stops_a_doomed_export_before_any_transfer() {
    use imgferry::api::{auth::Auth, object_store::ObjectStore};
    let w = World::start(seeded()).await;
    let token = crate::support::sim_session(&w.sim).await.token;
    let dfw = ObjectStore::new(
        imgferry::http::client().unwrap(),
        &w.sim.object_store_url("DFW"),
        Auth::fixed(&token),
        Default::default(),
    );
    dfw.put_container("exports").await.unwrap();
    for code in [396u16, 413, 721] {
        let bytes = doomed(code);
        let path = w.file(&format!("r{code}"), &bytes);
        let md5 = hex::encode(md5::Md5::digest(&bytes));
        dfw.put_file_region(
            "exports",
            &format!("doomed-{code}.vhd"),
            &path,
            0,
            bytes.len() as u64,
            &md5,
        )
        .await
        .unwrap();
        let run = w
            .migrate(&["--export", &format!("exports/doomed-{code}.vhd")])
            .await;
        assert_eq!(run.code, 3, "{run:#?}");
        assert!(
            run.error().contains(&format!("code {code}")),
            "{}",
            run.error()
        );
    }
    assert_eq!(w.sim.stats().bytes_in.get("IAD").copied().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_rejection_is_explained_with_exit_3() {
    let w = World::start(seeded()).await;
    let path = w.file("good.vhd", &good_vhd());
    for code in ImportCode::PRECEDENCE.map(ImportCode::number) {
        w.sim.fail_next_import(code);
        let run = w.migrate(&["--vhd", path.to_str().unwrap()]).await;
        assert_eq!(run.code, 3, "{code}: {run:#?}");
        let msg = run.error();
        let known = ImportCode::from_number(code).unwrap();
        assert!(msg.contains(&format!("rejected with code {code}")), "{msg}");
        assert!(msg.contains(known.meaning()), "{msg}");
        assert!(msg.contains("what to do"), "{msg}");
        assert_eq!(
            run.event("error").unwrap()["resume"],
            Value::Null,
            "final, not resumable"
        );
        // The state records the actual verdict, and status says it stopped for good.
        let status = w.run(&["status", &run.id()]).await;
        let m = &status.events[0]["migration"];
        assert_eq!(m["facts"]["import_code"], code);
        assert_eq!(status.events[0]["state"], "Failed at Importing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_imports_despite_a_prediction_and_reports_the_actual_code() {
    let w = World::start(seeded()).await;
    let path = w.file("doomed.vhd", &doomed(721));
    let run = w
        .migrate(&["--vhd", path.to_str().unwrap(), "--force"])
        .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.error().contains("was rejected with code 721"),
        "{}",
        run.error()
    );
    assert!(run.events.iter().any(|e| e["event"] == "warning"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_and_creates_nothing() {
    let w = World::start(seeded()).await;
    let run = w
        .migrate(&[
            "--server",
            &w.server(),
            "--boot",
            "general1-2",
            "--cleanup",
            "staging",
            "--dry-run",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let plan = run.event("plan").expect("plan event");
    assert!(plan["steps"].as_array().unwrap().len() >= 6, "{plan}");
    assert!(
        w.sim.stats().created.is_empty(),
        "{:?}",
        w.sim.stats().created
    );
    assert_eq!(
        std::fs::read_dir(w.state.path()).unwrap().count(),
        0,
        "no state file"
    );
    let path = w.file("doomed.vhd", &doomed(413));
    let run = w
        .migrate(&["--vhd", path.to_str().unwrap(), "--dry-run"])
        .await;
    assert_eq!(run.code, 3);
    assert_eq!(run.event("plan").unwrap()["predicted_code"], 413);
    assert!(w.sim.stats().created.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_and_bad_credentials_exit_5() {
    let w = World::start(seeded()).await;
    let run = w.run(&World::migrate_args(&["--server", "x"])).await;
    assert_eq!(
        run.code, 1,
        "an unknown server fails the imaging step: {run:#?}"
    );
    let mut c = w.command(&World::migrate_args(&["--server", "x"]));
    c.env_remove("RAX_API_KEY");
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RAX_API_KEY"));
    let mut c = w.command(&World::migrate_args(&["--server", "x"]));
    c.env("RAX_API_KEY", "wrong-key");
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(5));
    let run = w
        .run(&["migrate", "--from", "DFW", "--to", "LON", "--server", "x"])
        .await;
    assert_eq!(run.code, 2);
    assert!(
        run.error().contains("available: DFW, IAD"),
        "{}",
        run.error()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_migration_gets_a_lock_error() {
    let w = World::start(seeded()).await;
    let path = w.file("good.vhd", &good_vhd());
    w.sim.fail_next_import(111);
    let run = w.migrate(&["--vhd", path.to_str().unwrap()]).await;
    let id = run.id();
    let store = imgferry::migrate::Store::open(w.state.path()).unwrap();
    let _held = store.lock(&id).unwrap();
    let second = w.resume(&id).await;
    assert_eq!(second.code, 2, "{second:#?}");
    assert!(
        second.error().contains("another imgferry process"),
        "{}",
        second.error()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_saves_and_exits_4_then_resume_finishes() {
    let mut config = seeded();
    // A slow link keeps the transfer running long enough to interrupt it.
    config.faults.throttle_bytes_per_sec = Some(4 * MIB);
    let w = World::start(config).await;
    let server = w.server();
    let mut child = w
        .command(&World::migrate_args(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
        ]))
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "started" {
            id = v["id"].as_str().unwrap().to_string();
        }
        if v["event"] == "transfer" && v["detail"]["event"] == "piece_done" {
            signal(child.id().unwrap(), "INT");
            break;
        }
    }
    while lines.next_line().await.unwrap().is_some() {}
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(4));
    let saved = w.run(&["status", &id]).await;
    assert_eq!(saved.events[0]["migration"]["step"], "Transferring");
    assert!(
        saved.events[0]["state"]
            .as_str()
            .unwrap()
            .starts_with("Interrupted")
    );
    w.sim.set_faults(Default::default());
    let resumed = w.resume(&id).await;
    w.assert_migrated(&resumed, &w.source_sha256());
    assert_eq!(w.created("snapshot"), 1);
    assert_eq!(w.created("export_task"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_migration() {
    let w = World::start(seeded()).await;
    let a = w.migrate(&["--image", &w.base_image()]).await;
    assert_eq!(a.code, 0);
    let out = w.command(&["status"]).output().await.unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], a.id());
    assert_eq!(lines[0]["state"], "Done");
    let mut human = w.command(&["status"]);
    human.args(["--output", "human"]);
    let out = human.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DFW→IAD") && text.contains(&a.id()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_cloud_files_on_real_swift() {
    let Some(swift) = crate::real_swift::swift_url() else {
        return;
    };
    let iad = format!("{swift}/v1/AUTH_mig{}", std::process::id());
    let mut config = seeded();
    config.object_stores.insert("IAD".into(), iad);
    let w = World::start(config).await;
    let run = w
        .migrate(&["--server", &w.server(), "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(
        w.sim.stats().bytes_in.get("IAD").copied().unwrap_or(0),
        0,
        "bytes went to Swift"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_mid_migration_are_refreshed() {
    use imgferry::sim::{Action, Plan, Rule, Service};
    let w = World::start(seeded()).await;
    let expire = |service, method: &str, path: &str, nth| {
        Rule::new(service, method, Action::ExpireTokens)
            .path(path)
            .firing(nth, 1)
    };
    w.sim.set_faults(Plan::with_rules(vec![
        expire(Service::Images, "GET", "/images/", 2),
        expire(Service::Files, "PUT", ".segments/", 3),
        expire(Service::Images, "GET", "/tasks/", 3),
    ]));
    let run = w
        .migrate(&["--server", &w.server(), "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    let logins = w
        .sim
        .stats()
        .requests
        .get("POST identity:tokens")
        .copied()
        .unwrap_or(0);
    assert!(
        logins >= 4,
        "one login and three refreshes: {:?}",
        w.sim.stats().requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_the_service_acted_are_settled_by_lookup_not_a_second_post() {
    use imgferry::sim::{Action, Plan, Rule, Service};
    let w = World::start(seeded()).await;
    let cut = |service, region: &str, path: &str, action| {
        Rule::new(service, "POST", action)
            .in_region(region)
            .path(path)
    };
    w.sim.set_faults(Plan::with_rules(vec![
        // The export task is created, then the connection drops mid-answer.
        cut(
            Service::Images,
            "DFW",
            "/tasks",
            Action::ResetAfter { bytes: 8 },
        ),
        // The import task is created, but the answer is an error page.
        cut(
            Service::Images,
            "IAD",
            "/tasks",
            Action::ResetAfter { bytes: 0 },
        ),
        // The boot server is created; the answer is cut short.
        cut(
            Service::Compute,
            "IAD",
            "/servers",
            Action::ResetAfter { bytes: 20 },
        ),
    ]));
    let run = w
        .migrate(&["--server", &w.server(), "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
    assert!(run.events.iter().any(|e| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("may have succeeded")
    }));
}
