//! Kill tests: the real binary is SIGKILLed at every state boundary, in the window between each
//! creating POST and its answer, and at three points inside the transfer; then `imgferry resume`
//! must complete the migration with byte-identical results, and the simulator's counters must show
//! exactly one snapshot, export task, import task, imported image and booted server.

use std::time::Duration;

use imgferry::sim::{Action, Plan, Rule, Service};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{MIB, World, refs, seeded, server_args};

/// When to kill.
enum Trigger {
    /// On the first stdout event this matches.
    Event(Box<dyn Fn(&Value) -> bool + Send>),
    /// As soon as the simulator has created a resource of this kind (its answer is held back by a
    /// `delay_response` fault, so the client has not seen it).
    Created(&'static str),
}

/// Runs imgferry with `args` and SIGKILLs it on `trigger`. Returns the migration id.
async fn run_and_kill(w: &World, args: &[&str], trigger: Trigger) -> String {
    let mut child = w.command(args).spawn().expect("spawn imgferry");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(5)) => {
                if let Trigger::Created(kind) = &trigger
                    && w.created(kind) > 0
                {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "trigger never fired");
                continue;
            }
        };
        let Some(line) = line else { break };
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "started" {
            id = v["id"].as_str().unwrap().to_string();
        }
        if let Trigger::Event(f) = &trigger
            && f(&v)
        {
            break;
        }
    }
    // SIGKILL: no handler runs, nothing is flushed, exactly like a crash or an OOM kill.
    let _ = child.start_kill();
    let _ = child.wait().await;
    assert!(!id.is_empty(), "the run started");
    id
}

fn state_is(step: &'static str) -> Trigger {
    Trigger::Event(Box::new(move |v| {
        v["event"] == "state" && v["step"] == step
    }))
}

