//! Hardening (issue 11): each test here failed on the code before its fix. Hostile peers are
//! small loopback servers (`Peer`) or simulator faults: a service that never answers, one that
//! dribbles a byte a second, services that echo the credentials or the token back.

use std::time::{Duration, Instant};

use imgferry::sim::{Account, Action, Plan, Rule, Service, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{World, files_under, seeded, signal};

const KEY: &str = "ECHOEDKEY0000imgferry0000scrub0000check";

/// A loopback peer that reads each request's head and then does `answer` with the connection.
async fn peer<F, Fut>(answer: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = std::sync::Arc::clone(&answer);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                let _ = stream.read(&mut buf).await;
                answer(stream).await;
            });
        }
    });
    format!("http://{addr}/v2.0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbling_peer_cannot_keep_imgferry_running() {
    // Headers at once, then a byte every 250 ms of a body that claims 100 kB: never silent for
    // the 1 s read timeout, so only a whole-request deadline can end it.
    let url = peer(|mut s| async move {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
        let _ = s.write_all(head.as_bytes()).await;
        for _ in 0..2400 {
            if s.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let w = World::start(seeded()).await;
    let started = Instant::now();
    let mut c = w.command_as(
        "human",
        &[
            "validate",
            "--http-timeout",
            "1",
            "--retries",
            "1",
            "--remote",
            "DFW",
            "c/o.vhd",
        ],
    );
    c.env("RAX_IDENTITY_URL", &url);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("imgferry gave up on the dribbling peer by itself")
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not complete within 8 s"), "{stderr}");
    // Two attempts, each bounded by the whole-request deadline (4 × 1 s + 4 s), plus a backoff.
    assert!(took < Duration::from_secs(25), "took {took:?}");
    eprintln!("dribbling peer: failed after {took:?} (exit 1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_a_stalled_request_within_two_seconds_saves_and_resumes() {
    let w = World::start(seeded()).await;
    // The export task's status never comes back (the read timeout is 10 minutes).
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Images, "GET", Action::Delay { ms: 600_000 })
            .in_region("DFW")
            .path("/tasks/")
            .firing(1, 1),
    ]));
    let server = w.server();
    let args = World::migrate_args(&["--server", &server, "--http-timeout", "600"]);
    let mut child = w.command(&args).spawn().unwrap();
    // Wait until the export task exists, then a little longer: its first status GET is stalled.
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.created("export_task") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap();
    let sent = Instant::now();
    signal(pid, "INT");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(4));
    assert!(took <= Duration::from_secs(2), "exit took {took:?}");
    eprintln!("Ctrl-C against a stalled peer: exit 4 after {took:?}");
    w.sim.set_faults(Plan::default());
    let ids: Vec<String> = std::fs::read_dir(w.state.path())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let resumed = w.resume(&ids[0]).await;
    assert_eq!(resumed.code, 0, "{}", resumed.error());
    assert_eq!(w.created("export_task"), 1, "no second export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_and_tokens_are_never_printed_logged_or_saved() {
    let config = SimConfig {
        account: Account {
            username: "echo".into(),
            api_key: KEY.into(),
            password: "unused-password".into(),
            ..Account::default()
        },
        ..seeded()
    };
    for (name, rules) in [
        (
            "identity echoes the login body on re-login",
            vec![
                // The createImage POST finds its token expired; the re-login is echoed back.
                Rule::new(Service::Compute, "POST", Action::ExpireTokens)
                    .in_region("DFW")
                    .path("/action")
                    .firing(1, 1),
                Rule::new(Service::Identity, "POST", Action::Echo { status: 401 }).firing(2, 1),
            ],
        ),
        (
            "a service echoes the token in a 400",
            vec![
                Rule::new(Service::Compute, "POST", Action::Echo { status: 400 })
                    .in_region("DFW")
                    .path("/action")
                    .firing(1, 1),
            ],
        ),
    ] {
        let w = World::start(config.clone()).await;
        let server = w.server();
        let mut texts = Vec::new();
        for output in ["human", "json"] {
            w.sim.set_faults(Plan::with_rules(rules.clone()));
            let args = World::migrate_args(&["--server", &server, "-vvv", "--new"]);
            let mut c = w.command_as(output, &args);
            c.env("RUST_LOG", "trace")
                .env("RAX_USERNAME", "echo")
                .env("RAX_API_KEY", KEY);
            let out = c.output().await.unwrap();
            assert_ne!(
                out.status.code(),
                Some(0),
                "{name}: the fault stops the run"
            );
            texts.push((
                "stdout".to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
            texts.push((
                "stderr".to_string(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        texts.extend(files_under(w.state.path()));
        let tokens = w.sim.issued_tokens();
        assert!(!tokens.is_empty());
        for (place, text) in &texts {
            assert!(
                !text.contains(KEY),
                "{name}: the API key is in {place}:\n{text}"
            );
            for t in &tokens {
                assert!(
                    !text.contains(t.as_str()),
                    "{name}: a token is in {place}:\n{text}"
                );
            }
        }
        // The echo did arrive and was scrubbed, not lost.
        assert!(
            texts.iter().any(|(_, t)| t.contains("<redacted>")),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_numbers_never_reach_a_state_file() {
    let w = World::start(seeded()).await;
    let server = w.server();
    for bad in [
        vec!["--poll-interval", "NaN"],
        vec!["--poll-interval", "inf"],
        vec!["--poll-interval", "0"],
        vec!["--step-deadline", "NaN"],
        vec!["--http-timeout", "NaN"],
    ] {
        let mut args = vec![
            "migrate", "--from", "DFW", "--to", "IAD", "--server", &server,
        ];
        args.extend(bad.iter().copied());
        let out = w.command_as("human", &args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?} names the flag: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(w.state.path()).unwrap().count(),
        0,
        "no state file"
    );
    // A healthy migration stays readable when its resume is given a bad interval.
    let run = w.migrate(&["--server", &server]).await;
    let id = run.id();
    for bad in ["NaN", "inf", "-1"] {
        let out = w
            .command_as("human", &["resume", &id, "--poll-interval", bad])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "resume --poll-interval {bad}");
        let status = w
            .command_as("human", &["status", &id])
            .output()
            .await
            .unwrap();
        assert_eq!(
            status.status.code(),
            Some(0),
            "the state file still reads back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_region_on_both_sides_is_refused() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let out = w
        .command_as(
            "human",
            &[
                "migrate", "--from", "DFW", "--to", "dfw", "--server", &server,
            ],
        )
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("same region"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_the_same_migrate_again_names_the_unfinished_one_instead_of_duplicating() {
    let w = World::start(seeded()).await;
    // The first run stops resumably: its token expires at createImage and the re-login is refused.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Compute, "POST", Action::ExpireTokens)
            .in_region("DFW")
            .path("/action")
            .firing(1, 1),
        Rule::new(
            Service::Identity,
            "POST",
            Action::Fail {
                status: 503,
                retry_after_secs: None,
            },
        )
        .firing(2, 100),
    ]));
    let server = w.server();
    let first = w.migrate(&["--server", &server, "--retries", "0"]).await;
    assert_eq!(first.code, 1, "{}", first.error());
    let id = first.id();
    w.sim.set_faults(Plan::default());
    let again = w.migrate(&["--server", &server]).await;
    assert_eq!(again.code, 2, "refused");
    assert!(again.error().contains(&id), "{}", again.error());
    assert!(again.error().contains(&format!("imgferry resume {id}")));
    assert_eq!(w.created("snapshot"), 0, "the refused run created nothing");
    // --new starts another on purpose.
    let second = w.migrate(&["--server", &server, "--new"]).await;
    assert_eq!(second.code, 0, "{}", second.error());
    assert_ne!(second.id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_open_to_others_is_tightened_and_said_so() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["status", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("755") && stderr.contains("700"), "{stderr}");
}

/// Runs `args` (human output) and returns (exit code, stderr).
async fn human(w: &World, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = w.command_as("human", args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_problems_are_final_and_never_offered_a_resume() {
    let w = World::start(seeded()).await;
    // A source server that does not exist.
    let args = World::migrate_args(&["--server", "0b5e0b5e-0000-4000-8000-000000000000"]);
    let (code, stderr) = human(&w, &args, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not in DFW"), "{stderr}");
    assert!(!stderr.contains("to continue"), "{stderr}");
    assert_eq!(w.created("snapshot"), 0);
    // A destination container Swift refuses, found before anything is created.
    let long = "c".repeat(300);
    let server = w.server();
    let args = World::migrate_args(&["--server", &server, "--dst-container", &long, "--new"]);
    let (code, stderr) = human(&w, &args, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--dst-container"), "{stderr}");
    assert_eq!(w.created("snapshot"), 0);
    // A state directory that cannot be created.
    let (code, stderr) = human(&w, &["status", "--state-dir", "/dev/null/state"], &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/dev/null/state"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_cannot_climb_out_of_their_url_path() {
    let w = World::start(seeded()).await;
    for bad in ["../../../identity", "a/b", ""] {
        let args = World::migrate_args(&["--server", bad]);
        let (code, stderr) = human(&w, &args, &[]).await;
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("--server"), "{stderr}");
    }
    // Anything else is looked up by id or name among the region's servers (a value that is not
    // a server id is a name): not found, final.
    let args = World::migrate_args(&["--server", "..", "--new"]);
    let (code, stderr) = human(&w, &args, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no server with the id or name .."),
        "{stderr}"
    );
    assert_eq!(w.created("snapshot"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_must_log_in_where_and_as_whom_the_migration_started() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // Stop the migration resumably: every export status GET fails.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "GET",
            Action::Fail {
                status: 404,
                retry_after_secs: None,
            },
        )
        .in_region("DFW")
        .path("/tasks/")
        .firing(1, 1),
    ]));
    let first = w.migrate(&["--server", &server]).await;
    assert_eq!(first.code, 1, "{}", first.error());
    w.sim.set_faults(Plan::default());
    let id = first.id();
    let other = "http://127.0.0.2:9/v2.0";
    let (code, stderr) = human(&w, &["resume", &id], &[("RAX_IDENTITY_URL", other)]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(other) && stderr.contains(&w.sim.identity_url()),
        "{stderr}"
    );
    let (code, stderr) = human(&w, &["resume", &id], &[("RAX_USERNAME", "someone-else")]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("someone-else"), "{stderr}");
    let resumed = w.resume(&id).await;
    assert_eq!(resumed.code, 0, "{}", resumed.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_vhd_rewritten_during_the_upload_is_caught() {
    let w = World::start(seeded()).await;
    let original = crate::support::good_vhd();
    let path = w.file("disk.vhd", &original);
    // Slow uploads, so the file can be rewritten while they run.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Files,
            "PUT",
            Action::Throttle {
                bytes_per_sec: 2 << 20,
            },
        )
        .in_region("IAD")
        .path(".segments/")
        .firing(1, 1000),
    ]));
    let args = World::migrate_args(&["--vhd", path.to_str().unwrap()]);
    let child = w.command(&args).output();
    let rewrite = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.sim.stats().bytes_in.get("IAD").copied().unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the upload never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Same size, other bytes in the middle: a torn image if it went unnoticed.
        let mut changed = original.clone();
        let mid = changed.len() / 2;
        changed[mid..mid + 4096].fill(0xA5);
        std::fs::write(&path, &changed).unwrap();
    };
    let (out, ()) = tokio::join!(child, rewrite);
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("changed after it was validated"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_says_where_it_pointed_and_a_fifo_is_refused() {
    let url = peer(|mut s| async move {
        let answer = "HTTP/1.1 302 Found\r\nlocation: https://elsewhere.example/v2.0/tokens\r\ncontent-length: 0\r\n\r\n";
        let _ = s.write_all(answer.as_bytes()).await;
    })
    .await;
    let w = World::start(seeded()).await;
    let server = w.server();
    let args = World::migrate_args(&["--server", &server]);
    let (code, stderr) = human(&w, &args, &[("RAX_IDENTITY_URL", &url)]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("redirect"), "{stderr}");
    assert!(
        stderr.contains("https://elsewhere.example/v2.0/tokens"),
        "{stderr}"
    );
    // A named pipe would block the validator and could not be read twice.
    let fifo = w.files.path().join("pipe.vhd");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let args = World::migrate_args(&["--vhd", fifo.to_str().unwrap()]);
    let started = Instant::now();
    let (code, stderr) = human(&w, &args, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_read_only_state_directory_is_a_usage_error_found_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // A read-only bind mount: the one way to make a directory unwritable for root too.
    let mounted = std::process::Command::new("mount")
        .args(["-o", "bind,ro"])
        .arg(&state)
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot make a read-only bind mount here");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&state);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["status", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not writable"), "{stderr}");
}
