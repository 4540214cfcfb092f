//! Overlapping runs and refused starts lose nothing and wedge nothing (hardening round 2): a
//! refusal leaves a resumable state, two runs of one migration or onto one file never both go
//! ahead, a running fleet is not touched by a second resume, a fleet into another account waits
//! for that account's credentials. Each test failed on the code before its change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgferry::sim::{Account, Action, ExportShape, Plan, Rule, SecondAccount, Service, SimConfig};

use crate::support::{MIB, Run, World, seeded, sha256_file};

/// The seeded world with a second server, `web-2`, for fleets.
fn two_servers() -> SimConfig {
    let mut config = seeded();
    let mut second = config.servers[0].clone();
    second.name = "web-2".into();
    second.disk.seed = 12;
    config.servers.push(second);
    config
}

/// A tmpfs of `mib` MiB mounted on `dir` (needs root, which CI has); unmounted when dropped.
/// `None`, with the reason printed, where mounting is not allowed outside CI.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64, read_only: bool) -> Option<Self> {
        let mut opts = format!("size={mib}m");
        if read_only {
            opts.push_str(",ro");
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must be able to mount a tmpfs"
            );
            eprintln!("skipping: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills `dir` until `free_mib` MiB are left.
fn fill(dir: &Path, total_mib: u64, free_mib: u64) -> PathBuf {
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![1u8; ((total_mib - free_mib) * MIB) as usize]).unwrap();
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_lack_of_space_leaves_a_state_that_resumes() {
    let w = World::start(seeded()).await;
    let Some(_tmpfs) = Tmpfs::mount(w.state.path(), 48, false) else {
        return;
    };
    let filler = fill(w.state.path(), 48, 5);
    let server = w.server();
    // 16 pieces of 1 MiB in flight need 12 MiB of spill space (the whole export); 5 MiB is free.
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--to",
            "IAD",
            "--server",
            &server,
            "--no-pipeline",
            "--concurrency",
            "16",
            "--segment-size",
            "1MiB",
            "--poll-interval",
            "0.02",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.error().contains("not enough free space"),
        "{}",
        run.error()
    );
    std::fs::remove_file(filler).unwrap();
    let resumed = w.resume(&run.id()).await;
    assert_eq!(resumed.code, 0, "{resumed:#?}");
    assert_eq!(resumed.report()["sha256"], w.source_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_does_not_fit_says_so_and_resumes_once_it_does() {
    let w = World::start(seeded()).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(dir.path(), 32, false) else {
        return;
    };
    let filler = fill(dir.path(), 32, 8);
    let target = dir.path().join("web-1.vhd");
    let server = w.server();
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--server",
            &server,
            "--to-file",
            target.to_str().unwrap(),
            "--poll-interval",
            "0.02",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:#?}");
    let error = run.error();
    assert!(error.contains("not enough free space"), "{error}");
    assert!(
        !error.contains("--concurrency"),
        "advice that fits a download: {error}"
    );
    std::fs::remove_file(filler).unwrap();
    let resumed = w.resume(&run.id()).await;
    assert_eq!(resumed.code, 0, "{resumed:#?}");
    assert_eq!(sha256_file(&target), w.source_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_file_checks_its_directory_before_imaging() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x.vhd");
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--server",
            &server,
            "--to-file",
            missing.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("does not exist"), "{}", run.error());
    let ro = tempfile::tempdir().unwrap();
    if let Some(_tmpfs) = Tmpfs::mount(ro.path(), 1, true) {
        let target = ro.path().join("x.vhd");
        let run = w
            .run(&[
                "migrate",
                "--from",
                "DFW",
                "--server",
                &server,
                "--to-file",
                target.to_str().unwrap(),
            ])
            .await;
        assert_eq!(run.code, 2, "{run:#?}");
        assert!(run.error().contains("cannot be written"), "{}", run.error());
    }
    assert_eq!(w.created("snapshot"), 0, "nothing was imaged");
}

/// Starts `n` copies of `args` at once and waits for all of them.
async fn together(w: &World, args: &[&str], n: usize) -> Vec<(i32, String)> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut c = w.command(args);
            c.spawn().unwrap()
        })
        .collect();
    let mut out = Vec::new();
    for child in children {
        let o = child.wait_with_output().await.unwrap();
        out.push((
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_migration_started_together_never_both_go_ahead() {
    for round in 0..3 {
        let w = World::start(seeded()).await;
        let server = w.server();
        let args = World::migrate_args(&["--server", &server]);
        let runs = together(&w, &args, 2).await;
        let codes: Vec<i32> = runs.iter().map(|r| r.0).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 0).count(),
            1,
            "round {round}: {runs:#?}"
        );
        assert!(
            codes.contains(&2),
            "round {round}: the other is refused: {runs:#?}"
        );
        assert_eq!(w.created("snapshot"), 1, "round {round}");
        assert_eq!(w.created("import_task"), 1, "round {round}");
    }
    // Two fleets of the same servers: each server is imaged once.
    let w = World::start(two_servers()).await;
    let args = World::migrate_args(&["--server", "web-1", "--server", "web-2"]);
    let runs = together(&w, &args, 2).await;
    assert_eq!(w.created("snapshot"), 2, "{runs:#?}");
    assert!(runs.iter().any(|r| r.0 == 2), "{runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_onto_one_path_never_mix_their_bytes() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let dir = tempfile::tempdir().unwrap();
    // An export to start from: a first download leaves it in DFW.
    let first = dir.path().join("first.vhd");
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--server",
            &server,
            "--to-file",
            first.to_str().unwrap(),
            "--poll-interval",
            "0.02",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let export = run.report()["export"].as_str().unwrap().to_string();
    // Both downloads are slowed to overlap.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Files,
            "GET",
            Action::Throttle {
                bytes_per_sec: 4 * MIB,
            },
        )
        .in_region("DFW")
        .firing(1, 10_000),
    ]));
    let target = dir.path().join("web-1.vhd");
    let args = [
        "migrate",
        "--from",
        "DFW",
        "--export",
        export.as_str(),
        "--to-file",
        target.to_str().unwrap(),
        "--new",
        "--poll-interval",
        "0.02",
    ];
    let runs = together(&w, &args, 2).await;
    let ok: Vec<&(i32, String)> = runs.iter().filter(|r| r.0 == 0).collect();
    assert_eq!(ok.len(), 1, "{runs:#?}");
    assert!(
        runs.iter().any(|r| r.0 == 2),
        "the second is refused: {runs:#?}"
    );
    assert_eq!(sha256_file(&target), w.source_sha256(), "the file is whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resume_of_a_running_fleet_touches_no_member() {
    let mut config = two_servers();
    config.export_segment_size = MIB;
    config.export = ExportShape {
        rate: Some(2 * MIB),
        ..ExportShape::default()
    };
    let w = World::start(config).await;
    let args = World::migrate_args(&["--server", "web-1", "--server", "web-2"]);
    let mut first = w
        .command(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The fleet id, once the fleet file exists.
    let fleets = w.state.path().join("fleets");
    let started = Instant::now();
    let id = loop {
        if let Some(e) = std::fs::read_dir(&fleets).ok().and_then(|mut d| d.next()) {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            break name.trim_end_matches(".json").to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let second = w.run(&["resume", &id, "--poll-interval", "0.02"]).await;
    assert_eq!(second.code, 2, "{second:#?}");
    assert!(
        second
            .error()
            .contains("running in another imgferry process"),
        "{}",
        second.error()
    );
    let status = first.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(w.created("snapshot"), 2, "each member once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_fleet_into_another_account_without_its_credentials_touches_nothing() {
    const UK_KEY: &str = "UKKEY0000imgferry0000fleet0000resume";
    let mut config = two_servers();
    config.second = Some(SecondAccount {
        account: Account {
            username: "uk-user".into(),
            api_key: UK_KEY.into(),
            password: "unused".into(),
            ..Account::default()
        },
        regions: vec!["LON".into()],
    });
    let w = World::start(config).await;
    // Every property PATCH in LON fails: the members stop after their import, resumably.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "PATCH",
            Action::Fail {
                status: 500,
                retry_after_secs: None,
            },
        )
        .in_region("LON")
        .firing(1, 1000),
    ]));
    let args = [
        "migrate",
        "--from",
        "DFW",
        "--to",
        "LON",
        "--server",
        "web-1",
        "--server",
        "web-2",
        "--poll-interval",
        "0.02",
        "--retries",
        "0",
        "--to-identity-url",
    ];
    let uk = w.sim.second_identity_url();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&uk);
    let mut c = w.command(&all);
    c.env("RAX_DST_USERNAME", "uk-user")
        .env("RAX_DST_API_KEY", UK_KEY);
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Run {
        code: 1,
        events: String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        stderr: String::new(),
    };
    let fleet = run
        .events
        .iter()
        .find_map(|e| e["fleet"].as_str())
        .unwrap()
        .to_string();
    w.sim.set_faults(Plan::default());
    // Without the destination's credentials: refused, nothing touched.
    let before: Vec<(String, String)> = crate::support::files_under(w.state.path());
    let resumed = w.run(&["resume", &fleet, "--poll-interval", "0.02"]).await;
    assert_eq!(resumed.code, 2, "{resumed:#?}");
    assert!(
        resumed.error().contains("RAX_DST_USERNAME=uk-user"),
        "{}",
        resumed.error()
    );
    assert_eq!(
        crate::support::files_under(w.state.path()),
        before,
        "no state changed"
    );
    // With them, every member finishes.
    let mut c = w.command(&["resume", &fleet, "--poll-interval", "0.02"]);
    c.env("RAX_DST_USERNAME", "uk-user")
        .env("RAX_DST_API_KEY", UK_KEY);
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_streamed_upload_waits_as_asked() {
    let w = World::start(SimConfig {
        export_segment_size: MIB,
        ..seeded()
    })
    .await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Files,
            "PUT",
            Action::Fail {
                status: 429,
                retry_after_secs: Some(2),
            },
        )
        .in_region("IAD")
        .path("/imgferry-imports/")
        .firing(1, 1),
    ]));
    let server = w.server();
    let started = Instant::now();
    let run = w
        .migrate(&["--server", &server, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the wait was honoured"
    );
    let waited = run.events.iter().any(|e| {
        e["event"] == "retry"
            && e["delay_ms"] == 2000
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("streamed upload")
    });
    assert!(waited, "{:#?}", run.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_finishes_an_answer_holds_one_request_budget_not_two() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // Every answer about the server dribbles at 4 bytes a second: it never completes.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Compute,
            "GET",
            Action::Throttle { bytes_per_sec: 4 },
        )
        .in_region("DFW")
        .path("/servers/")
        .firing(1, 10_000),
    ]));
    let started = Instant::now();
    let run = w
        .migrate(&["--server", &server, "--http-timeout", "2", "--retries", "1"])
        .await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:#?}");
    let error = run.error();
    assert!(error.contains("did not complete within"), "{error}");
    // It stopped before it created anything, so nothing is kept and nothing needs resuming:
    // the same command runs it again.
    assert!(run.event("error").unwrap()["resume"].is_null(), "{run:#?}");
    assert_eq!(
        w.state_files(),
        0,
        "no record of a start that created nothing"
    );
    // One request: 2 attempts of 12 s and a short backoff; the same request repeated by a second
    // step took twice that.
    assert!(
        took >= Duration::from_secs(20),
        "the deadline was what ended it: {took:?}"
    );
    assert!(took < Duration::from_secs(36), "took {took:?}");
}
