//! `migrate --from-cloud NAME --image ID|NAME` (docs/openstack.md): an image of an OpenStack
//! cloud moved to another cloud (or project) or downloaded to a file, read by parallel ranges and
//! checked against the image's own sha512 and md5; a download killed midway resumes from what it
//! synced. These run against the simulator's OpenStack side; `real_openstack.rs` runs the same
//! routes against real Keystone and Glance. Each fails on the code before `--from-cloud` (the
//! flag did not exist).

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use crate::support::{MIB, Run, World, seeded};
use crate::to_cloud::{GlanceView, output};

/// A `clouds.yaml` (mode 600) with `alpha` (alice's project, RegionOne) and `beta` (bob's, in
/// `beta_region`), both at `auth_url`.
pub fn two_clouds(dir: &Path, auth_url: &str, beta_region: &str) -> std::path::PathBuf {
    let path = dir.join("clouds.yaml");
    let cloud = |user: &str, project: &str, region: &str| {
        format!(
            "  {project}:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      \
             password: {user}-secret\n      project_name: {project}\n      user_domain_name: \
             Default\n      project_domain_id: default\n    region_name: {region}\n"
        )
    };
    std::fs::write(
        &path,
        format!(
            "clouds:\n{}{}",
            cloud("alice", "alpha", "RegionOne"),
            cloud("bob", "beta", beta_region)
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// Bytes that no format inspector mistakes for anything but raw: a counter pattern.
pub fn raw_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 4096) as u8).wrapping_mul(31) ^ (i as u8))
        .collect()
}

