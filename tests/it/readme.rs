//! Every `imgferry` command in README.md runs as written, in order, against the simulator: a
//! README that drifts from the product fails here.
//!
//! Each line of a `sh` block that starts with `imgferry` is run by `sh` in a scratch directory,
//! with the binary on PATH and the simulator's credentials in the environment (what the README's
//! `export` lines set). Only what no README can know is filled in: the ids its examples stand for
//! (`m-3f9a1c2b7e`, `f-0123456789`, an export's object name) become those of the migrations the
//! earlier commands made. The part of a `&&` chain that runs another program (`man …`) is left to
//! the reader. `cargo` and `export` lines are the setup this test stands in for.

use std::path::Path;

use imgferry::sim::{DiskSpec, SeedServer, SimConfig};
use serde_json::Value;

use crate::support::{MIB, World, good_vhd};

fn server(name: &str, seed: u64) -> SeedServer {
    SeedServer {
        region: "DFW".into(),
        name: name.into(),
        disk: DiskSpec {
            virtual_size: 8 * MIB,
            allocated: 0.5,
            seed,
        },
        variant: Default::default(),
    }
}

/// The commands of README.md's `sh` blocks that run imgferry, in order.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        // Only imgferry's own part of a chain (`… && man imgferry-migrate` is the reader's).
        let first = t.split(" && ").next().unwrap_or_default();
        if first.starts_with("imgferry ") {
            out.push(first.to_string());
        }
    }
    out
}

/// What the state directory knows: the newest migration, the newest fleet, and any export.
fn latest(state: &Path, exports: &mut Vec<String>) -> (Option<String>, Option<String>) {
    let mut newest = |dir: &Path, prefix: &str| -> Option<String> {
        let mut found: Vec<(u64, String)> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name
                    .strip_prefix(prefix)?
                    .strip_suffix(".json")?
                    .to_string();
                let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                if let Some(x) = v["facts"]["export"].as_object() {
                    exports.push(format!(
                        "{}/{}",
                        x["container"].as_str()?,
                        x["object"].as_str()?
                    ));
                }
                Some((v["created"].as_u64()?, format!("{prefix}{id}")))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, id)| id)
    };
    let migration = newest(state, "m-");
    (migration, newest(&state.join("fleets"), "f-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_readme_runs_as_written() {
    let w = World::start(SimConfig {
        servers: vec![
            server("web-1", 1),
            server("web-2", 2),
            server("demo-web-1", 3),
        ],
        export_segment_size: MIB,
        ..SimConfig::default()
    })
    .await;
    let commands = readme_commands();
    assert!(commands.len() >= 20, "found {commands:?}");
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(work.path().join("disk.vhd"), good_vhd()).unwrap();
    // The clouds its OpenStack examples name: two projects of the simulator's Keystone v3.
    let clouds = crate::from_cloud::two_clouds(work.path(), &w.sim.keystone_url(), "RegionTwo");
    let yaml = std::fs::read_to_string(&clouds)
        .unwrap()
        .replace("  alpha:\n", "  flex:\n")
        .replace("  beta:\n", "  lab:\n");
    std::fs::write(&clouds, yaml).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_imgferry")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let account = w.sim.account();
    let mut exports = Vec::new();
    let mut failed = Vec::new();
    for command in &commands {
        let (migration, fleet) = latest(w.state.path(), &mut exports);
        let mut line = command.clone();
        if let Some(m) = &migration {
            line = line.replace("m-3f9a1c2b7e", m);
        }
        if let Some(f) = &fleet {
            line = line.replace("f-0123456789", f);
        }
        if let Some(e) = exports.first() {
            line = line.replace("imgferry-exports/0f2c8d9e-….vhd", e);
        }
        let out = tokio::process::Command::new("sh")
            .args(["-c", &line])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("HOME", &home)
            .env("RAX_IDENTITY_URL", w.sim.identity_url())
            .env("RAX_USERNAME", &account.username)
            .env("RAX_API_KEY", &account.api_key)
            .env_remove("RAX_PASSWORD")
            .env("IMGFERRY_STATE_DIR", w.state.path())
            .env("IMGFERRY_POLL_INTERVAL", "0.02")
            .env("NO_COLOR", "1")
            .output()
            .await
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        eprintln!("README: exit {code}: {line}");
        if code != 0 {
            failed.push(format!(
                "{line}\nexit {code}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n---\n"));
}