/// Resumes and checks the finished migration and the exactly-once creations.
async fn resume_and_check(w: &World, id: &str, servers: usize) {
    w.sim.set_faults(Plan::default());
    let run = w.resume(id).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_every_state_boundary_then_resume() {
    let started = Trigger::Event(Box::new(|v| v["event"] == "started"));
    let mut triggers: Vec<(&str, Trigger)> = vec![("Planned", started)];
    for step in [
        "Imaging",
        "ImageActive",
        "Exporting",
        "Exported",
        "Inspected",
        "Transferring",
        "Uploaded",
        "Importing",
        "Imported",
        "Booting",
        "Booted",
        "Done",
    ] {
        triggers.push((step, state_is(step)));
    }
    for (step, trigger) in triggers {
        let w = World::start(seeded()).await;
        let args = server_args(&w);
        let id = run_and_kill(&w, &refs(&args), trigger).await;
        eprintln!("killed at {step}; resuming {id}");
        resume_and_check(&w, &id, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_each_creating_post_and_its_answer() {
    let hold = |service, region: &str, method: &str, path: &str| {
        Rule::new(service, method, Action::DelayResponse { ms: 5000 })
            .in_region(region)
            .path(path)
    };
    let cases = [
        ("snapshot", hold(Service::Compute, "DFW", "POST", "/action")),
        (
            "export_task",
            hold(Service::Images, "DFW", "POST", "/tasks"),
        ),
        (
            "import_task",
            hold(Service::Images, "IAD", "POST", "/tasks"),
        ),
        ("server", hold(Service::Compute, "IAD", "POST", "/servers")),
    ];
    for (kind, rule) in cases {
        let w = World::start(seeded()).await;
        w.sim.set_faults(Plan::with_rules(vec![rule]));
        let args = server_args(&w);
        let id = run_and_kill(&w, &refs(&args), Trigger::Created(kind)).await;
        eprintln!("killed after the service created a {kind}; resuming {id}");
        resume_and_check(&w, &id, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_inside_the_transfer_resends_at_most_the_pieces_in_flight() {
    for pieces_done in [1usize, 4, 9] {
        let mut config = seeded();
        config.faults.throttle_bytes_per_sec = Some(8 * MIB);
        let w = World::start(config).await;
        let args = server_args(&w);
        let count = std::sync::atomic::AtomicUsize::new(0);
        let trigger = Trigger::Event(Box::new(move |v| {
            v["event"] == "transfer"
                && v["detail"]["event"] == "piece_done"
                && count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == pieces_done
        }));
        let id = run_and_kill(&w, &refs(&args), trigger).await;
        resume_and_check(&w, &id, 1).await;
        let state = w.run(&["status", &id]).await;
        let t = &state.events[0]["migration"]["facts"]["transfer"];
        let total = t["source"]["len"].as_u64().unwrap();
        let piece = t["segment_size"].as_u64().unwrap();
        let sent = w.sim.stats().bytes_in["IAD"];
        // Everything once, plus at most the pieces in flight at the kill (concurrency 3, and the
        // one the in-order hasher holds), plus the SLO manifest.
        let bound = total + 4 * piece + 64 * 1024;
        eprintln!("killed after {pieces_done} pieces: sent {sent} of {total} (bound {bound})");
        assert!(sent <= bound, "re-sent too much: {sent} > {bound}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_creating_the_source_server() {
    for trigger in ["ServerCreating", "ServerActive", "post"] {
        let w = World::start(seeded()).await;
        let spec = format!("{}:general1-2", w.base_image());
        let args: Vec<String> = World::migrate_args(&["--boot", "general1-2", "--create-server"])
            .into_iter()
            .map(str::to_string)
            .chain([spec])
            .collect();
        let t = if trigger == "post" {
            w.sim.set_faults(Plan::with_rules(vec![
                Rule::new(Service::Compute, "POST", Action::DelayResponse { ms: 5000 })
                    .in_region("DFW")
                    .path("/servers"),
            ]));
            Trigger::Created("server")
        } else {
            state_is(trigger)
        };
        let id = run_and_kill(&w, &refs(&args), t).await;
        resume_and_check(&w, &id, 2).await;
    }
}

/// The task list refused whole (stricter than upstream Glance, which refuses only type filters
/// other than `import`).
/// Waits until the export of migration `id`'s snapshot has its manifest object.
async fn wait_for_manifest(w: &World, id: &str) {
    let snapshot = format!("imgferry-{id}-snapshot");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let image = loop {
        if let Some((image, _)) = w
            .sim
            .images("DFW")
            .into_iter()
            .find(|(_, n)| *n == snapshot)
        {
            break image;
        }
        assert!(tokio::time::Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let manifest = format!(
        "{}/imgferry-exports/{image}.vhd",
        w.sim.object_store_url("DFW")
    );
    let http = reqwest::Client::new();
    loop {
        let head = http
            .head(&manifest)
            .header("X-Auth-Token", w.sim.issue_token())
            .send()
            .await
            .unwrap();
        if head.status().is_success() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the export never wrote its manifest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn task_list_refused() -> Rule {
    Rule::new(
        Service::Images,
        "GET",
        Action::Fail {
            status: 403,
            retry_after_secs: None,
        },
    )
    .in_region("DFW")
    .suffix("/tasks")
    .firing(1, 10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_whose_answer_was_lost_settles_by_its_object_when_no_task_list_is_given() {
    let w = World::start(seeded()).await;
    // The export POST is carried out but its answer held back; the run is killed in that window.
    w.sim.set_faults(Plan::with_rules(vec![
        task_list_refused(),
        Rule::new(Service::Images, "POST", Action::DelayResponse { ms: 5000 })
            .in_region("DFW")
            .path("/tasks")
            .firing(1, 1),
    ]));
    let args = server_args(&w);
    let id = run_and_kill(&w, &refs(&args), Trigger::Created("export_task")).await;
    // Wait for the export to write its manifest object (the last thing it writes here).
    wait_for_manifest(&w, &id).await;
    // Resume with the task list still refused: the object settles the export.
    w.sim
        .set_faults(Plan::with_rules(vec![task_list_refused()]));
    let run = w.resume(&id).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_completes_when_the_task_list_is_refused_whole() {
    let w = World::start(seeded()).await;
    w.sim
        .set_faults(Plan::with_rules(vec![task_list_refused()]));
    let args = server_args(&w);
    let run = w.run(&refs(&args)).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
    assert!(
        run.events.iter().any(|e| e["event"] == "warning"
            && e["message"].as_str().unwrap_or("").contains("task list")),
        "the refusal is reported"
    );
}

/// No source says the export writes its manifest last. When it writes it first, a resumed run
/// that lost the task id must not take the half-written export for a finished one: it waits until
/// the object is whole (its VHD footer at the end, and still), then moves exactly those bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_whose_answer_was_lost_is_not_taken_before_it_is_whole() {
    let mut config = seeded();
    config.export_segment_size = MIB;
    config.export = imgferry::sim::ExportShape {
        rate: Some(4 * MIB),
        manifest_first: true,
        ..imgferry::sim::ExportShape::default()
    };
    let w = World::start(config).await;
    w.sim.set_faults(Plan::with_rules(vec![
        task_list_refused(),
        Rule::new(Service::Images, "POST", Action::DelayResponse { ms: 5000 })
            .in_region("DFW")
            .path("/tasks")
            .firing(1, 1),
    ]));
    let mut args = server_args(&w);
    args.push("--no-pipeline".into());
    let id = run_and_kill(&w, &refs(&args), Trigger::Created("export_task")).await;
    // Resume as soon as the manifest exists: the segments are still being written.
    wait_for_manifest(&w, &id).await;
    w.sim
        .set_faults(Plan::with_rules(vec![task_list_refused()]));
    let run = w.resume(&id).await;
    w.assert_migrated(&run, &w.source_sha256());
    w.assert_created_once(1);
}