/// Creates an image in `g` with `props` and uploads `bytes` as `disk_format`; returns its id.
pub async fn seed_image(
    g: &GlanceView,
    name: &str,
    disk_format: &str,
    bytes: Vec<u8>,
    props: Value,
) -> String {
    let http = reqwest::Client::new();
    let mut body = json!({"name": name, "disk_format": disk_format, "container_format": "bare"});
    body.as_object_mut()
        .unwrap()
        .extend(props.as_object().cloned().unwrap_or_default());
    let made: Value = http
        .post(format!("{}/v2/images", g.base))
        .header("X-Auth-Token", &g.token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    http.put(format!("{}/v2/images/{id}/file", g.base))
        .header("X-Auth-Token", &g.token)
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    id
}

/// `migrate --from-cloud alpha ARGS` with fast polling against `clouds`, without any Rackspace
/// credentials.
pub fn from_alpha(w: &World, clouds: &Path, args: &[&str]) -> tokio::process::Command {
    let mut all = vec![
        "migrate",
        "--from-cloud",
        "alpha",
        "--poll-interval",
        "0.02",
    ];
    all.extend_from_slice(args);
    let mut c = w.command(&all);
    c.env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("HOME", w.files.path())
        .env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY")
        .env_remove("RAX_IDENTITY_URL");
    c
}

/// An image of alice's project moved into bob's (another project, and `beta_region`): the same
/// bytes and sha512, its own properties carried, exactly one image.
pub async fn cloud_to_cloud(w: &World, auth_url: &str, beta_region: &str) {
    let clouds = two_clouds(w.files.path(), auth_url, beta_region);
    let alpha = GlanceView::login(auth_url, "alice", "alpha").await;
    let bytes = raw_bytes((20 * MIB) as usize + 12_345);
    let name = format!("web-{}", std::process::id());
    let src = seed_image(
        &alpha,
        &name,
        "raw",
        bytes.clone(),
        json!({"os_distro": "ubuntu", "team": "blue", "tags": ["web", "prod"]}),
    )
    .await;
    // By name, as a user would give it.
    let run = output(from_alpha(
        w,
        &clouds,
        &["--image", &name, "--to-cloud", "beta"],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["source_cloud_image"]["id"], src.as_str());
    let beta = GlanceView::login_in(auth_url, "bob", "beta", beta_region).await;
    let images = beta.of_migration(&run.id()).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    let image = &images[0];
    assert_eq!(image["status"], "active");
    assert_eq!(image["disk_format"], "raw");
    assert_eq!(image["name"], name.as_str(), "the image keeps its name");
    assert_eq!(image["os_distro"], "ubuntu");
    assert_eq!(image["team"], "blue");
    let mut tags: Vec<&str> = image["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["prod", "web"], "the tags are carried whole");
    assert_eq!(image["os_hash_value"], hex::encode(Sha512::digest(&bytes)));
    assert_eq!(
        image["os_hash_value"],
        alpha.image(&src).await["os_hash_value"],
        "the same sha512 on both sides"
    );
    assert!(beta.data(image["id"].as_str().unwrap()).await == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_moves_between_projects_and_regions_of_an_openstack_cloud() {
    let w = World::start(seeded()).await;
    cloud_to_cloud(&w, &w.sim.keystone_url(), "RegionTwo").await;
}

/// An image downloaded to `DIR/` becomes `DIR/<name>.<disk format>` holding its exact bytes.
/// With `kill`, the download is SIGKILLed midway (after its first sync) and resumed from the
/// synced offset; that needs a link slow enough for the kill to land before the end (the
/// simulator's throttle: real Glance on loopback is too fast to aim at).
pub async fn cloud_to_file(w: &World, auth_url: &str, kill: bool) {
    let clouds = two_clouds(w.files.path(), auth_url, "RegionOne");
    let alpha = GlanceView::login(auth_url, "alice", "alpha").await;
    let bytes = raw_bytes((144 * MIB) as usize);
    let id = seed_image(&alpha, "big", "raw", bytes.clone(), json!({})).await;
    let dir = w.files.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let target = format!("{}/", dir.display());
    let args = [
        "--image",
        id.as_str(),
        "--to-file",
        target.as_str(),
        "--concurrency",
        "2",
    ];
    if !kill {
        let run = output(from_alpha(w, &clouds, &args)).await;
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(
            std::fs::read(dir.join("big.raw")).unwrap() == bytes,
            "the file is the image"
        );
        assert_eq!(
            run.report()["source_cloud_image"]["sha512"],
            hex::encode(Sha512::digest(&bytes))
        );
        return;
    }
    let killed = crate::to_cloud::kill_after(from_alpha(w, &clouds, &args), 72 * MIB).await;
    let saved = w.saved(&killed);
    assert!(
        dir.join("big.raw").exists() || dir.join("big.raw.part").exists(),
        "the download was under way"
    );
    let synced = saved["facts"]["downloaded"].as_u64().unwrap_or(0);
    assert!(
        synced >= 64 * MIB,
        "a sync was saved before the kill: {synced}"
    );
    let mut c = w.command(&["resume", &killed, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path())
        .env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY");
    let run: Run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let started = run.event("transfer").map(|_| ());
    assert!(started.is_some());
    let resumed_from = run
        .events
        .iter()
        .find(|e| e["event"] == "transfer" && e["detail"]["already_done"].is_u64())
        .map(|e| e["detail"]["already_done"].as_u64().unwrap())
        .unwrap();
    assert_eq!(
        resumed_from, synced,
        "the resume continued from the synced offset"
    );
    let file = dir.join("big.raw");
    assert!(!dir.join("big.raw.part").exists());
    assert!(
        std::fs::read(&file).unwrap() == bytes,
        "the file is the image"
    );
    assert_eq!(
        run.report()["source_cloud_image"]["sha512"],
        hex::encode(Sha512::digest(&bytes))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_downloads_to_a_file_and_a_killed_download_resumes() {
    // 32 MiB/s per connection: the 144 MiB download takes over two seconds at --concurrency 2,
    // so the kill after 72 MiB lands well before its end.
    let w = World::start(imgferry::sim::SimConfig {
        faults: imgferry::sim::Plan {
            throttle_bytes_per_sec: Some(32 * MIB),
            ..imgferry::sim::Plan::default()
        },
        ..seeded()
    })
    .await;
    cloud_to_file(&w, &w.sim.keystone_url(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_or_unusable_source_image_is_refused_before_anything_is_created() {
    let w = World::start(seeded()).await;
    let auth_url = w.sim.keystone_url();
    let clouds = two_clouds(w.files.path(), &auth_url, "RegionTwo");
    let alpha = GlanceView::login(&auth_url, "alice", "alpha").await;
    for _ in 0..2 {
        seed_image(&alpha, "twin", "raw", raw_bytes(4096), json!({})).await;
    }
    let run = output(from_alpha(
        &w,
        &clouds,
        &["--image", "twin", "--to-cloud", "beta"],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.error().contains("2 images are named twin"),
        "{}",
        run.error()
    );
    let run = output(from_alpha(
        &w,
        &clouds,
        &["--image", "nothing-by-this-name", "--to-cloud", "beta"],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.error().contains("no image nothing-by-this-name"),
        "{}",
        run.error()
    );
    // A dry run finds the image, lists the steps, and creates nothing.
    seed_image(&alpha, "solo", "raw", raw_bytes(4096), json!({})).await;
    let run = output(from_alpha(
        &w,
        &clouds,
        &["--image", "solo", "--to-cloud", "beta", "--dry-run"],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let plan = run.event("plan").expect("a plan event");
    assert!(plan["steps"].to_string().contains("uploading"), "{plan:#}");
    assert!(plan["checks"].to_string().contains("active"), "{plan:#}");
    assert!(
        w.records().is_empty(),
        "nothing was kept: {:?}",
        w.records()
    );
}

/// Boots a server named `name` from `image` in alice's project of the simulator (network
/// `public`), and waits until it is ACTIVE; returns its id.
async fn boot_in_alpha(g: &GlanceView, name: &str, image: &str) -> String {
    let nova = format!("{}/v2.1", g.base.replace("/glance/", "/nova/"));
    let http = reqwest::Client::new();
    let made: Value = http
        .post(format!("{nova}/servers"))
        .header("X-Auth-Token", &g.token)
        .json(
            &json!({"server": {"name": name, "imageRef": image, "flavorRef": "2",
            "networks": [{"uuid": imgferry::sim::openstack_compute::NETWORKS[0].0}]}}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["server"]["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let s: Value = http
            .get(format!("{nova}/servers/{id}"))
            .header("X-Auth-Token", &g.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["server"]["status"] == "ACTIVE" {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("server {id} never became ACTIVE");
}

/// `--from-cloud alpha --server NAME --to-cloud beta`: the server is imaged once by Nova's
/// createImage, and the snapshot moves to the other project with the server's disk (here, the
/// image it booted from) and its sha512. An unknown server is refused before anything is created.
/// Fails on the code before `--server` was taken with `--from-cloud`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_an_openstack_cloud_is_imaged_and_moves_to_another_project() {
    let w = World::start(seeded()).await;
    let auth_url = w.sim.keystone_url();
    let clouds = two_clouds(w.files.path(), &auth_url, "RegionOne");
    let alpha = GlanceView::login(&auth_url, "alice", "alpha").await;
    let bytes = raw_bytes((6 * MIB) as usize + 4096);
    let base = seed_image(&alpha, "base", "raw", bytes.clone(), json!({})).await;
    boot_in_alpha(&alpha, "app-1", &base).await;
    let run = output(from_alpha(
        &w,
        &clouds,
        &["--server", "nothing", "--to-cloud", "beta"],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("no server nothing"), "{}", run.error());
    let run = output(from_alpha(
        &w,
        &clouds,
        &["--server", "app-1", "--to-cloud", "beta"],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["imported_image_name"], "app-1", "named after the server");
    let snapshots = &w.sim.stats().created["openstack_snapshot"];
    assert_eq!(snapshots.len(), 1, "imaged once");
    assert_eq!(r["source_cloud_image"]["id"], snapshots[0].as_str());
    let beta = GlanceView::login(&auth_url, "bob", "beta").await;
    let images = beta.of_migration(&run.id()).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(
        images[0]["os_hash_value"],
        hex::encode(Sha512::digest(&bytes))
    );
}

/// A kill while the snapshot of an OpenStack server is being made, as if before the answer to
/// createImage was saved: the resumed run finds the snapshot by its name in the source Glance and
/// never images the server twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_server_is_imaged_once_across_a_kill() {
    let w = World::start(imgferry::sim::SimConfig {
        timing: imgferry::sim::Timing {
            imaging: std::time::Duration::from_secs(3),
            ..imgferry::sim::Timing::instant()
        },
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let clouds = two_clouds(w.files.path(), &auth_url, "RegionOne");
    let alpha = GlanceView::login(&auth_url, "alice", "alpha").await;
    let base = seed_image(&alpha, "base", "raw", raw_bytes(MIB as usize), json!({})).await;
    boot_in_alpha(&alpha, "app-2", &base).await;
    let c = from_alpha(&w, &clouds, &["--server", "app-2", "--to-cloud", "beta"]);
    let id =
        crate::to_cloud::kill_while_waiting_then_forget(&w, c, "-snapshot", "Imaging", "snapshot")
            .await;
    let mut c = w.command(&["resume", &id, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path())
        .env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY");
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        w.sim.stats().created["openstack_snapshot"].len(),
        1,
        "imaged once, found again by its name"
    );
}
