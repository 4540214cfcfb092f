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
        .migrate(&["--server", &server, "--step-deadline", "1h"])
        .await;
    assert_eq!(run.code, 1, "{:#?}", run.events);
    let error = run.error();
    assert!(error.contains("asks to wait 2h"), "{error}");
    assert!(error.contains("resume after that"), "{error}");
    assert!(run.event("error").unwrap()["resume"].is_string());
}

/// A world whose one server has `variant`.
async fn world_with(variant: imgferry::sim::Variant) -> World {
    World::start(crate::support::seeded_with(variant)).await
}

/// Runs `args` as a migration and as its dry run: both must stop with exit 3 naming `rule`,
/// before anything is created.
async fn refused_up_front(w: &World, args: &[&str], rule: &str) {
    for dry in [true, false] {
        let mut all = args.to_vec();
        if dry {
            all.push("--dry-run");
        }
        let run = w.migrate(&all).await;
        assert_eq!(run.code, 3, "dry run {dry}: {:#?}", run.events);
        let error = run.error();
        assert!(error.contains(rule), "dry run {dry}: {error}");
        assert!(
            error.contains("rule from:") && error.contains("what to do:"),
            "{error}"
        );
        assert!(
            run.event("error").unwrap()["resume"].is_null(),
            "a refusal is final"
        );
    }
    for kind in ["snapshot", "export_task", "server", "import_task"] {
        assert_eq!(w.created(kind), 0, "{kind} created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_cloud_would_refuse_is_refused_before_anything_is_created() {
    use imgferry::sim::Variant;
    // A server built from a licensed image (Windows, Red Hat).
    let w = world_with(Variant {
        image_options: Some("1".into()),
        ..Variant::default()
    })
    .await;
    let server = w.server();
    refused_up_front(&w, &["--server", &server], "licensed or billed").await;
    // The base image itself, owned by Rackspace rather than the account.
    let w = world_with(Variant {
        image_owner: Some("rackspace".into()),
        ..Variant::default()
    })
    .await;
    let image = w.base_image();
    refused_up_front(&w, &["--image", &image], "only its owner may export it").await;
    // A server that boots from a volume, and an OnMetal server.
    let w = world_with(Variant {
        boot_from_volume: true,
        ..Variant::default()
    })
    .await;
    let server = w.server();
    refused_up_front(&w, &["--server", &server], "boots from a volume").await;
    let w = world_with(Variant {
        flavor: Some("onmetal-io1".into()),
        ..Variant::default()
    })
    .await;
    let server = w.server();
    refused_up_front(&w, &["--server", &server], "OnMetal").await;
    // Boot flavors: no local disk, unknown, or a disk smaller than the source's.
    let w = world_with(Variant {
        flavor: Some("general1-4".into()),
        ..Variant::default()
    })
    .await;
    let server = w.server();
    refused_up_front(
        &w,
        &["--server", &server, "--boot", "compute1-4"],
        "no local disk",
    )
    .await;
    refused_up_front(
        &w,
        &["--server", &server, "--boot", "memory1-30"],
        "no local disk",
    )
    .await;
    refused_up_front(
        &w,
        &["--server", &server, "--boot", "2 GB General"],
        "not offered",
    )
    .await;
    refused_up_front(
        &w,
        &["--server", &server, "--boot", "general1-1"],
        "smaller than",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_what_the_services_refuse() {
    use imgferry::sim::Variant;
    // Without imgferry's own checks: the export task and the boot refuse as Rackspace does.
    let w = world_with(Variant {
        image_options: Some("1".into()),
        ..Variant::default()
    })
    .await;
    let image = w.base_image();
    let done = w.export_task(&image).await;
    let http = reqwest::Client::new();
    let token = w.sim.issue_token();
    assert_eq!(done["status"], "failure");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("cannot be exported due to licensing or billing restrictions"),
        "{done}"
    );
    let compute = w.sim.compute_url("DFW");
    for (flavor, refusal, status) in [
        (
            "compute1-4",
            "compute_flavor:create:image_backed",
            reqwest::StatusCode::FORBIDDEN,
        ),
        (
            "nope",
            "could not be found",
            reqwest::StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = http
            .post(format!("{compute}/servers"))
            .header("X-Auth-Token", &token)
            .json(&serde_json::json!({"server": {"name": "x", "imageRef": image, "flavorRef": flavor}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{flavor}");
        let body = r.text().await.unwrap();
        assert!(body.contains(refusal), "{flavor}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicenet_reaches_cloud_files_by_the_catalogs_internal_urls() {
    for (sides, dfw, iad) in [
        ("none", false, false),
        ("source", true, false),
        ("destination", false, true),
    ] {
        let w = World::start(seeded()).await;
        let server = w.server();
        let run = w
            .migrate(&[
                "--server",
                &server,
                "--boot",
                "general1-2",
                "--servicenet",
                sides,
            ])
            .await;
        w.assert_migrated(&run, &w.source_sha256());
        let snet = w.sim.stats().servicenet;
        assert_eq!(snet.contains_key("DFW"), dfw, "{sides}: {snet:?}");
        assert_eq!(snet.contains_key("IAD"), iad, "{sides}: {snet:?}");
    }
}

/// The imported image as the destination's image service shows it.
async fn imported_image(w: &World, id: &str) -> serde_json::Value {
    w.image_json("IAD", id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imported_image_carries_the_sources_properties_and_imgferrys_two() {
    let w = World::start(seeded()).await;
    let server = w.server();
    // The second property PATCH fails once with a 500: the step fails, and the resumed run must
    // finish without adding anything twice (an `add` of an existing property is a 409).
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
        .firing(2, 1),
    ]));
    let first = w
        .migrate(&["--server", &server, "--boot", "general1-2"])
        .await;
    assert_eq!(first.code, 1, "{}", first.error());
    w.sim.set_faults(Plan::default());
    let run = w.resume(&first.id()).await;
    w.assert_migrated(&run, &w.source_sha256());
    let report = run.report();
    let image = imported_image(&w, report["imported_image"].as_str().unwrap()).await;
    for (key, value) in [
        ("os_distro", "ubuntu"),
        ("org.openstack__1__os_distro", "org.ubuntu"),
        ("auto_disk_config", "True"),
        ("team", "web"),
    ] {
        assert_eq!(image[key], value, "{key}: {image:#}");
    }
    let source = report["source_image"].as_str().unwrap();
    assert_eq!(image["imgferry_source"], format!("DFW/{source}"));
    assert_eq!(image["imgferry_migration"], first.id());
    // Rackspace's protected properties are not copied.
    assert!(
        image.get("com.rackspace__1__visible_core").is_none(),
        "{image:#}"
    );
    let restored = report["restored_properties"].as_array().unwrap();
    assert!(restored.iter().any(|k| k == "os_distro"), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_property_is_a_warning_and_the_option_turns_restoring_off() {
    let w = World::start(seeded()).await;
    let server = w.server();
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
        .firing(1, 1),
    ]));
    let run = w
        .migrate(&["--server", &server, "--boot", "general1-2"])
        .await;
    w.assert_migrated(&run, &w.source_sha256());
    assert_eq!(
        run.report()["refused_properties"].as_array().unwrap().len(),
        1
    );
    assert!(run.events.iter().any(|e| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("refused property")
    }));
    w.sim.set_faults(Plan::default());
    let off = w
        .migrate(&["--server", &server, "--no-restore-properties", "--new"])
        .await;
    assert_eq!(off.code, 0, "{}", off.error());
    let image = imported_image(&w, off.report()["imported_image"].as_str().unwrap()).await;
    assert!(image.get("os_distro").is_none() && image.get("imgferry_migration").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_rack_profile_or_clouds_yaml_and_never_show() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::start(seeded()).await;
    let server = w.server();
    let account = w.sim.account().clone();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".rack")).unwrap();
    let rack = home.path().join(".rack/config");
    std::fs::write(
        &rack,
        format!(
            "[default]\nusername = nobody\napi-key = wrong\n\n[prod]\nusername = {}\napi-key = {}\nregion = dfw\n",
            account.username, account.api_key
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rack, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |extra: &[&str], cwd: &std::path::Path| {
        // No --from: the profile's region is the default.
        let mut args = vec!["-v", "migrate", "--to", "IAD", "--server", &server, "--new"];
        args.extend_from_slice(&["--poll-interval", "0.02", "--segment-size", "1MiB"]);
        let mut c = w.command_as("human", &args);
        c.args(extra)
            .env("HOME", home.path())
            .env_remove("RAX_USERNAME")
            .env_remove("RAX_API_KEY")
            .current_dir(cwd);
        c
    };
    let out = run(&["--profile", "prod"], home.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(".rack/config [prod]"),
        "says where: {stderr}"
    );
    assert!(stderr.contains("readable by other users"), "{stderr}");
    assert!(!stderr.contains(&account.api_key), "{stderr}");
    // clouds.yaml in the working directory, as openstacksdk finds it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clouds.yaml"),
        format!(
            "clouds:\n  rax:\n    auth:\n      username: {}\n      api_key: {}\n    region_name: DFW\n",
            account.username, account.api_key
        ),
    )
    .unwrap();
    let out = run(&["--os-cloud", "rax"], dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("clouds.yaml (cloud rax)"), "{stderr}");
    assert!(!stderr.contains(&account.api_key), "{stderr}");
    // Without --profile the [default] section is used (its key is wrong: a refused login) ...
    let out = run(&["--from", "DFW"], home.path()).output().await.unwrap();
    assert_eq!(out.status.code(), Some(5));
    // ... and the environment wins over it, field by field.
    let out = run(&["--from", "DFW"], home.path())
        .env("RAX_USERNAME", &account.username)
        .env("RAX_API_KEY", &account.api_key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// The seeded world with a second account, `uk-user` with `key`, that alone sees LON.
fn two_accounts(key: &str) -> imgferry::sim::SimConfig {
    use imgferry::sim::{Account, SecondAccount};
    let mut config = seeded();
    config.second = Some(SecondAccount {
        account: Account {
            username: "uk-user".into(),
            api_key: key.into(),
            password: "uk-password-unused".into(),
            ..Account::default()
        },
        regions: vec!["LON".into()],
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_into_a_region_only_another_account_sees_completes_and_keeps_both_secrets() {
    use imgferry::sim::Account;
    const US_KEY: &str = "USKEY0000imgferry0000two0000accounts";
    const UK_KEY: &str = "UKKEY0000imgferry0000two0000accounts";
    let mut config = two_accounts(UK_KEY);
    config.account = Account {
        username: "us-user".into(),
        api_key: US_KEY.into(),
        password: "us-password-unused".into(),
        ..Account::default()
    };
    let w = World::start(config).await;
    let server = w.server();
    let args = [
        "-vvv",
        "migrate",
        "--from",
        "DFW",
        "--to",
        "LON",
        "--server",
        &server,
        "--boot",
        "general1-2",
        "--poll-interval",
        "0.02",
        "--segment-size",
        "1MiB",
    ];
    // The source account's catalog has no LON.
    let out = w.command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("region LON is not in the catalog"));
    // With the destination account: its own login, catalog, tenant and Cloud Files.
    let uk = w.sim.second_identity_url();
    let mut c = w.command(&args);
    c.args(["--to-identity-url", &uk])
        .env("RAX_DST_USERNAME", "uk-user")
        .env("RAX_DST_API_KEY", UK_KEY)
        .env("RUST_LOG", "trace");
    let out = c.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "report")
        .expect("a report")["report"]
        .clone();
    let image = report["imported_image"].as_str().unwrap();
    let imported = crate::support::sha256_disk(w.sim.image_disk("LON", image).unwrap());
    assert_eq!(imported, w.source_sha256(), "the bytes arrived in LON");
    // Neither account's secret nor any token appears anywhere.
    let mut texts = vec![
        ("stdout".to_string(), stdout),
        ("stderr".to_string(), stderr),
    ];
    for entry in std::fs::read_dir(w.state.path()).unwrap().flatten() {
        if entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            texts.push((entry.path().display().to_string(), text));
        }
    }
    let tokens = w.sim.issued_tokens();
    for (place, text) in &texts {
        for secret in [US_KEY, UK_KEY] {
            assert!(!text.contains(secret), "a key is in {place}");
        }
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "a token is in {place}");
        }
    }
    // The state file says which identity each side uses.
    let state = texts
        .iter()
        .find(|(p, _)| p.ends_with(".json"))
        .map(|(_, t)| t.clone())
        .unwrap();
    assert!(state.contains(&uk) && state.contains("uk-user"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_account_migration_resumes_with_the_destination_login_it_started_with() {
    let w = World::start(two_accounts("UKKEY-resume-0000000000000000")).await;
    let server = w.server();
    // The first property PATCH in LON fails: the run stops after the import, resumably.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "PATCH",
            Action::Fail {
                status: 500,
                retry_after_secs: None,
            },
        )
        .in_region("LON")
        .firing(1, 1),
    ]));
    let uk = w.sim.second_identity_url();
    let args = [
        "migrate",
        "--from",
        "DFW",
        "--to",
        "LON",
        "--server",
        &server,
        "--to-identity-url",
        &uk,
        "--poll-interval",
        "0.02",
    ];
    let dst = |c: &mut tokio::process::Command, user: &str| {
        c.env("RAX_DST_USERNAME", user)
            .env("RAX_DST_API_KEY", "UKKEY-resume-0000000000000000");
    };
    let mut c = w.command(&args);
    dst(&mut c, "uk-user");
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let id = std::fs::read_dir(w.state.path())
        .unwrap()
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .unwrap();
    w.sim.set_faults(Plan::default());
    let mut c = w.command(&["resume", &id, "--poll-interval", "0.02"]);
    dst(&mut c, "someone-else");
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "another destination user is refused"
    );
    let mut c = w.command(&["resume", &id, "--poll-interval", "0.02"]);
    dst(&mut c, "uk-user");
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_the_service_refuses_is_final_and_resume_says_why() {
    use imgferry::sim::Variant;
    // A licensed base image whose record cannot be read up front (one 404): imgferry's own check
    // cannot see the license, so it is the export task that refuses.
    let w = world_with(Variant {
        image_options: Some("1".into()),
        ..Variant::default()
    })
    .await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Images,
            "GET",
            Action::Fail {
                status: 404,
                retry_after_secs: None,
            },
        )
        .in_region("DFW")
        .path("/images/")
        .firing(1, 1),
    ]));
    let server = w.server();
    let run = w.migrate(&["--server", &server]).await;
    assert_eq!(run.code, 3, "{}", run.error());
    assert!(
        run.error().contains("licensing or billing restrictions"),
        "{}",
        run.error()
    );
    assert!(run.event("error").unwrap()["resume"].is_null());
    w.sim.set_faults(Plan::default());
    let again = w.resume(&run.id()).await;
    assert_eq!(again.code, 2);
    assert!(
        again.error().contains("stopped for good"),
        "{}",
        again.error()
    );
    assert_eq!(
        w.created("export_task"),
        1,
        "the export was not asked for again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_region_of_another_account_is_a_destination() {
    use imgferry::sim::{Account, SecondAccount};
    const OTHER_KEY: &str = "OTHERKEY0000imgferry0000same0000region";
    let mut config = seeded();
    // Two US accounts: both have DFW, each with its own servers, images and Cloud Files.
    config.second = Some(SecondAccount {
        account: Account {
            username: "other-user".into(),
            api_key: OTHER_KEY.into(),
            password: "unused".into(),
            ..Account::default()
        },
        regions: vec!["DFW".into()],
    });
    let w = World::start(config).await;
    let server = w.server();
    let args = [
        "migrate",
        "--from",
        "DFW",
        "--to",
        "DFW",
        "--server",
        &server,
        "--boot",
        "general1-2",
        "--servicenet",
        "both",
        "--poll-interval",
        "0.02",
        "--segment-size",
        "1MiB",
    ];
    // Within one account there is nothing to move.
    let out = w.command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RAX_DST_USERNAME"), "{stderr}");
    // With the other account's credentials it is a migration like any other.
    let mut c = w.command(&args);
    c.args(["--to-identity-url", &w.sim.second_identity_url()])
        .env("RAX_DST_USERNAME", "other-user")
        .env("RAX_DST_API_KEY", OTHER_KEY);
    let out = c.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "report")
        .expect("a report")["report"]
        .clone();
    let image = report["imported_image"].as_str().unwrap();
    let other = w.sim.second_region("DFW");
    assert_ne!(other, "DFW");
    let imported = crate::support::sha256_disk(w.sim.image_disk(&other, image).unwrap());
    assert_eq!(
        imported,
        w.source_sha256(),
        "the bytes are in the other account"
    );
    assert!(
        w.sim.image_disk("DFW", image).is_none(),
        "not in the source account"
    );
    let boot = report["boot_server"].as_str().unwrap();
    assert!(w.sim.servers(&other).iter().any(|(id, _)| id == boot));
}
