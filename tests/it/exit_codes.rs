//! One failure, one exit code, from every command: the table of the renovation issue. Each row
//! runs the real binary against the simulator with one thing wrong and checks the code and that
//! the error is printed once, starting with `error:`.

use crate::support::{World, seeded};

/// Runs `args` with the world's environment changed by `env` (`None` removes a variable).
async fn code_of(w: &World, args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String) {
    let mut c = w.command_as("human", args);
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().await.expect("run imgferry");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_failure_gets_the_same_code_from_every_command() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let before = w.created("server") + w.created("image");
    let migrate = [
        "migrate", "--from", "DFW", "--to", "IAD", "--server", &server,
    ];
    let dry_run = [
        "migrate",
        "--from",
        "DFW",
        "--to",
        "IAD",
        "--server",
        &server,
        "--dry-run",
    ];
    let remote = ["validate", "--remote", "DFW", "exports/x.vhd"];
    let remote_unknown = ["validate", "--remote", "XYZ", "exports/x.vhd"];
    let migrate_unknown = [
        "migrate", "--from", "XYZ", "--to", "IAD", "--server", &server,
    ];
    let wrong_key = [("RAX_API_KEY", Some("wrong-key"))];
    let plain_http = [("RAX_IDENTITY_URL", Some("http://identity.example.com/v2.0"))];
    let no_user = [("RAX_USERNAME", None)];
    let nan_timeout = [("IMGFERRY_HTTP_TIMEOUT", Some("NaN"))];
    type Row<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, Option<&'a str>)],
        i32,
    );
    let rows: Vec<Row> = vec![
        ("refused login", &migrate, &wrong_key, 5),
        ("refused login", &dry_run, &wrong_key, 5),
        ("refused login", &remote, &wrong_key, 5),
        ("plain-http identity", &migrate, &plain_http, 2),
        ("plain-http identity", &dry_run, &plain_http, 2),
        ("plain-http identity", &remote, &plain_http, 2),
        ("missing user name", &migrate, &no_user, 2),
        ("missing user name", &remote, &no_user, 2),
        ("unknown region", &migrate_unknown, &[], 2),
        ("unknown region", &remote_unknown, &[], 2),
        ("non-finite timeout", &migrate, &nan_timeout, 2),
        ("non-finite timeout", &remote, &nan_timeout, 2),
    ];
    let mut wrong = Vec::new();
    for (what, args, env, want) in rows {
        let (code, stderr) = code_of(&w, args, env).await;
        let printed_once = stderr.matches("error:").count() == 1;
        if code != want || !printed_once || stderr.contains("panicked") {
            wrong.push(format!(
                "{what}: {args:?} exited {code}, want {want}\n{stderr}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n---\n"));
    let after = w.created("server") + w.created("image");
    assert_eq!(after, before, "nothing was created");
}

#[test]
fn remote_validation_without_its_arguments_says_what_is_missing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["validate", "--remote", "DFW"])
        .output()
        .expect("run imgferry");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--remote"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let w = World::start(seeded()).await;
    // Trace level: the HTTP stack logs every connection, so there is plenty to colour.
    let args = ["-vvv", "validate", "--remote", "DFW", "exports/x.vhd"];
    let (_, stderr) = code_of(&w, &args, &[("RUST_LOG", Some("trace"))]).await;
    assert!(stderr.lines().count() > 5, "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
