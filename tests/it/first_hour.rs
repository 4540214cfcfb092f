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

/// `migrate --from DFW --to IAD --server SERVER EXTRA…`, without the test harness's fast polling
/// (so the flags under test are the only ones given).
fn dfw_to_iad<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "migrate", "--from", "DFW", "--to", "IAD", "--server", server,
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs the binary for people (`--output human`), returning the exit code, stdout and stderr.
async fn human(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = w.command_as("human", args).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_keeps_nothing_and_forget_and_clean_drop_records() {
    let w = World::start(seeded()).await;
    // Refused in its first step, before anything was created: an unknown server id and a file
    // that is not a VHD. Before, each stayed in `status` as "Failed at Planned" for ever.
    let unknown = w
        .migrate(&["--server", "00000000-0000-0000-0000-000000000000"])
        .await;
    assert_eq!(unknown.code, 2, "{unknown:#?}");
    assert!(unknown.event("error").unwrap()["resume"].is_null());
    let not_vhd = w.file("notes.vhd", b"not a disk image at all");
    let bad = w.migrate(&["--vhd", not_vhd.to_str().unwrap()]).await;
    assert_eq!(bad.code, 3, "{bad:#?}");
    assert!(w.records().is_empty(), "{:?}", w.records());
    let (_, stdout, stderr) = human(
        &w,
        &[
            "migrate",
            "--from",
            "DFW",
            "--to",
            "IAD",
            "--vhd",
            not_vhd.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        stderr.contains("nothing was created and nothing was kept"),
        "{stdout}{stderr}"
    );

    // A finished migration, and an unfinished one that holds a snapshot and an export (its
    // record made from the finished one's, stopped at "Exported").
    let done = w.migrate(&["--server", &w.server()]).await;
    assert_eq!(done.code, 0, "{done:#?}");
    let id = done.id();
    let path = w.state.path().join(format!("{id}.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["id"] = "m-aaaaaaaaaa".into();
    record["step"] = "Exported".into();
    record["facts"]["imported_image"] = serde_json::Value::Null;
    std::fs::write(
        w.state.path().join("m-aaaaaaaaaa.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let (code, _, stderr) = human(&w, &["forget", "m-aaaaaaaaaa"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("DFW: snapshot image") && stderr.contains("exported VHD"),
        "names what it holds: {stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, stdout, _) = human(&w, &["forget", "m-aaaaaaaaaa", "--force"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("still in the cloud"), "{stdout}");
    assert_eq!(w.records(), vec![id.clone()]);

    // clean: finished ones only; --dry-run drops nothing.
    let (code, stdout, _) = human(&w, &["clean", "--dry-run"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("would drop 1 record finished: {id}")),
        "{stdout}"
    );
    assert_eq!(w.records().len(), 1);
    let (code, stdout, _) = human(&w, &["clean", "--older-than", "1h"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing finished to drop"), "{stdout}");
    let (code, _, _) = human(&w, &["clean"]).await;
    assert_eq!(code, 0);
    assert!(w.records().is_empty());
    let (_, stdout, _) = human(&w, &["status"]).await;
    assert!(stdout.contains("no migrations"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_downloads_as_files_and_lists_fleets_and_all_servers_skips_what_moved() {
    let w = World::start(seeded()).await;
    let dir = tempfile::tempdir().unwrap();
    // A directory as --to-file: the file is named after the image.
    let to_dir = format!("{}/", dir.path().display());
    let run = w
        .run(&[
            "migrate",
            "--from",
            "DFW",
            "--server",
            "web-1",
            "--to-file",
            &to_dir,
            "--poll-interval",
            "20ms",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let file = dir.path().join("web-1 from DFW (imgferry).vhd");
    assert_eq!(sha256_file(&file), w.source_sha256());
    // A fleet of every server.
    let fleet = w.migrate(&["--all-servers"]).await;
    assert_eq!(fleet.code, 0, "{fleet:#?}");
    let (code, stdout, _) = human(&w, &["status"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("DFW → file"), "{stdout}");
    assert!(stdout.contains("DFW → IAD"), "{stdout}");
    assert!(
        stdout.contains("FLEET") && stdout.contains("1/1 done"),
        "{stdout}"
    );
    // Again: web-1 has moved to IAD, so there is nothing to do unless --new.
    let again = w.migrate(&["--all-servers"]).await;
    assert_eq!(again.code, 2, "{again:#?}");
    assert!(again.error().contains("already moved"), "{}", again.error());
    let forced = w.migrate(&["--all-servers", "--new", "--dry-run"]).await;
    assert_eq!(forced.code, 0, "{forced:#?}");
    assert_eq!(
        w.created("snapshot"),
        2,
        "one for the download, one for the fleet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_take_units_and_dry_runs_never_print_placeholders() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let (code, stdout, stderr) = human(
        &w,
        &dfw_to_iad(
            &server,
            &[
                "--dry-run",
                "--poll-interval",
                "30s",
                "--step-deadline",
                "12h",
                "--http-timeout",
                "2m",
                "--max-backoff",
                "1m",
            ],
        ),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains(" ?") && !stdout.contains("  by ranged"),
        "{stdout}"
    );
    assert!(stdout.contains("exporting the snapshot"), "{stdout}");
    let (code, _, stderr) = human(&w, &dfw_to_iad(&server, &["--step-deadline", "soon"])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("30s, 5m, 12h"), "{stderr}");
    // A plain number of bytes where a size is meant is refused with the likely unit.
    let (code, _, stderr) = human(&w, &dfw_to_iad(&server, &["--max-virtual-size", "40"])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("40GiB"), "{stderr}");
    // A local VHD's plan speaks of no export.
    let vhd = w.file("disk.vhd", &crate::support::good_vhd());
    let (code, stdout, _) = human(
        &w,
        &[
            "migrate",
            "--to",
            "IAD",
            "--vhd",
            vhd.to_str().unwrap(),
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("rules allow this import ("), "{stdout}");
    assert!(!stdout.contains("export"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_plain_words_and_quiet_verbose_and_the_log_file_do_what_they_say() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // A warning, as people read it: no timestamp, no module path.
    std::fs::set_permissions(
        w.state.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_, _, stderr) = human(&w, &["status"]).await;
    assert!(
        stderr.starts_with("warning: the state directory"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("WARN") && !stderr.contains("imgferry::"),
        "{stderr}"
    );
    // -v: where the credentials and the region came from.
    let mut args = dfw_to_iad(&server, &["--dry-run"]);
    args.push("-v");
    let (_, _, stderr) = human(&w, &args).await;
    assert!(stderr.contains("info: credentials: user"), "{stderr}");
    assert!(stderr.contains("source region DFW from --from"), "{stderr}");
    assert!(!stderr.contains("debug:"), "{stderr}");
    // -vv: imgferry's own requests, with status and time; not the libraries' internals.
    args.push("-v");
    let (_, _, stderr) = human(&w, &args).await;
    assert!(stderr.contains("debug: GET http://127.0.0.1"), "{stderr}");
    assert!(stderr.contains(" -> 200 in "), "{stderr}");
    assert!(
        !stderr.contains("hyper") && !stderr.contains("rustls"),
        "{stderr}"
    );
    // -q: the result only.
    let log = w.files.path().join("run.log");
    let log_arg = log.to_str().unwrap();
    let (code, stdout, stderr) = human(
        &w,
        &World::migrate_args(&["--server", &server, "-q", "--log-file", log_arg]),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "-q prints no progress");
    assert!(stdout.contains("is done"), "{stdout}");
    // The log file has the steps and requests, timestamped, and never the API key.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("imgferry::events") && text.contains("step_started"),
        "{text}"
    );
    assert!(text.contains("GET http://127.0.0.1"), "{text}");
    assert!(
        text.contains(&jiff::Zoned::now().date().to_string()),
        "timestamped: {text}"
    );
    assert!(
        !text.contains(&w.sim.account().api_key),
        "no secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_grouped_and_every_page_has_examples_environment_files_and_exit_status() {
    let w = World::start(seeded()).await;
    let (_, help, _) = human(&w, &["migrate", "--help"]).await;
    for heading in [
        "Source:",
        "Destination:",
        "Transfer:",
        "Fleet:",
        "Safety:",
        "Credentials:",
        "Network:",
        "Global options:",
        "Examples:",
        "Environment:",
        "Files:",
        "Exit status:",
    ] {
        assert!(
            help.contains(&format!("\n{heading}\n")),
            "{heading}:\n{help}"
        );
    }
    // Commands that reach no cloud take no cloud flags.
    for cmd in ["status", "man", "forget"] {
        let (_, help, _) = human(&w, &[cmd, "--help"]).await;
        let options = help.split("\nExamples:").next().unwrap();
        for flag in ["--profile", "--retries", "--identity-url", "--http-timeout"] {
            assert!(!options.contains(flag), "{cmd} offers {flag}:\n{help}");
        }
    }
    let (code, _, stderr) = human(&w, &["status", "--retries", "3"]).await;
    assert_eq!(code, 2, "{stderr}");
    // One man page per command, with the manual's sections and no Markdown.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, _) = human(&w, &["man", "--dir", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 0);
    for page in [
        "imgferry.1",
        "imgferry-migrate.1",
        "imgferry-resume.1",
        "imgferry-forget.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            text.contains(".SH EXAMPLES") && text.contains(".SH \"EXIT STATUS\""),
            "{page}"
        );
        assert!(!text.contains('`'), "{page} has Markdown backticks");
    }
    let top = std::fs::read_to_string(dir.path().join("imgferry.1")).unwrap();
    assert!(
        top.contains(".SH ENVIRONMENT") && top.contains("RAX_DST_USERNAME"),
        "{top}"
    );
    assert!(
        top.contains(".SH FILES") && top.contains("clouds.yaml"),
        "{top}"
    );
}

#[test]
fn the_demo_does_not_warn_about_its_own_directory() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["demo", "--step-seconds", "0.1", "--disk-size", "16MiB"])
        .env_remove("IMGFERRY_STATE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
