//! The export pipelined into the transfer (docs/state-machine.md, "Pipelining"): segments are
//! copied while the simulated export is still writing them, re-checked when it is done, and a
//! kill in the middle resumes. Each test fails on the code before pipelining (no piece was copied
//! before the export finished, and nothing re-checked what was).

use std::time::Duration;

use imgferry::sim::{ExportShape, SimConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{MIB, Run, World, refs, seeded, server_args};

/// The seeded 24 MiB server (about 12 MiB exported, 1 MiB segments), written at `rate`.
fn slow_export(rate: u64, rewrite: Option<usize>) -> SimConfig {
    SimConfig {
        export_segment_size: MIB,
        export: ExportShape {
            rate: Some(rate),
            rewrite_segment: rewrite,
            ..ExportShape::default()
        },
        ..seeded()
    }
}

/// Pieces done before the state file recorded `Exported`: copied while the export ran.
fn copied_during_export(run: &Run) -> usize {
    let exported = run
        .events
        .iter()
        .position(|e| e["event"] == "state" && e["step"] == "Exported")
        .expect("the export finished");
    run.events[..exported]
        .iter()
        .filter(|e| e["event"] == "transfer" && e["detail"]["event"] == "piece_done")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_copied_while_the_export_is_still_writing_them() {
    let w = World::start(slow_export(8 * MIB, None)).await;
    let args = server_args(&w);
    let run = w.run(&refs(&args)).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
    let early = copied_during_export(&run);
    let total = run.report()["segments"].as_u64().unwrap_or(0) as usize;
    assert!(
        early >= total / 2,
        "{early} of {total} pieces copied during the export"
    );
    // Nothing was sent twice: every piece was done once, during the export or after it.
    let done = run
        .events
        .iter()
        .filter(|e| e["event"] == "transfer" && e["detail"]["event"] == "piece_done")
        .count();
    assert_eq!(done, total, "each piece copied exactly once");
    // And --no-pipeline waits for the export as before.
    let w = World::start(slow_export(8 * MIB, None)).await;
    let mut args = server_args(&w);
    args.push("--no-pipeline".into());
    let run = w.run(&refs(&args)).await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(copied_during_export(&run), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_the_export_rewrites_after_it_was_copied_is_copied_again() {
    let w = World::start(slow_export(2 * MIB, Some(2))).await;
    let args = server_args(&w);
    let run = w.run(&refs(&args)).await;
    // The imported bytes are the final export's, not the damaged first version of segment 2.
    w.assert_migrated(&run, &w.source_sha256());
    let warned = run.events.iter().any(|e| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains(".vhd-00002 changed after it was copied"))
    });
    assert!(warned, "the rewrite was found by the final check: {run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_pipelined_copy_resumes() {
    let w = World::start(slow_export(4 * MIB, None)).await;
    let args = server_args(&w);
    let mut child = w.command(&refs(&args)).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = String::new();
    let mut pieces = 0;
    while pieces < 3 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("pieces are copied")
            .unwrap()
            .expect("still running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "started" {
            id = v["id"].as_str().unwrap().to_string();
        }
        if v["event"] == "state" && v["step"] == "Exported" {
            panic!("the export finished before the kill: the test did not test pipelining");
        }
        if v["event"] == "transfer" && v["detail"]["event"] == "piece_done" {
            pieces += 1;
        }
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let run = w.resume(&id).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicted_rejection_deletes_what_was_staged() {
    let w = World::start(slow_export(8 * MIB, None)).await;
    // An image (whose min_disk says nothing) rather than a server, whose 40 GB flavor disk would
    // be refused before imaging under this limit. The seeded disk is 24 MiB: over the limit, the
    // pre-flight of the export predicts a rejection.
    let image = w.base_image();
    let mut args: Vec<String> = World::migrate_args(&["--image", &image])
        .into_iter()
        .map(str::to_string)
        .collect();
    args.extend(["--max-virtual-size".into(), "16MiB".into()]);
    let run = w.run(&refs(&args)).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(copied_during_export(&run) > 0, "something was staged first");
    let url = format!(
        "{}/imgferry-imports?format=json",
        w.sim.object_store_url("IAD")
    );
    let listed: Vec<Value> = reqwest::Client::new()
        .get(&url)
        .header("X-Auth-Token", w.sim.issue_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty(), "staged segments left behind: {listed:?}");
}

/// The pipelined copy against real OpenStack Swift: the export writes its segments into a real
/// Swift account over time, imgferry lists and copies them from there while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelined_copy_reads_an_export_on_real_swift() {
    let Some(swift) = crate::real_swift::swift_url() else {
        return;
    };
    let mut config = slow_export(8 * MIB, None);
    config.object_stores.insert(
        "DFW".into(),
        format!("{swift}/v1/AUTH_pipe{}", std::process::id()),
    );
    let w = World::start(config).await;
    let args = server_args(&w);
    let run = w.run(&refs(&args)).await;
    w.assert_migrated(&run, &w.source_sha256());
    assert!(
        copied_during_export(&run) > 0,
        "copied from Swift while the export ran"
    );
    assert_eq!(
        w.sim.stats().bytes_in.get("DFW").copied().unwrap_or(0),
        0,
        "the export went to Swift"
    );
}

/// No source says an export writes its manifest last or its segments in order. With the manifest
/// first and the segments last to first, a migration (pipelined or not) still ends with the
/// exported bytes, created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_writes_its_manifest_first_and_segments_backwards_still_moves_right() {
    for pipelined in [true, false] {
        let mut config = slow_export(8 * MIB, None);
        config.export.manifest_first = true;
        config.export.reverse_order = true;
        let w = World::start(config).await;
        let mut args = server_args(&w);
        if !pipelined {
            args.push("--no-pipeline".into());
        }
        let run = w.run(&refs(&args)).await;
        w.assert_migrated(&run, &w.source_sha256());
        w.assert_created_once(1);
    }
}
