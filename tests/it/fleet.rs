//! Fleets (docs/fleets.md): several servers in one command, driven through the real binary
//! against the simulator. Each test would fail on the code before fleets existed (`--server`
//! took one id; `--all-servers`, `--shard` and `resume f-…` did not exist).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use imgferry::sim::faults::{Action, Plan, Rule, Service};
use imgferry::sim::{DiskSpec, ExportShape, SeedServer, SimConfig, Variant};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{MIB, Run, World, sha256_disk};

fn server(name: &str, seed: u64, variant: Variant) -> SeedServer {
    SeedServer {
        region: "DFW".into(),
        name: name.into(),
        disk: DiskSpec {
            virtual_size: 8 * MIB,
            allocated: 0.5,
            seed,
        },
        variant,
    }
}

fn fleet_world(names: &[&str]) -> SimConfig {
    SimConfig {
        servers: names
            .iter()
            .enumerate()
            .map(|(i, n)| server(n, 100 + i as u64, Variant::default()))
            .collect(),
        export_segment_size: MIB,
        ..SimConfig::default()
    }
}

/// The events of one member, by server name.
fn member_events<'a>(run: &'a Run, server: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter(|e| e["server"] == server)
        .collect()
}

fn fleet_report(run: &Run) -> &Value {
    &run.event("fleet_report")
        .unwrap_or_else(|| panic!("no fleet report: {run:#?}"))["report"]
}

