//! The fault matrix (docs/reliability.md): each fault injected in each phase of a migration where
//! it can occur, against the real binary and the simulator. Every case must complete with the
//! imported image (and the booted server's disk) byte-identical to the source, and with exactly one
//! snapshot, export task, import task, imported image and server created: no integrity escape, no
//! duplicate. Rejections by the import service (a task that fails with each documented code) are in
//! `migrate::every_documented_rejection_is_explained_with_exit_3`.

use imgferry::sim::{Action, Plan, Rule, Service};

use crate::support::{World, seeded};

/// Where in a migration a fault is injected: the requests of that phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Auth,
    Imaging,
    ExportPolling,
    Listing,
    Preflight,
    SegmentGet,
    SegmentPut,
    ManifestPut,
    ImportPolling,
    Boot,
}

impl Phase {
    const ALL: [Phase; 10] = [
        Phase::Auth,
        Phase::Imaging,
        Phase::ExportPolling,
        Phase::Listing,
        Phase::Preflight,
        Phase::SegmentGet,
        Phase::SegmentPut,
        Phase::ManifestPut,
        Phase::ImportPolling,
        Phase::Boot,
    ];

    /// A rule matching this phase's requests.
    fn rule(self, action: Action, times: u64) -> Rule {
        let rule = |service, region: Option<&str>, method| {
            let r = Rule::new(service, method, action.clone()).firing(1, times);
            match region {
                Some(region) => r.in_region(region),
                None => r,
            }
        };
        match self {
            Phase::Auth => rule(Service::Identity, None, "POST").path("/tokens"),
            Phase::Imaging => rule(Service::Compute, Some("DFW"), "POST").path("/action"),
            Phase::ExportPolling => rule(Service::Images, Some("DFW"), "GET").path("/tasks/"),
            Phase::Listing => rule(Service::Files, Some("DFW"), "GET").suffix("/imgferry-exports"),
            Phase::Preflight => rule(Service::Files, Some("DFW"), "GET").suffix(".vhd"),
            Phase::SegmentGet => rule(Service::Files, Some("DFW"), "GET").path(".vhd-0000"),
            Phase::SegmentPut => rule(Service::Files, Some("IAD"), "PUT").path(".segments/"),
            Phase::ManifestPut => rule(Service::Files, Some("IAD"), "PUT").suffix(".vhd"),
            Phase::ImportPolling => rule(Service::Images, Some("IAD"), "GET").path("/tasks/"),
            Phase::Boot => rule(Service::Compute, Some("IAD"), "POST").suffix("/servers"),
        }
    }

    /// Whether the phase's requests have answer bodies worth cutting or delaying.
    fn has_body(self) -> bool {
        !matches!(
            self,
            Phase::SegmentPut | Phase::ManifestPut | Phase::Imaging
        )
    }
}

/// The faults of issue 6, each with the phases where it can occur.
fn cases() -> Vec<(String, Phase, Vec<Rule>)> {
    let mut out = Vec::new();
    let fail = |status, retry_after_secs| Action::Fail {
        status,
        retry_after_secs,
    };
    for phase in Phase::ALL {
        let mut add = |name: &str, rules: Vec<Rule>| out.push((name.to_string(), phase, rules));
        add("503 burst", vec![phase.rule(fail(503, None), 3)]);
        add("500 burst", vec![phase.rule(fail(500, None), 2)]);
        add(
            "429 with Retry-After",
            vec![phase.rule(fail(429, Some(1)), 1)],
        );
        if matches!(phase, Phase::Auth | Phase::Imaging | Phase::Boot) {
            // Identity and compute answer a rate limit with 413 overLimit and retryAt.
            add("413 overLimit", vec![phase.rule(fail(413, None), 1)]);
        }
        if phase.has_body() {
            add(
                "reset mid-body",
                vec![phase.rule(Action::ResetAfter { bytes: 10 }, 1)],
            );
        } else {
            add(
                "reset mid-answer",
                vec![phase.rule(Action::ResetAfter { bytes: 0 }, 1)],
            );
        }
        add(
            "stalled answer",
            vec![phase.rule(Action::Delay { ms: 2500 }, 1)],
        );
        if phase != Phase::Auth {
            add("token expiry", vec![phase.rule(Action::ExpireTokens, 1)]);
        }
        match phase {
            Phase::SegmentGet => {
                add(
                    "flipped byte",
                    vec![phase.rule(Action::FlipByte { offset: 4242 }, 2)],
                );
            }
            Phase::SegmentPut => add("422 on PUT", vec![phase.rule(fail(422, None), 2)]),
            Phase::Listing => add(
                "listing missing a segment",
                vec![phase.rule(
                    Action::DropListingEntry {
                        name_contains: ".vhd-00002".into(),
                    },
                    3,
                )],
            ),
            _ => {}
        }
    }
    out
}

