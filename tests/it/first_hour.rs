//! What a new user meets first (the first-hour issue): each test failed on the code before its
//! change.

use crate::support::{World, seeded, sha256_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_can_be_named_by_its_name_and_a_shared_name_is_refused_naming_both() {
    let w = World::start(seeded()).await;
    // By name, as `--help` and the README's --to-file example say.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("web-1.vhd");
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--server",
            "web-1",
            "--to-file",
            target.to_str().unwrap(),
            "--poll-interval",
            "0.02",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(sha256_file(&target), w.source_sha256());
    // Recorded by id: the same migration by id is the same source.
    assert_eq!(run.report()["source_server"], w.server());
    let run = w.migrate(&["--server", "web-1", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    // Two servers of one name.
    let mut config = seeded();
    let twin = config.servers[0].clone();
    config.servers.push(twin);
    let w = World::start(config).await;
    let run = w.migrate(&["--server", "web-1", "--dry-run"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    let ids: Vec<String> = w.sim.servers("DFW").into_iter().map(|(id, _)| id).collect();
    for id in ids {
        assert!(run.error().contains(&id), "{}", run.error());
    }
    assert_eq!(w.created("snapshot"), 0);
}

#[test]
fn version_says_the_commit_and_the_target() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with(&format!("imgferry {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("\ncommit: "), "{text}");
    assert!(
        text.contains("\ntarget: x86_64") || text.contains("\ntarget: aarch64"),
        "{text}"
    );
    // -V stays short, for scripts.
    let short = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .arg("-V")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&short.stdout).lines().count(), 1);
}
