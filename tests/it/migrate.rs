//! End-to-end migrations: the real `imgferry` binary against the simulated two-region cloud, one
//! test per entry point, rejections, dry runs, locks, Ctrl-C, and one run with the destination's
//! Cloud Files on real OpenStack Swift. Kill-and-resume tests are in `resume.rs`.
//!
//! Every successful run is checked the same way: the migration reports Done, the destination has
//! an ACTIVE booted server, and the bytes of the imported image (and of the booted server's disk)
//! have the same SHA-256 as the source VHD.

use imgferry::vhd::ImportCode;
use imgferry::vhd::build::{Builder, Kind, Style, put_u32};
use imgferry::vhd::footer::off;
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{MIB, World, good_vhd, seeded, sha256_file, signal};

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
            // Just over Rackspace's 160 GiB limit (sparse: a few KiB on disk).
            Builder::new(Kind::Dynamic, Style::Qemu, 161 << 30)
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
    // Not exit 1 with "to continue: imgferry resume", which could never succeed: a source that
    // does not exist is a final, usage-class error.
    assert_eq!(
        run.code, 2,
        "an unknown server is refused before imaging: {run:#?}"
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
            // The transfer step itself is interrupted (a pipelined copy could finish pieces
            // while still Exporting; pipeline::a_kill_during_the_pipelined_copy_resumes covers it).
            "--no-pipeline",
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
    assert!(
        text.contains("DFW → IAD") && text.contains(&a.id()),
        "{text}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_is_named_after_the_server_and_the_report_says_each_thing_once() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let args = World::migrate_args(&["--server", &server]);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        w.command_as("human", &args).output(),
    )
    .await
    .expect("finishes")
    .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Named after the server's name, not its id.
    assert!(stdout.contains("(web-1 from DFW (imgferry))"), "{stdout}");
    // The source server is the "source" line; it is not repeated as "source server".
    assert_eq!(stdout.matches(&server).count(), 1, "{stdout}");
    assert!(!stdout.contains(" 1 segments"), "{stdout}");
}