/// Runs one case: a `--server … --boot` migration with the fault, which must complete correctly.
async fn run_case(name: String, phase: Phase, rules: Vec<Rule>) -> Result<(), String> {
    let w = World::start(seeded()).await;
    w.sim.set_faults(Plan::with_rules(rules));
    let server = w.server();
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--http-timeout",
            "1",
        ])
        .await;
    let fired = w.sim.stats().requests.len();
    if run.code != 0 {
        // Said before any assertion: a failed assertion prints the whole run, which buries which
        // case it was under thousands of lines.
        return Err(format!(
            "{name} in {phase:?} (requests seen {fired}): exit {}, error {}",
            run.code,
            run.error()
        ));
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.assert_migrated(&run, &w.source_sha256());
        w.assert_created_once(1);
    }));
    match outcome {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "{name} in {phase:?} (requests seen {fired}): exit {}, error {}",
            run.code,
            run.error()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_in_every_phase_completes_identically_without_duplicates() {
    // IMGFERRY_FAULT_PHASES=SegmentGet,Listing runs only those phases' cases (to chase one).
    let only = std::env::var("IMGFERRY_FAULT_PHASES").ok();
    let cases: Vec<_> = cases()
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|p| p == format!("{:?}", c.1)))
        })
        .collect();
    let total = cases.len();
    let mut failures = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let mut pending = cases.into_iter();
    // Three migrations at a time: fast, and gentle enough on two cores for 1 s read timeouts.
    for _ in 0..3 {
        if let Some((n, p, r)) = pending.next() {
            set.spawn(run_case(n, p, r));
        }
    }
    while let Some(done) = set.join_next().await {
        if let Err(e) = done.expect("case task") {
            failures.push(e);
        }
        if let Some((n, p, r)) = pending.next() {
            set.spawn(run_case(n, p, r));
        }
    }
    eprintln!(
        "{} of {total} fault cases completed correctly",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_matrix_covers_every_phase_and_fault() {
    let cases = cases();
    for phase in Phase::ALL {
        assert!(
            cases.iter().filter(|c| c.1 == phase).count() >= 6,
            "{phase:?}"
        );
    }
    for fault in [
        "503 burst",
        "429 with Retry-After",
        "413 overLimit",
        "stalled answer",
        "token expiry",
        "flipped byte",
        "422 on PUT",
        "listing missing a segment",
    ] {
        assert!(cases.iter().any(|c| c.0 == fault), "{fault}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_the_json_services_are_reported_to_the_user() {
    let w = World::start(seeded()).await;
    // Three 503s while the export task is polled: Cloud Images' retries must reach the output.
    let burst = Phase::ExportPolling.rule(
        Action::Fail {
            status: 503,
            retry_after_secs: None,
        },
        3,
    );
    w.sim.set_faults(Plan::with_rules(vec![burst]));
    let server = w.server();
    let run = w.migrate(&["--server", &server]).await;
    assert_eq!(run.code, 0, "{}", run.error());
    let retries: Vec<_> = run
        .events
        .iter()
        .filter(|e| e["event"] == "retry" && e["what"] == "Cloud Images request")
        .collect();
    assert_eq!(retries.len(), 3, "{:#?}", run.events);
    assert_eq!(retries[0]["reason"], "HTTP 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_patch_that_times_out_is_checked_and_made_again() {
    let w = World::start(seeded()).await;
    // The first PATCH of the imported image answers after the 1 s read timeout: whether the
    // service applied it is unknown, so the image is read again and the property set from there.
    let stall = Rule::new(Service::Images, "PATCH", Action::Delay { ms: 2500 })
        .firing(1, 1)
        .in_region("IAD");
    w.sim.set_faults(Plan::with_rules(vec![stall]));
    let server = w.server();
    let run = w
        .migrate(&["--server", &server, "--http-timeout", "1"])
        .await;
    assert_eq!(run.code, 0, "{}", run.error());
    let restored = run.report()["restored_properties"].clone();
    assert!(
        restored
            .as_array()
            .is_some_and(|r| r.iter().any(|k| k == "imgferry_migration")),
        "{restored}"
    );
}
