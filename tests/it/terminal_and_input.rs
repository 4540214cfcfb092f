//! What reaches a person's terminal, and what people type (hardening round 2): service text with
//! control characters is shown escaped, a fleet's booted servers show their passwords, a closed
//! pipe ends a command quietly, and servers files and flags are read as people write them. Each
//! test failed on the code before its change.

use std::process::Stdio;

use imgferry::sim::{SimConfig, Variant};

use crate::support::{World, seeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_the_service_are_shown_escaped() {
    let mut config: SimConfig = seeded();
    config.servers[0].variant = Variant {
        image_properties: vec![(
            "evil\u{1b}[2J\nkey\0".into(),
            Some("v\u{1b}]0;title\u{7}".into()),
        )],
        ..Variant::default()
    };
    let w = World::start(config).await;
    let server = w.server();
    let args = World::migrate_args(&["--server", &server]);
    let out = w.command_as("human", &args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains('\u{1b}'), "an ESC reached {name}: {text:?}");
        assert!(!text.contains('\0'), "a NUL reached {name}: {text:?}");
    }
    assert!(
        stdout.contains("evil\\u{1b}[2J\\nkey\\u{0}"),
        "the name is shown, escaped, on its report line: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shows_each_booted_servers_password_and_addresses_once() {
    let mut config = seeded();
    let mut second = config.servers[0].clone();
    second.name = "web-2".into();
    second.disk.seed = 12;
    config.servers.push(second);
    let w = World::start(config).await;
    let args = World::migrate_args(&[
        "--server",
        "web-1",
        "--server",
        "web-2",
        "--boot",
        "general1-2",
    ]);
    let out = w.command_as("human", &args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for server in ["web-1", "web-2"] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("[{server}] done:")))
            .unwrap_or_else(|| panic!("no done line for {server}: {stderr}"));
        assert!(line.contains("admin password Sim-Pass-1234"), "{line}");
        assert!(line.contains("203.0.113.10"), "{line}");
    }
}

/// Runs the binary with its stdout closed before it writes anything.
fn with_closed_stdout(args: &[&str], state: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(args)
        .env("IMGFERRY_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let state = tempfile::tempdir().unwrap();
    for args in [
        vec!["man"],
        vec!["status"],
        vec!["completions", "bash"],
        vec!["--output", "json", "status"],
    ] {
        let (code, stderr) = with_closed_stdout(&args, state.path());
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_without_all_servers_is_refused_and_servers_files_read_as_written() {
    let w = World::start(seeded()).await;
    let run = w
        .migrate(&["--server", "web-1", "--match", "^web", "--dry-run"])
        .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("--all-servers"), "{}", run.error());
    // A byte order mark and a trailing comment, as editors and people write them.
    let file = w.file("servers.txt", "\u{feff}web-1   # the web tier\n".as_bytes());
    let run = w
        .migrate(&["--servers-file", file.to_str().unwrap(), "--dry-run"])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
}
