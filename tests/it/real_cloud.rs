//! Real-cloud readiness (issue 12): behaviour the real services have and the simulator now models
//! strictly. Each test failed on the code before its change.

use std::time::{Duration, Instant};

use imgferry::sim::{Action, Plan, Rule, Service};

use crate::support::{World, seeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_the_service_asks_for_beyond_the_backoff_cap_is_waited_out_and_shown() {
    let w = World::start(seeded()).await;
    // Nova's answer to a rate limit: 413 (or 429) with a Retry-After longer than the backoff cap.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Compute,
            "POST",
            Action::Fail {
                status: 429,
                retry_after_secs: Some(3),
            },
        )
        .in_region("DFW")
        .path("/action")
        .firing(1, 1),
    ]));
    let server = w.server();
    let started = Instant::now();
    let run = w
        .migrate(&["--server", &server, "--max-backoff", "1", "--retries", "0"])
        .await;
    assert_eq!(run.code, 0, "{}", run.error());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the wait was honoured"
    );
    let wait = run
        .events
        .iter()
        .find(|e| e["event"] == "retry" && e["until"].is_string())
        .unwrap_or_else(|| panic!("no waiting-until event: {:#?}", run.events));
    assert_eq!(wait["delay_ms"], 3000);
    assert!(wait["until"].as_str().unwrap().ends_with("UTC"));
    // And for people.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Compute,
            "POST",
            Action::Fail {
                status: 429,
                retry_after_secs: Some(2),
            },
        )
        .in_region("DFW")
        .path("/action")
        .firing(1, 1),
    ]));
    let args = World::migrate_args(&["--server", &server, "--max-backoff", "1", "--new"]);
    let out = w.command_as("human", &args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting until"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_the_step_may_take_is_a_resumable_failure_that_says_when() {
    let w = World::start(seeded()).await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Compute,
            "POST",
            Action::Fail {
                status: 413,
                retry_after_secs: Some(7200),
            },
        )
        .in_region("DFW")
        .path("/action")
        .firing(1, 1),
    ]));
    let server = w.server();
    // A step may wait one hour here; the service asks for two.
    let run = w
        .migrate(&["--server", &server, "--step-deadline-hours", "1"])
        .await;
    assert_eq!(run.code, 1, "{:#?}", run.events);
    let error = run.error();
    assert!(error.contains("asks to wait 2h"), "{error}");
    assert!(error.contains("resume after that"), "{error}");
    assert!(run.event("error").unwrap()["resume"].is_string());
}