/// Every imported image's bytes equal its own server's disk, and each member created exactly one
/// snapshot, export task and import task (their names carry the member's migration id).
fn assert_each_migrated_once(w: &World, report: &Value, names: &[&str]) {
    let created = w.sim.stats().created;
    for m in report["members"].as_array().unwrap() {
        let name = m["server_name"].as_str().unwrap();
        if !names.contains(&name) {
            continue;
        }
        assert_eq!(m["outcome"], "done", "{m}");
        let image = m["image"].as_str().unwrap();
        let server = m["server"].as_str().unwrap();
        assert_eq!(
            sha256_disk(w.sim.image_disk("IAD", image).unwrap()),
            sha256_disk(w.sim.server_disk("DFW", server).unwrap()),
            "{name}: imported bytes = its own server's bytes"
        );
        let id = m["migration"].as_str().unwrap();
        let snapshots = created["snapshot"]
            .iter()
            .filter(|s| s.contains(id))
            .count();
        assert_eq!(snapshots, 1, "{name}: one snapshot: {created:?}");
    }
    for kind in ["export_task", "import_task", "imported_image"] {
        assert_eq!(created[kind].len(), names.len(), "{kind}: {created:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_moves_every_server_and_one_refusal_stops_no_one() {
    let mut config = fleet_world(&["web-1", "web-2", "web-3"]);
    // Boots from a volume: its snapshot has no disk, so eligibility refuses it (exit 3).
    config.servers.push(server(
        "web-4",
        9,
        Variant {
            boot_from_volume: true,
            ..Variant::default()
        },
    ));
    config.servers.push(server("db-1", 7, Variant::default()));
    let w = World::start(config).await;
    let run = w
        .migrate(&["--all-servers", "--match", "^web-", "--parallel", "2"])
        .await;
    let report = fleet_report(&run);
    assert_eq!(
        report["members"].as_array().unwrap().len(),
        4,
        "db-1 does not match"
    );
    assert_eq!(report["done"], 3, "{report:#}");
    assert_eq!(report["rejected"], 1);
    assert_eq!(run.code, 3, "only a rejection is left: the fleet exits 3");
    assert_each_migrated_once(&w, report, &["web-1", "web-2", "web-3"]);
    // Every member's events carry its id and server, and end with its own outcome.
    for name in ["web-1", "web-2", "web-3"] {
        let events = member_events(&run, name);
        assert!(
            events
                .iter()
                .all(|e| e["member"].as_str().is_some_and(|m| m.starts_with("m-")))
        );
        assert_eq!(events.last().unwrap()["event"], "report", "{name}");
    }
    assert_eq!(
        member_events(&run, "web-4").last().unwrap()["event"],
        "error"
    );
    // status FLEET_ID reads the same table back from the files.
    let fleet = report["fleet"].as_str().unwrap();
    let status = w.run(&["status", fleet]).await;
    assert_eq!(status.code, 0);
    assert_eq!(status.events[0]["summary"]["done"], 3, "{status:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fleet_resumes_every_member_and_creates_nothing_twice() {
    let names = ["app-1", "app-2", "app-3", "app-4"];
    let w = World::start(fleet_world(&names)).await;
    // Throttled, so the kill lands while members are in flight.
    w.sim.set_faults(Plan {
        throttle_bytes_per_sec: Some(4 * MIB),
        rules: Vec::new(),
    });
    let args = World::migrate_args(&[
        "--server",
        "app-1",
        "--server",
        "app-2",
        "--server",
        "app-3",
        "--server",
        "app-4",
        "--parallel",
        "3",
    ]);
    let mut child = w.command(&args).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut fleet = String::new();
    let mut copying = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while copying.len() < 2 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("members reach the transfer")
            .unwrap()
            .expect("the fleet is still running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "fleet_started" {
            fleet = v["fleet"].as_str().unwrap().to_string();
        }
        if v["event"] == "transfer" && v["detail"]["event"] == "piece_done" {
            copying.insert(v["member"].as_str().unwrap().to_string());
        }
    }
    // SIGKILL: nothing is flushed, no handler runs.
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(fleet.starts_with("f-"));
    w.sim.set_faults(Plan::default());
    let run = w.run(&["resume", &fleet, "--poll-interval", "0.02"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let report = fleet_report(&run);
    assert_eq!(report["done"], 4);
    assert_each_migrated_once(&w, report, &names);
    assert_eq!(w.created("snapshot"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_slows_the_fleet_and_fails_no_member() {
    let w = World::start(fleet_world(&["a-1", "a-2", "a-3"])).await;
    // createImage answers 413 overLimit with a retry time, twice: Rackspace's compute rate limit.
    w.sim.set_faults(Plan::with_rules(vec![Rule {
        service: Some(Service::Compute),
        region: None,
        method: Some("POST".into()),
        path_contains: Some("/action".into()),
        path_suffix: None,
        nth: 1,
        times: 2,
        action: Action::Fail {
            status: 413,
            retry_after_secs: Some(1),
        },
    }]));
    let run = w.migrate(&["--all-servers", "--parallel", "3"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let report = fleet_report(&run);
    assert_eq!(report["done"], 3);
    assert!(report["rate_limited"].as_u64().unwrap() >= 1, "{report:#}");
    assert_eq!(w.created("snapshot"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_a_fleet_into_disjoint_parts_that_cover_it() {
    let names: Vec<String> = (1..=9).map(|i| format!("node-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::start(fleet_world(&refs)).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let run = w
            .migrate(&["--all-servers", "--dry-run", "--shard", &shard])
            .await;
        assert!(run.code == 0 || run.code == 2, "{run:#?}");
        for e in run.events.iter().filter(|e| e["event"] == "plan") {
            let server = e["server"].as_str().unwrap().to_string();
            assert!(seen.insert(server, k).is_none(), "a server in two shards");
        }
    }
    assert_eq!(seen.len(), 9, "every server in exactly one shard: {seen:?}");
    assert_eq!(w.created("snapshot"), 0, "dry runs create nothing");
    // A typo'd shard is refused before anything runs.
    let bad = w.migrate(&["--all-servers", "--shard", "4/3"]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.error().contains("--shard"), "{bad:#?}");
}

/// The index of the first event of `server` that `what` accepts.
fn first_at(run: &Run, server: &str, what: &dyn Fn(&Value) -> bool) -> usize {
    run.events
        .iter()
        .position(|e| e["server"] == server && what(e))
        .unwrap_or_else(|| panic!("{server}: no such event in {run:#?}"))
}

fn reached(step: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["event"] == "state" && e["step"] == step
}

/// Where `server`'s export was complete: its `export_done` event (the task succeeded during a
/// copy round) or its state `Exported`, whichever came first.
fn export_complete(run: &Run, server: &str) -> usize {
    first_at(run, server, &|e| {
        e["event"] == "export_done" || (e["event"] == "state" && e["step"] == "Exported")
    })
}

/// The members' server names in the order they started.
fn start_order(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "started" && e["server"].is_string())
        .map(|e| e["server"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn started(run: &Run, server: &str) -> usize {
    first_at(run, server, &|e| e["event"] == "started")
}

/// A fleet of `config`'s servers with `--parallel 1`, every connection throttled to `throttle`
/// bytes a second; the run (which must succeed) and its members in the order they started.
async fn one_place(config: SimConfig, throttle: u64) -> (Run, Vec<String>) {
    let w = World::start(config).await;
    w.sim.set_faults(Plan {
        throttle_bytes_per_sec: Some(throttle),
        rules: Vec::new(),
    });
    let run = w.migrate(&["--all-servers", "--parallel", "1"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let order = start_order(&run);
    (run, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_past_its_export_gives_its_place_to_the_next() {
    // One place: web-2 may start imaging once web-1's export is complete, while web-1's bytes
    // still move (they are bounded by --concurrency, not by --parallel). Throttled, so the first
    // member's transfer lasts long after its export is complete.
    let (run, order) = one_place(fleet_world(&["web-1", "web-2"]), 2 * MIB).await;
    let (first, second) = (order[0].as_str(), order[1].as_str());
    let first_exported = export_complete(&run, first);
    let first_uploaded = first_at(&run, first, &reached("Uploaded"));
    let second_started = started(&run, second);
    assert!(
        first_exported < second_started && second_started < first_uploaded,
        "{second} starts after {first}'s export ({first_exported}) and before its upload \
         ({first_uploaded}): it started at {second_started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_export_is_done_gives_its_place_while_its_copy_round_runs() {
    // The export writes its 1 MiB segments over about two seconds; copying one over a 256 KiB/s
    // connection takes four. So the first copy round, started on the first listed segment, is
    // still running when the export task succeeds.
    let mut config = fleet_world(&["web-1", "web-2"]);
    config.export = ExportShape {
        rate: Some(2 * MIB),
        rewrite_segment: None,
        ..ExportShape::default()
    };
    let (run, order) = one_place(config, 256 * 1024).await;
    let (first, second) = (order[0].as_str(), order[1].as_str());
    let export_done = first_at(&run, first, &|e| e["event"] == "export_done");
    let first_exported = first_at(&run, first, &reached("Exported"));
    let second_started = started(&run, second);
    assert!(
        export_done < second_started && second_started < first_exported,
        "{second} starts once {first}'s export task is done ({export_done}), before its copy \
         round ends and the step with it ({first_exported}): it started at {second_started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_parallel_exported_members_wait_for_the_link() {
    // --parallel 1: one member images and exports, and one more may be exported but not yet
    // uploaded. The third starts only when one of the first two is uploaded (either may finish
    // its transfer first), however early the second's export is complete.
    let (run, order) = one_place(fleet_world(&["web-1", "web-2", "web-3"]), 2 * MIB).await;
    let an_upload = first_at(&run, &order[0], &reached("Uploaded")).min(first_at(
        &run,
        &order[1],
        &reached("Uploaded"),
    ));
    let second_exported = export_complete(&run, &order[1]);
    let third_started = started(&run, &order[2]);
    assert!(
        an_upload < third_started && second_exported < third_started,
        "{} starts after {} or {} is uploaded ({an_upload}) and {}'s export is complete \
         ({second_exported}): it started at {third_started}",
        order[2],
        order[0],
        order[1],
        order[1]
    );
}
