//! Secrets and local safety: a full migration at trace level never shows the API key, password or
//! any token; a full disk (a file-size limit) while writing a spill file or the state file gives a
//! clear, resumable error and leaves the previous state intact; a damaged state file is refused and
//! kept; hostile answers (a redirect to another host, absurd sizes) are clear errors.

use std::process::Stdio;

use imgferry::sim::{Account, SimConfig};

use crate::support::{World, files_under, good_vhd, seeded};

const KEY: &str = "SECRETKEY0000imgferry0000leak0000check";
const PASSWORD: &str = "SECRETPASSWORD-imgferry-leak-check";

fn secret_world_config() -> SimConfig {
    SimConfig {
        account: Account {
            username: "leakcheck".into(),
            api_key: KEY.into(),
            password: PASSWORD.into(),
            ..Account::default()
        },
        ..seeded()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output_or_state_file_at_trace_level() {
    let w = World::start(secret_world_config()).await;
    let server = w.server();
    let mut outputs = Vec::new();
    for (secret_env, output) in [("RAX_API_KEY", "human"), ("RAX_PASSWORD", "json")] {
        let args = World::migrate_args(&["--server", &server, "--boot", "general1-2", "-vvv"]);
        let mut c = w.command_as(output, &args);
        c.env("RUST_LOG", "trace").env("RUST_BACKTRACE", "1");
        c.env_remove("RAX_API_KEY");
        c.env("RAX_USERNAME", "leakcheck");
        c.env(
            secret_env,
            if secret_env == "RAX_API_KEY" {
                KEY
            } else {
                PASSWORD
            },
        );
        let out = c.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            &stderr[stderr.len().saturating_sub(3000)..]
        );
        assert!(stderr.contains("trace: "), "trace logging was on");
        outputs.push((format!("{output} stdout"), stdout));
        outputs.push((format!("{output} stderr"), stderr));
    }
    // A failing run too: errors must not quote secrets either.
    let mut c = w.command(&[
        "migrate", "--from", "DFW", "--to", "IAD", "--server", "nope", "-vvv",
    ]);
    c.env("RUST_LOG", "trace")
        .env("RAX_USERNAME", "leakcheck")
        .env("RAX_API_KEY", "wrong-but-secret-KEY-42");
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(5));
    outputs.push((
        "failed stdout".into(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ));
    outputs.push((
        "failed stderr".into(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    outputs.extend(files_under(w.state.path()));
    let tokens = w.sim.issued_tokens();
    assert!(tokens.len() >= 2, "tokens were issued: {tokens:?}");
    let mut secrets: Vec<&str> = vec![KEY, PASSWORD, "wrong-but-secret-KEY-42"];
    secrets.extend(tokens.iter().map(String::as_str));
    for (name, text) in &outputs {
        for s in &secrets {
            assert!(
                !text.contains(s),
                "a secret ({}…) appears in {name}",
                &s[..6]
            );
        }
    }
}

#[test]
fn credentials_debug_redacts() {
    use imgferry::credentials::{Credentials, Secret};
    let c = Credentials {
        username: "u".into(),
        secret: Secret::ApiKey(KEY.into()),
        tenant: None,
    };
    let shown = format!("{c:?} {:?}", c.secret);
    assert!(!shown.contains(KEY), "{shown}");
    let auth = imgferry::api::auth::Auth::fixed(KEY);
    assert!(!format!("{auth:?}").contains(KEY));
}

/// Runs imgferry under a file-size limit (`ulimit -f`, in KiB) with SIGXFSZ ignored, so a write past
/// the limit fails with EFBIG exactly as a write to a full disk fails with ENOSPC.
fn limited(w: &World, kib: u64, args: &[&str]) -> std::process::Output {
    let exe = env!("CARGO_BIN_EXE_imgferry");
    let a = w.sim.account();
    let quoted: Vec<String> = args.iter().map(|s| format!("'{s}'")).collect();
    std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {kib}; exec '{exe}' --output json {}",
            quoted.join(" ")
        ))
        .env("RAX_IDENTITY_URL", w.sim.identity_url())
        .env("RAX_USERNAME", &a.username)
        .env("RAX_API_KEY", &a.api_key)
        .env("IMGFERRY_STATE_DIR", w.state.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON events a run printed.
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn last_error(out: &std::process::Output) -> String {
    events(out)
        .iter()
        .rev()
        .find(|v| v["event"] == "error")
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn started_id(out: &std::process::Output) -> String {
    events(out)
        .iter()
        .find(|v| v["event"] == "started")
        .and_then(|v| v["id"].as_str())
        .expect("started")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_spilling_is_a_clear_resumable_error() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // 512 KiB: the state file fits, a 1 MiB spill file does not.
    let args = World::migrate_args(&["--server", &server, "--boot", "general1-2"]);
    let w2 = &w;
    let out = tokio::task::block_in_place(|| limited(w2, 512, &args));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = last_error(&out);
    assert!(
        err.contains("File too large") || err.contains("No space"),
        "{err}"
    );
    assert!(err.contains(".work"), "names the spill file: {err}");
    let id = started_id(&out);
    let status = w.run(&["status", &id]).await;
    // The first spill happens in `Transferring`, or in `Exporting` when the pipelined copy got to
    // a listed segment before the export finished: either way the same resumable error.
    let step = &status.events[0]["migration"]["step"];
    assert!(step == "Transferring" || step == "Exporting", "{step}");
    // The spill files are gone, so they cannot keep the disk full.
    let work = w.state.path().join(format!("{id}.work"));
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    // resume takes --concurrency (fewer segments in flight need less disk).
    let fewer = w
        .run(&[
            "resume",
            &id,
            "--concurrency",
            "1",
            "--poll-interval",
            "0.02",
        ])
        .await;
    w.assert_migrated(&fewer, &w.source_sha256());
    let resumed = w.resume(&id).await;
    w.assert_migrated(&resumed, &w.source_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_saving_state_keeps_the_previous_state() {
    let w = World::start(seeded()).await;
    let path = w.file("disk.vhd", &good_vhd());
    // 4 KiB: the first state file fits; the one with the transfer plan (16 pieces) does not.
    let args = World::migrate_args(&["--vhd", path.to_str().unwrap()]);
    let w2 = &w;
    let out = tokio::task::block_in_place(|| limited(w2, 4, &args));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = last_error(&out);
    assert!(err.contains("cannot write the state file"), "{err}");
    assert!(err.contains("previous state is intact"), "{err}");
    let id = started_id(&out);
    // The previous state is whole and parses; no temporary file is left behind.
    let status = w.run(&["status", &id]).await;
    assert_eq!(status.events[0]["migration"]["step"], "Planned");
    let leftovers: Vec<_> = std::fs::read_dir(w.state.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let resumed = w.resume(&id).await;
    assert_eq!(resumed.code, 0, "{resumed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_refused_and_kept() {
    let w = World::start(seeded()).await;
    let file = w.state.path().join("m-damaged.json");
    std::fs::write(&file, b"{\"version\": 1, \"id\": \"m-dam").unwrap();
    let run = w.resume("m-damaged").await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("damaged"), "{}", run.error());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"{\"version\": 1, \"id\": \"m-dam"
    );
    let mut newer = serde_json::json!({"version": 7, "id": "m-newer"});
    newer["plan"] = serde_json::json!({});
    std::fs::write(w.state.path().join("m-newer.json"), newer.to_string()).unwrap();
    let run = w.resume("m-newer").await;
    assert_eq!(run.code, 2);
    assert!(run.error().contains("upgrade imgferry"), "{}", run.error());
}
