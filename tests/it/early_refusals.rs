//! What the cloud would refuse hours later is refused before imaging (real-cloud round 2: roles,
//! the import limit known from the flavor, Windows images, `flavor_classes`), and the simulator
//! refuses the same things itself. Each test failed on the code before its change.

use imgferry::sim::{Account, SimConfig, Variant};

use crate::support::{World, seeded};

fn with_variant(variant: Variant) -> SimConfig {
    crate::support::seeded_with(variant)
}

/// Runs `args` as a migration and as its dry run: both stop with `code` and an error containing
/// `says`, before any snapshot, export or import exists.
async fn stopped_up_front(w: &World, args: &[&str], code: i32, says: &str) {
    for dry in [true, false] {
        // --new: a refusal that could be resumed (a missing role) leaves its record behind.
        let mut all = args.to_vec();
        all.push("--new");
        if dry {
            all.push("--dry-run");
        }
        let run = w.migrate(&all).await;
        assert_eq!(run.code, code, "dry run {dry}: {run:#?}");
        let error = run.error();
        assert!(error.contains(says), "dry run {dry}: {error}");
    }
    for kind in ["snapshot", "export_task", "server", "import_task"] {
        assert_eq!(w.created(kind), 0, "{kind} created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_an_image_admin_role_is_refused_before_imaging() {
    let w = World::start(SimConfig {
        account: Account {
            roles: vec!["compute:observer".into()],
            ..Account::default()
        },
        ..seeded()
    })
    .await;
    let server = w.server();
    stopped_up_front(&w, &["--server", &server], 5, "cloudImages:admin").await;
    let run = w.migrate(&["--server", &server, "--new"]).await;
    assert!(run.error().contains("user demo"), "{}", run.error());
    // The simulator refuses the task itself, as the service does.
    let r = reqwest::Client::new()
        .post(format!("{}/tasks", w.sim.images_url("DFW")))
        .header("X-Auth-Token", w.sim.issue_token())
        .json(&serde_json::json!({"type": "export", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_root_disk_is_over_the_import_limit_is_refused_with_413_before_imaging() {
    // Flavor 6 has a 320 GB root disk: its export is a 320 GiB VHD, over the 160 GiB limit.
    let w = World::start(with_variant(Variant {
        flavor: Some("6".into()),
        ..Variant::default()
    }))
    .await;
    let server = w.server();
    stopped_up_front(&w, &["--server", &server], 3, "code 413").await;
    let run = w.migrate(&["--server", &server, "--new"]).await;
    assert!(run.error().contains("320 GB root disk"), "{}", run.error());
    // Under a smaller limit, a 40 GB flavor is refused too.
    let w = World::start(seeded()).await;
    let server = w.server();
    stopped_up_front(
        &w,
        &["--server", &server, "--max-virtual-size", "20GiB"],
        3,
        "code 413",
    )
    .await;
    // An image's min_disk says the same.
    let w = World::start(with_variant(Variant {
        image_min_disk: 200,
        ..Variant::default()
    }))
    .await;
    let image = w.base_image();
    stopped_up_front(&w, &["--image", &image], 3, "min_disk 200 GB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_images_are_refused_before_imaging_and_by_the_export_task() {
    for property in [
        ("os_type", "windows"),
        ("org.openstack__1__os_distro", "com.microsoft.server"),
    ] {
        let w = World::start(with_variant(Variant {
            image_properties: vec![(property.0.into(), Some(property.1.into()))],
            ..Variant::default()
        }))
        .await;
        let server = w.server();
        stopped_up_front(&w, &["--server", &server], 3, "Windows image").await;
        let image = w.base_image();
        stopped_up_front(&w, &["--image", &image], 3, "Windows image").await;
        // The export task refuses it in the service's own words.
        let done = w.export_task(&image).await;
        assert!(
            done["message"]
                .as_str()
                .unwrap()
                .starts_with("The export of Windows based images is not allowed."),
            "{done}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_flavor_outside_the_images_flavor_classes_is_refused_unless_forced() {
    // A PV image as Rackspace's own mock serves them.
    let w = World::start(with_variant(Variant {
        image_properties: vec![
            (
                "flavor_classes".into(),
                Some("*,!io1,!memory1,!compute1,!onmetal".into()),
            ),
            ("vm_mode".into(), Some("xen".into())),
        ],
        ..Variant::default()
    }))
    .await;
    let server = w.server();
    stopped_up_front(
        &w,
        &["--server", &server, "--boot", "io1-15"],
        3,
        "not among the image's flavor_classes",
    )
    .await;
    // --force goes ahead; then the simulator's Nova refuses the boot itself (assumed strict).
    let run = w
        .migrate(&["--server", &server, "--boot", "io1-15", "--force"])
        .await;
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.error().contains("not allowed for this image"),
        "{}",
        run.error()
    );
    assert!(run.events.iter().any(
        |e| e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("--force")
    ));
    // A general purpose flavor is admitted.
    let run = w
        .migrate(&["--server", &server, "--boot", "general1-2", "--new"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_a_diskless_boot_with_novas_policy_refusal() {
    let w = World::start(seeded()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/servers", w.sim.compute_url("DFW")))
        .header("X-Auth-Token", w.sim.issue_token())
        .json(&serde_json::json!({"server": {"name": "x", "imageRef": w.base_image(), "flavorRef": "compute1-4"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Policy doesn't allow compute_flavor:create:image_backed to be performed."),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicenet_is_probed_before_imaging_and_never_asked_of_two_regions() {
    let w = World::start(SimConfig {
        servicenet_unreachable: true,
        ..seeded()
    })
    .await;
    let server = w.server();
    for side in ["source", "destination"] {
        stopped_up_front(
            &w,
            &["--server", &server, "--servicenet", side],
            2,
            "cannot be reached from here",
        )
        .await;
    }
    // One machine is never inside two data centers.
    let run = w
        .migrate(&["--server", &server, "--servicenet", "both"])
        .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.error().contains("only works inside one data center"),
        "{}",
        run.error()
    );
    assert_eq!(w.created("snapshot"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_of_the_other_realm_says_whose_it_is_and_how_to_give_that_account() {
    use imgferry::sim::SecondAccount;
    let mut config = seeded();
    config.second = Some(SecondAccount {
        account: Account {
            username: "uk-user".into(),
            api_key: "UKKEY0000imgferry0000realm0000hint".into(),
            password: "unused".into(),
            ..Account::default()
        },
        regions: vec!["LON".into()],
    });
    let w = World::start(config).await;
    let server = w.server();
    let args = [
        "migrate",
        "--from",
        "DFW",
        "--to",
        "LON",
        "--server",
        &server,
        "--dry-run",
    ];
    let run = w.run(&args).await;
    assert_eq!(run.code, 2, "{run:#?}");
    let error = run.error();
    assert!(
        error.contains("LON belongs to Rackspace's UK accounts"),
        "{error}"
    );
    assert!(error.contains("RAX_DST_USERNAME"), "{error}");
}
