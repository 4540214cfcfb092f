//! The built binary, driven as a user would: exit codes, human and JSON output, errors.

use std::path::Path;
use std::process::{Command, Output};

use imgferry::vhd::build::{Builder, Kind, Style};

use crate::support::MIB;

fn imgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run imgferry")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn good_and_bad(dir: &Path) -> (String, String) {
    let good = Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
        .block(0, 1)
        .build();
    let mut bad = good.clone();
    bad.edit_footers(true, |f| f[60..64].copy_from_slice(&4u32.to_be_bytes()));
    (
        write(dir, "good.vhd", &good.bytes),
        write(dir, "child.vhd", &bad.bytes),
    )
}

#[test]
fn validate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = good_and_bad(dir.path());
    assert_eq!(imgferry(&["validate", &good]).status.code(), Some(0));
    assert_eq!(imgferry(&["validate", &good, &bad]).status.code(), Some(3));
    let missing = dir.path().join("missing.vhd").display().to_string();
    let out = imgferry(&["validate", &good, &missing]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing.vhd"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    // A directory is unreadable as a VHD, with a clear message.
    let out = imgferry(&["validate", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory"));
}

#[test]
fn validate_human_output_names_code_meaning_and_advice() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = good_and_bad(dir.path());
    let out = imgferry(&["validate", &good, &bad]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("good.vhd: OK"), "{stdout}");
    assert!(stdout.contains("child.vhd: REJECTED"), "{stdout}");
    assert!(
        stdout.contains("code 721") && stdout.contains("parent disk"),
        "{stdout}"
    );
    assert!(stdout.contains("what to do:"), "{stdout}");
}

#[test]
fn validate_json_is_one_object_per_file_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = good_and_bad(dir.path());
    let out = imgferry(&["--output", "json", "validate", &good, &bad]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let good = &lines[0];
    for key in [
        "file",
        "verdict",
        "disk_type",
        "virtual_size",
        "physical_size",
        "creator",
        "unique_id",
        "timestamp",
        "block_size",
        "bat",
        "problems",
        "warnings",
        "io",
    ] {
        assert!(good.get(key).is_some(), "missing {key} in {good}");
    }
    assert_eq!(good["verdict"]["accepted"], true);
    assert_eq!(good["bat"]["allocated"], 1);
    assert_eq!(good["virtual_size"]["derived_from"], "current_size");
    let bad = &lines[1];
    assert_eq!(bad["verdict"]["code"], 721);
    assert!(
        bad["verdict"]["meaning"]
            .as_str()
            .unwrap()
            .contains("parent")
    );
    let problem = &bad["problems"][0];
    for key in ["code", "field", "offset", "found", "expected", "detail"] {
        assert!(problem.get(key).is_some(), "missing {key} in {problem}");
    }
}

#[test]
fn size_limits_are_options() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = good_and_bad(dir.path());
    assert_eq!(
        imgferry(&["validate", "--max-virtual-size", "16MiB", &good])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        imgferry(&["validate", "--max-physical-size", "1MiB", &good])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        imgferry(&["validate", "--max-virtual-size", "22MiB", &good])
            .status
            .code(),
        Some(0)
    );
    let out = imgferry(&["validate", "--max-virtual-size", "lots", &good]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_runs_a_whole_migration_and_verifies_it() {
    let state = tempfile::tempdir().unwrap();
    let out = imgferry(&[
        "demo",
        "--step-seconds",
        "0.2",
        "--disk-size",
        "64MiB",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("is done"), "{stdout}");
    assert!(
        stdout.contains("Verified: the image imported in IAD"),
        "{stdout}"
    );
    assert!(stdout.contains("RAX_API_KEY=<api key>"), "{stdout}");
    // Not a terminal here, so progress is plain lines on stderr, one per step, named as the
    // documented steps are (not as the state machine's enum).
    for step in [
        "image the server",
        "export to Cloud Files",
        "copy to IAD",
        "import",
        "boot",
    ] {
        assert!(stderr.contains(&format!("==> {step}")), "{stderr}");
    }
}

#[test]
fn plain_http_to_a_remote_identity_endpoint_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["migrate", "--from", "DFW", "--to", "IAD", "--server", "abc"])
        .args(["--identity-url", "http://192.0.2.10:5000/v2.0"])
        .env("RAX_USERNAME", "u")
        .env("RAX_API_KEY", "k")
        .env("IMGFERRY_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not https; plain http is allowed only for loopback"),
        "{stderr}"
    );
}

