//! `migrate --to-file` (docs/state-machine.md, "Ending at a file"): the export downloaded into a
//! local VHD that is verified, validated, renamed into place only when complete, and resumable
//! after a kill without fetching finished pieces again. Each test fails on the code before
//! `--to-file` (the flag did not exist).

use std::time::Duration;

use imgferry::sim::{Plan, SimConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{MIB, World, refs, seeded, sha256_file};

/// `migrate --from DFW --to-file PATH --server web-1` with fast polling and 1 MiB pieces.
fn to_file_args(w: &World, path: &str) -> Vec<String> {
    [
        "migrate",
        "--from",
        "DFW",
        "--to-file",
        path,
        "--poll-interval",
        "0.02",
        "--segment-size",
        "1MiB",
        "--concurrency",
        "3",
        "--server",
    ]
    .into_iter()
    .map(str::to_string)
    .chain([w.server()])
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ends_at_a_validated_file_identical_to_its_export() {
    let w = World::start(seeded()).await;
    let path = w.files.path().join("web-1.vhd");
    let args = to_file_args(&w, path.to_str().unwrap());
    let run = w.run(&refs(&args)).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["step"], "Done");
    assert_eq!(r["file"], path.to_str().unwrap());
    assert!(
        !w.files.path().join("web-1.vhd.part").exists(),
        "the .part file was renamed"
    );
    let export = r["export"].as_str().expect("an export");
    let bytes = w.export_bytes(export).await;
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    let want = hex::encode(Sha256::digest(&bytes));
    assert_eq!(sha256_file(&path), want, "file bytes = export bytes");
    assert_eq!(r["sha256"], want, "recorded digest = export digest");
    // The file is a VHD Cloud Images would import.
    let v = w.run(&["validate", path.to_str().unwrap()]).await;
    assert_eq!(v.code, 0, "{}", v.stderr);
    // Nothing was uploaded, imported or booted anywhere.
    let created = w.sim.stats().created;
    for kind in ["import_task", "imported_image", "server"] {
        assert_eq!(
            created.get(kind).map_or(0, Vec::len),
            0,
            "{kind}: {created:?}"
        );
    }
    let stats = w.sim.stats();
    assert_eq!(
        stats.bytes_in.get("IAD").copied().unwrap_or(0),
        0,
        "nothing sent to IAD"
    );
    assert!(
        !stats
            .created
            .values()
            .flatten()
            .any(|n| n.contains("imgferry-imports")),
        "nothing written to Cloud Files: {:?}",
        stats.created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_download_resumes_without_fetching_finished_pieces_again() {
    let w = World::start(SimConfig {
        faults: Plan {
            throttle_bytes_per_sec: Some(4 * MIB),
            rules: vec![],
        },
        ..seeded()
    })
    .await;
    let path = w.files.path().join("web-1.vhd");
    let args = to_file_args(&w, path.to_str().unwrap());
    let mut child = w.command(&refs(&args)).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut id, mut pieces) = (String::new(), 0u64);
    while pieces < 4 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("pieces are written")
            .unwrap()
            .expect("still running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "started" {
            id = v["id"].as_str().unwrap().to_string();
        }
        if v["event"] == "transfer" && v["detail"]["event"] == "piece_done" {
            pieces += 1;
        }
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(
        !path.exists(),
        "nothing at PATH before the download is complete"
    );
    assert!(w.files.path().join("web-1.vhd.part").exists());
    let sent_before = sent_from_dfw(&w);
    let run = w.resume(&id).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    let len = std::fs::metadata(&path).unwrap().len();
    let again = sent_from_dfw(&w) - sent_before;
    // The resumed run fetches at most what was not recorded before the kill (pieces of 1 MiB; the
    // last piece reported may not have been saved yet), plus a little for the API's answers.
    let most = len - (pieces - 1) * MIB + MIB / 2;
    assert!(
        again <= most,
        "{again} bytes fetched again of a {len}-byte image, {pieces} MiB were done before the kill"
    );
    let bytes = w.export_bytes(r["export"].as_str().unwrap()).await;
    assert_eq!(sha256_file(&path), hex::encode(Sha256::digest(&bytes)));
}

/// Response bytes the simulated DFW has sent so far.
fn sent_from_dfw(w: &World) -> u64 {
    w.sim.stats().bytes_out.get("DFW").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_file_refuses_to_overwrite_and_what_it_cannot_do() {
    let w = World::start(seeded()).await;
    let taken = w.file("taken.vhd", b"mine");
    let args = to_file_args(&w, taken.to_str().unwrap());
    let run = w.run(&refs(&args)).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("already exists"), "{}", run.error());
    assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
    let missing_dir = w.files.path().join("no/such/dir/x.vhd");
    let run = w
        .run(&refs(&to_file_args(&w, missing_dir.to_str().unwrap())))
        .await;
    assert_eq!(run.code, 2);
    assert!(
        run.error().contains("directory does not exist"),
        "{}",
        run.error()
    );
    // --to-file with --to, or with a fleet, is a usage error before anything is created.
    let path = w.files.path().join("x.vhd");
    let mut both = to_file_args(&w, path.to_str().unwrap());
    both.extend(["--to".into(), "IAD".into()]);
    assert_eq!(w.run(&refs(&both)).await.code, 2);
    let mut fleet = to_file_args(&w, path.to_str().unwrap());
    fleet.extend(["--server".into(), w.server()]);
    assert_eq!(w.run(&refs(&fleet)).await.code, 2);
    assert!(w.sim.stats().created.is_empty());
}
