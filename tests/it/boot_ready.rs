//! The imported image can boot, and its properties come across without wedging the migration
//! (real-cloud round 2: `vm_mode`, reserved properties, JSON pointers, the property quota). Each
//! test failed on the code before its change.

use imgferry::sim::{Action, Plan, Rule, Service, SimConfig, Variant};
use serde_json::Value;

use crate::support::{World, seeded};

/// The imported image as the destination's image service shows it.
async fn imported_image(w: &World, run: &crate::support::Run) -> Value {
    let id = run.report()["imported_image"]
        .as_str()
        .expect("an imported image");
    w.image_json("IAD", id).await
}

fn with_variant(variant: Variant) -> SimConfig {
    crate::support::seeded_with(variant)
}

fn warnings(run: &crate::support::Run) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e["event"] == "warning")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_records_a_guest_booted_from_an_image_without_vm_mode() {
    // Nova says ACTIVE either way; the simulator's stats say whether the guest ran.
    let w = World::start(with_variant(Variant {
        image_properties: vec![("vm_mode".into(), None)],
        ..Variant::default()
    }))
    .await;
    let http = reqwest::Client::new();
    let token = w.sim.issue_token();
    let r = http
        .post(format!("{}/servers", w.sim.compute_url("DFW")))
        .header("X-Auth-Token", &token)
        .json(&serde_json::json!({"server": {"name": "pv", "imageRef": w.base_image(), "flavorRef": "general1-2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    assert_eq!(w.sim.stats().unbootable, vec!["DFW/pv".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_restored_properties_the_image_still_gets_vm_mode_before_the_boot() {
    let w = World::start(seeded()).await;
    let server = w.server();
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--no-restore-properties",
        ])
        .await;
    // assert_migrated also checks that every booted guest ran.
    w.assert_migrated(&run, &w.source_sha256());
    let image = imported_image(&w, &run).await;
    assert_eq!(image["vm_mode"], "hvm", "{image:#}");
    assert!(image.get("team").is_none(), "nothing else was restored");
    let report = run.report();
    assert_eq!(report["vm_mode"], "hvm");
    assert_eq!(report["vm_mode_from"], "the default (--vm-mode)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_vm_mode_gets_the_one_asked_for() {
    let w = World::start(with_variant(Variant {
        image_properties: vec![("vm_mode".into(), None), ("flavor_classes".into(), None)],
        ..Variant::default()
    }))
    .await;
    let server = w.server();
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--vm-mode",
            "xen",
        ])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(imported_image(&w, &run).await["vm_mode"], "xen");
    assert_eq!(run.report()["vm_mode_from"], "--vm-mode");
    // With the source's own vm_mode, that one is kept.
    let w = World::start(seeded()).await;
    let server = w.server();
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--vm-mode",
            "xen",
        ])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(imported_image(&w, &run).await["vm_mode"], "hvm");
    assert_eq!(run.report()["vm_mode_from"], "the source image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_vm_mode_stops_before_the_boot_and_names_it() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // The only PATCH of this run is vm_mode's; the service refuses it.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "PATCH",
            Action::Fail {
                status: 403,
                retry_after_secs: None,
            },
        )
        .in_region("IAD")
        .firing(1, 100),
    ]));
    let run = w
        .migrate(&[
            "--server",
            &server,
            "--boot",
            "general1-2",
            "--no-restore-properties",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:#?}");
    let error = run.error();
    assert!(error.contains("vm_mode"), "{error}");
    assert!(error.contains("boot was not attempted"), "{error}");
    assert_eq!(w.created("server"), 0, "no server was booted");
    assert!(run.event("error").unwrap()["resume"].is_string());
    // Once the service takes it, the resumed run boots.
    w.sim.set_faults(Plan::default());
    let resumed = w.resume(&run.id()).await;
    w.assert_migrated(&resumed, &w.source_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_properties_are_not_tried_and_min_disk_and_min_ram_come_across() {
    let w = World::start(with_variant(Variant {
        image_min_disk: 20,
        ..Variant::default()
    }))
    .await;
    let server = w.server();
    let run = w
        .migrate(&["--server", &server, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(
        warnings(&run),
        Vec::<String>::new(),
        "no property was refused"
    );
    assert_eq!(
        run.report()["refused_properties"],
        serde_json::json!([]),
        "{:#}",
        run.report()
    );
    let image = imported_image(&w, &run).await;
    assert_eq!(image["min_disk"], 20, "{image:#}");
    assert_eq!(image["min_ram"], 512, "{image:#}");
    // The import's own preset was replaced by the source's value; the reserved one stays.
    assert_eq!(image["auto_disk_config"], "True");
    assert_eq!(image["os_type"], "linux");
    assert_eq!(image["vm_mode"], "hvm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_names_with_slashes_and_tildes_and_a_full_quota_do_not_wedge_the_migration() {
    let mut extra: Vec<(String, Option<String>)> = vec![
        ("a/b".into(), Some("slash".into())),
        ("a~0y".into(), Some("tilde".into())),
    ];
    // 130 more: past Glance's default property quota of 128 (the two above sort first).
    extra.extend((0..130).map(|i| (format!("p{i:03}"), Some(format!("v{i}")))));
    let w = World::start(with_variant(Variant {
        image_properties: extra,
        ..Variant::default()
    }))
    .await;
    let server = w.server();
    let run = w
        .migrate(&["--server", &server, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    let image = imported_image(&w, &run).await;
    assert_eq!(image["a/b"], "slash", "{image:#}");
    assert_eq!(image["a~0y"], "tilde");
    assert_eq!(
        image["vm_mode"], "hvm",
        "vm_mode goes first, before the quota fills"
    );
    let report = run.report();
    let refused = report["refused_properties"].as_array().unwrap();
    assert!(!refused.is_empty(), "the quota refused some: {report:#}");
    assert!(
        warnings(&run).iter().any(|w| w.contains("(413)")),
        "{:?}",
        warnings(&run)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_can_give_up_restoring_properties() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // Every PATCH fails with a 500 (retried, then the step fails, resumable).
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "PATCH",
            Action::Fail {
                status: 500,
                retry_after_secs: None,
            },
        )
        .in_region("IAD")
        .path("/images/")
        .firing(1, 1000),
    ]));
    let first = w.migrate(&["--server", &server, "--retries", "0"]).await;
    assert_eq!(first.code, 1, "{first:#?}");
    assert!(first.event("error").unwrap()["resume"].is_string());
    assert_eq!(w.created("imported_image"), 1, "it failed after the import");
    // Properties are still refused; vm_mode alone is let through.
    w.sim.set_faults(Plan::default());
    let run = w
        .run(&[
            "resume",
            &first.id(),
            "--poll-interval",
            "0.02",
            "--no-restore-properties",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let image = imported_image(&w, &run).await;
    assert_eq!(image["vm_mode"], "hvm");
    assert!(image.get("team").is_none(), "{image:#}");
}