#[test]
fn commands_without_credentials_say_what_is_missing() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["migrate", "--from", "DFW", "--to", "IAD", "--server", "abc"])
        .env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY")
        .env_remove("RAX_PASSWORD")
        .env("IMGFERRY_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RAX_USERNAME is not set"), "{stderr}");
    let status = imgferry(&["status", "--state-dir", state.path().to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no migrations"));
    let resume = imgferry(&[
        "resume",
        "m-nope",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(resume.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&resume.stderr).contains("no migration m-nope"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(imgferry(&[]).status.code(), Some(2));
    assert_eq!(imgferry(&["validate"]).status.code(), Some(2));
    assert_eq!(imgferry(&["migrate", "--to", "IAD"]).status.code(), Some(2));
    assert_eq!(
        imgferry(&[
            "migrate", "--from", "DFW", "--to", "IAD", "--server", "a", "--image", "b"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(imgferry(&["--help"]).status.code(), Some(0));
}

#[test]
fn sim_serve_refuses_bad_configuration() {
    let out = imgferry(&["sim", "serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "faults.json",
        b"{\"rules\": [{\"action\": {\"kind\": \"explode\"}}]}",
    );
    let out = imgferry(&["sim", "serve", "--faults", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fault plan") && stderr.contains("faults.json"),
        "{stderr}"
    );
    let out = imgferry(&["sim", "serve", "--server", "web:lots:0.5"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sim_serve_prints_the_environment_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let faults = write(
        dir.path(),
        "faults.json",
        br#"{"rules": [{"service": "compute", "action": {"kind": "fail", "status": 503}}]}"#,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args([
            "sim",
            "serve",
            "--faults",
            &faults,
            "--server",
            "web:8MiB:0.5",
            "--step-seconds",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("# stats:");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(
        text.contains("export RAX_IDENTITY_URL=http://127.0.0.1:"),
        "{text}"
    );
    // The fault file is in force: the first compute request fails with 503, the next succeeds.
    let value = |prefix: &str| {
        seen.iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .to_string()
    };
    let (identity, key) = (
        value("export RAX_IDENTITY_URL="),
        value("export RAX_API_KEY="),
    );
    let compute = seen
        .iter()
        .find_map(|l| l.strip_prefix("DFW: servers "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let statuses = tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let http = reqwest::Client::new();
        let auth = serde_json::json!({"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "demo", "apiKey": key}}});
        let v: serde_json::Value = http
            .post(format!("{identity}/tokens"))
            .json(&auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = v["access"]["token"]["id"].as_str().unwrap().to_string();
        let mut statuses = Vec::new();
        for _ in 0..2 {
            let r = http
                .get(format!("{compute}/servers"))
                .header("X-Auth-Token", &token)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        statuses
    });
    assert_eq!(statuses, [503, 200]);
    assert!(
        text.contains("export RAX_USERNAME=") && text.contains("export RAX_API_KEY="),
        "{text}"
    );
    assert!(text.contains("server in DFW: web ("), "{text}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn validate_remote_without_credentials_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["validate", "--remote", "DFW", "exports/x.vhd"])
        .env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY")
        .env_remove("RAX_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RAX_USERNAME is not set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_remote_reads_an_object_by_ranges() {
    use imgferry::sim::{self, SimConfig};
    let sim = sim::spawn(SimConfig::default()).await.unwrap();
    let token = sim.issue_token();
    let files = sim.object_store_url("DFW");
    let http = reqwest::Client::new();
    let put = |name: &str, body: Vec<u8>| {
        http.put(format!("{files}/{name}"))
            .header("X-Auth-Token", &token)
            .header("Content-Length", body.len())
            .body(body)
            .send()
    };
    put("exports", vec![]).await.unwrap();
    let good = Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
        .block(0, 1)
        .build();
    put("exports/good.vhd", good.bytes.clone()).await.unwrap();
    put("exports/raw.img", vec![0; 1 << 20]).await.unwrap();
    let a = sim.account().clone();
    let run = |args: Vec<String>, key: String| {
        let identity = sim.identity_url();
        let user = a.username.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_imgferry"))
                .args(&args)
                .args(["--identity-url", &identity])
                .env("RAX_USERNAME", user)
                .env("RAX_API_KEY", key)
                .env_remove("RAX_PASSWORD")
                .output()
                .await
                .unwrap()
        }
    };
    let args = |obj: &str| {
        vec![
            "--output".into(),
            "json".into(),
            "validate".into(),
            "--remote".into(),
            "dfw".into(),
            obj.into(),
        ]
    };
    let out = run(args("exports/good.vhd"), a.api_key.clone()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["accepted"], true);
    assert!(v["io"]["bytes_read"].as_u64().unwrap() < 8192);
    let out = run(args("exports/raw.img"), a.api_key.clone()).await;
    assert_eq!(out.status.code(), Some(3));
    let out = run(args("exports/missing.vhd"), a.api_key.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    let out = run(args("exports/good.vhd"), "wrong-key".into()).await;
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("wrong-key"),
        "the secret never appears"
    );
    let mut lon = args("exports/good.vhd");
    lon[4] = "LON".into();
    let out = run(lon, a.api_key.clone()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("available: DFW, IAD"));
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
            .args(args)
            .output()
            .expect("run imgferry");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(script.contains("imgferry"), "{shell}: {script}");
        assert!(script.contains("migrate"), "{shell}");
        assert!(script.contains("poll-interval"), "{shell}");
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH imgferry 1"), "{man}");
    assert!(man.contains("resume"), "{man}");
    // Each command has its own page with its own options.
    let page = run(&["man", "migrate"]);
    assert!(page.contains(".TH imgferry-migrate 1"), "{page}");
    assert!(page.contains("poll\\-interval"), "{page}");
    assert!(page.contains("max\\-virtual\\-size"), "{page}");
}

#[test]
fn the_default_import_limit_is_160_gib() {
    // Rackspace raised the limit from 40 GB to 160 GB in 2019 (rackspace-how-to PRs #3219, #3344).
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, size: u64| {
        let img = Builder::new(Kind::Dynamic, Style::Qemu, size)
            .block(0, 7)
            .build();
        let path = dir.path().join(name);
        std::fs::write(&path, &img.bytes).unwrap();
        path.display().to_string()
    };
    let forty_one = write("41g.vhd", 41 << 30);
    let at_limit = write("160g.vhd", 160 << 30);
    let over = write("161g.vhd", 161 << 30);
    assert_eq!(imgferry(&["validate", &forty_one]).status.code(), Some(0));
    assert_eq!(imgferry(&["validate", &at_limit]).status.code(), Some(0));
    let out = imgferry(&["validate", &over]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("413"), "{stdout}");
    assert!(
        stdout.contains("171798691840"),
        "names the limit in force: {stdout}"
    );
    // Another cloud's limit, as before.
    let out = imgferry(&["validate", "--max-virtual-size", "40GiB", &forty_one]);
    assert_eq!(out.status.code(), Some(3));
}
