//! `migrate --to-cloud NAME` (docs/openstack.md): a legacy server, or a local VHD, ending at an
//! image in an OpenStack cloud's Glance, converted on the way, created once and verified by the
//! digests Glance computed. These run against the simulator's OpenStack side; the same routes
//! against real upstream Keystone and Glance are in `real_openstack.rs`. Each fails on the code
//! before `--to-cloud` (the flag did not exist).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncBufReadExt, BufReader};

pub use crate::support::output;
use crate::support::{MIB, Run, World, good_vhd, qcow2_of, seeded};

/// A `clouds.yaml` (mode 600) in `dir` with cloud `lab`: `user` in `project` at `auth_url`,
/// region RegionOne.
pub fn clouds_yaml(dir: &Path, auth_url: &str, user: &str, project: &str) -> PathBuf {
    let path = dir.join("clouds.yaml");
    std::fs::write(
        &path,
        format!(
            "clouds:\n  lab:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      \
             password: {user}-secret\n      project_name: {project}\n      user_domain_name: \
             Default\n      project_domain_id: default\n    region_name: RegionOne\n"
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

/// A logged-in view of one project's Glance (RegionOne), to check what imgferry left there.
pub struct GlanceView {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl GlanceView {
    pub async fn login(auth_url: &str, user: &str, project: &str) -> Self {
        Self::login_in(auth_url, user, project, "RegionOne").await
    }

    pub async fn login_in(auth_url: &str, user: &str, project: &str, region: &str) -> Self {
        let http = reqwest::Client::new();
        let creds = imgferry::api::keystone::Credentials::Password {
            username: user.into(),
            user_domain: imgferry::api::keystone::Domain::Name("Default".into()),
            password: format!("{user}-secret"),
            project: imgferry::api::keystone::Project::Name {
                name: project.into(),
                domain: imgferry::api::keystone::Domain::Id("default".into()),
            },
        };
        let s = imgferry::api::keystone::authenticate(
            &http,
            auth_url,
            &creds,
            &imgferry::http::RetryConfig::default(),
        )
        .await
        .unwrap();
        let base = s
            .endpoint("image", "public", Some(region))
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        Self {
            base,
            token: s.token,
            http,
        }
    }

    pub async fn image(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v2/images/{id}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The images carrying `imgferry_migration=ID`.
    pub async fn of_migration(&self, id: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/v2/images?imgferry_migration={id}", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["images"].as_array().cloned().unwrap_or_default()
    }

    pub async fn data(&self, id: &str) -> Vec<u8> {
        self.http
            .get(format!("{}/v2/images/{id}/file", self.base))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

/// `migrate --to-cloud lab ARGS` with fast polling, against `clouds`.
pub fn cloud_command(w: &World, clouds: &Path, args: &[&str]) -> tokio::process::Command {
    let mut all = vec!["migrate", "--to-cloud", "lab", "--poll-interval", "0.02"];
    all.extend_from_slice(args);
    let mut c = w.command(&all);
    c.env("OS_CLIENT_CONFIG_FILE", clouds)
        .env_remove("OS_CLOUD")
        .env("HOME", w.files.path());
    c
}

/// A legacy server moved to `auth_url`'s Glance as alice (with `extra` arguments): one active
/// qcow2 image whose bytes are the export converted, with Glance's digests, the properties a KVM
/// cloud understands and none of the Xen-only ones. Returns the run.
pub async fn server_to_cloud(w: &World, auth_url: &str, extra: &[&str]) -> Run {
    let clouds = clouds_yaml(w.files.path(), auth_url, "alice", "alpha");
    let server = w.server();
    let mut args = vec!["--from", "DFW", "--server", &server];
    args.extend_from_slice(extra);
    let run = output(cloud_command(w, &clouds, &args)).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["to"], "lab/RegionOne");
    let upload = &r["glance_upload"];
    assert_eq!(upload["disk_format"], "qcow2", "{r:#}");
    let glance = GlanceView::login(auth_url, "alice", "alpha").await;
    let images = glance.of_migration(&run.id()).await;
    assert_eq!(images.len(), 1, "exactly one image: {images:#?}");
    let image = &images[0];
    assert_eq!(image["id"], r["imported_image"]);
    assert_eq!(image["status"], "active");
    assert_eq!(image["disk_format"], "qcow2");
    assert_eq!(image["os_hash_value"], upload["sha512"]);
    assert_eq!(image["checksum"], upload["md5"]);
    let vhd = w.export_bytes(r["export"].as_str().unwrap()).await;
    let want = qcow2_of(&vhd);
    let stored = glance.data(image["id"].as_str().unwrap()).await;
    assert!(stored == want, "Glance holds the export converted to qcow2");
    assert_eq!(hex::encode(Sha512::digest(&stored)), upload["sha512"]);
    // The source's own properties that mean something on KVM are carried; XenServer's are not.
    assert!(
        image["imgferry_source"]
            .as_str()
            .unwrap()
            .starts_with("DFW/")
    );
    assert!(image.get("vm_mode").is_none(), "{image:#}");
    let dropped = r["dropped_properties"].to_string();
    assert!(dropped.contains("vm_mode"), "{dropped}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_ends_as_a_qcow2_image_in_an_openstack_cloud() {
    let w = World::start(seeded()).await;
    server_to_cloud(&w, &w.sim.keystone_url(), &[]).await;
    // Nothing was imported into a legacy region.
    assert_eq!(w.created("import_task"), 0);
    // `status` counts the upload Glance confirmed, not the (unused) Cloud Files plan.
    let out = w.command_as("human", &["status"]).output().await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains("lab/RegionOne") && table.contains("(100%)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_vhd_goes_to_an_openstack_cloud_without_rackspace_credentials() {
    let w = World::start(seeded()).await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "bob", "beta");
    // A dynamic VHD becomes qcow2.
    let vhd = good_vhd();
    let path = w.file("disk.vhd", &vhd);
    let mut c = cloud_command(&w, &clouds, &["--vhd", path.to_str().unwrap()]);
    c.env_remove("RAX_USERNAME")
        .env_remove("RAX_API_KEY")
        .env_remove("RAX_IDENTITY_URL");
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    let glance = GlanceView::login(&auth_url, "bob", "beta").await;
    let id = r["imported_image"].as_str().unwrap();
    assert_eq!(glance.data(id).await, qcow2_of(&vhd));
    assert_eq!(glance.image(id).await["disk_format"], "qcow2");
    // A fixed VHD becomes raw: its data without the footer.
    let fixed = imgferry::vhd::build::Builder::new(
        imgferry::vhd::build::Kind::Fixed,
        imgferry::vhd::build::Style::XenServer,
        4 * MIB,
    )
    .random_block(0, 7)
    .build()
    .bytes;
    let path = w.file("fixed.vhd", &fixed);
    let run = output(cloud_command(
        &w,
        &clouds,
        &["--vhd", path.to_str().unwrap()],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["glance_upload"]["disk_format"], "raw");
    let id = r["imported_image"].as_str().unwrap();
    assert_eq!(glance.data(id).await, fixed[..fixed.len() - 512]);
    // A fixed VHD cannot be labelled qcow2: refused before any image is created, and not kept.
    let before = w.records().len();
    let run = output(cloud_command(
        &w,
        &clouds,
        &[
            "--vhd",
            path.to_str().unwrap(),
            "--disk-format",
            "qcow2",
            "--new",
        ],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.error().contains("raw"), "{}", run.error());
    assert!(glance.of_migration(&run.id()).await.is_empty());
    assert_eq!(w.records().len(), before, "a refused start is not kept");
}

/// Runs `c` until its first progress event past zero, then SIGKILLs it; returns the migration id.
pub async fn kill_mid_upload(c: tokio::process::Command) -> String {
    kill_after(c, 1).await
}

/// Runs `c` until a progress event reports at least `bytes` (and not the end), then SIGKILLs it;
/// returns the migration id.
pub async fn kill_after(mut c: tokio::process::Command, bytes: u64) -> String {
    c.stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["event"] == "started" {
            id = e["id"].as_str().map(str::to_string);
        }
        let done = e["detail"]["done"].as_u64().unwrap_or(0);
        let total = e["detail"]["total"].as_u64().unwrap_or(0);
        if e["event"] == "transfer" && done >= bytes && done < total {
            crate::support::signal(child.id().unwrap(), "KILL");
            break;
        }
    }
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed mid-upload");
    id.expect("a started event")
}

/// Runs `c` until it waits on something whose description contains `needle`, then SIGKILLs it
/// and, as if the kill had come before the answer to the creating POST was saved, takes the id
/// out of the intent `facts.<fact>` (the state must be at `step`). Returns the migration id.
pub async fn kill_while_waiting_then_forget(
    w: &World,
    mut c: tokio::process::Command,
    needle: &str,
    step: &str,
    fact: &str,
) -> String {
    c.stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["event"] == "started" {
            id = e["id"].as_str().map(str::to_string);
        }
        if e["event"] == "waiting" && e["what"].as_str().unwrap_or_default().contains(needle) {
            crate::support::signal(child.id().unwrap(), "KILL");
            break;
        }
    }
    let _ = child.wait().await;
    let id = id.expect("a started event");
    let mut saved = w.saved(&id);
    assert_eq!(saved["step"], step);
    saved["facts"][fact]["id"] = Value::Null;
    std::fs::write(
        w.state.path().join(format!("{id}.json")),
        serde_json::to_vec_pretty(&saved).unwrap(),
    )
    .unwrap();
    id
}

/// A migration SIGKILLed in the middle of its upload (with `extra` arguments), then resumed: the
/// image the first run created is found again (by its property) and receives the whole upload;
/// no second image.
pub async fn killed_upload_resumes_into_one_image(w: &World, auth_url: &str, extra: &[&str]) {
    let clouds = clouds_yaml(w.files.path(), auth_url, "alice", "alpha");
    let server = w.server();
    let mut args = vec!["--from", "DFW", "--server", &server];
    args.extend_from_slice(extra);
    let id = kill_mid_upload(cloud_command(w, &clouds, &args)).await;
    let glance = GlanceView::login(auth_url, "alice", "alpha").await;
    let images = glance.of_migration(&id).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_ne!(images[0]["status"], "active", "the kill came mid-upload");
    let mut c = w.command(&["resume", &id, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path());
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let images = glance.of_migration(&id).await;
    assert_eq!(images.len(), 1, "still exactly one image: {images:#?}");
    assert_eq!(images[0]["status"], "active");
    assert_eq!(images[0]["id"], run.report()["imported_image"]);
    let vhd = w
        .export_bytes(run.report()["export"].as_str().unwrap())
        .await;
    let stored = glance.data(images[0]["id"].as_str().unwrap()).await;
    assert!(stored == qcow2_of(&vhd), "the resumed upload is whole");
    assert_eq!(w.created("snapshot"), 1, "the server was imaged once");
}

/// A server large enough that its upload spans many progress events, on a link of 64 MiB/s per
/// connection: a kill aimed at the middle of the upload lands there, however fast the machine.
pub fn large() -> imgferry::sim::SimConfig {
    let mut config = seeded();
    config.servers[0].disk.virtual_size = 256 * MIB;
    config.servers[0].disk.allocated = 0.9;
    config.export_segment_size = 32 * MIB;
    config.faults.throttle_bytes_per_sec = Some(64 * MIB);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_midway_resumes_into_the_same_image() {
    let w = World::start(large()).await;
    killed_upload_resumes_into_one_image(&w, &w.sim.keystone_url(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_killed_midway_resumes_into_one_image_by_glance_direct() {
    let w = World::start(large()).await;
    let args = ["--upload-method", "glance-direct"];
    killed_upload_resumes_into_one_image(&w, &w.sim.keystone_url(), &args).await;
}

/// A cloud whose policy refuses direct uploads (403 on `PUT …/file`) and offers `glance-direct`:
/// `auto` turns to it, says so, and keeps to it; `direct` is refused with the way out named. Fails
/// on the code before `glance-direct` (the 403 ended the migration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_that_refuses_direct_uploads_takes_the_image_by_glance_direct() {
    let w = World::start(imgferry::sim::SimConfig {
        glance_refuse_direct_upload: true,
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let run = server_to_cloud(&w, &auth_url, &[]).await;
    assert!(
        run.events.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("using glance-direct")),
        "{run:#?}"
    );
    assert_eq!(
        w.saved(&run.id())["facts"]["glance_method"],
        "glance-direct"
    );
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let run = output(cloud_command(
        &w,
        &clouds,
        &[
            "--vhd",
            w.file("d.vhd", &good_vhd()).to_str().unwrap(),
            "--upload-method",
            "direct",
        ],
    ))
    .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.error().contains("403") && run.error().contains("--upload-method glance-direct"),
        "{}",
        run.error()
    );
}

/// An import that fails leaves the image `importing` for good (real Glance does that with data
/// that is not its declared format): imgferry deletes it, says why, and a resume uploads into a
/// new image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_deletes_the_stuck_image_and_a_resume_makes_a_new_one() {
    let w = World::start(imgferry::sim::SimConfig {
        glance_fail_imports: 1,
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let vhd = w.file("d.vhd", &good_vhd());
    let args = [
        "--vhd",
        vhd.to_str().unwrap(),
        "--upload-method",
        "glance-direct",
    ];
    let run = output(cloud_command(&w, &clouds, &args)).await;
    assert_eq!(run.code, 1, "a failed step, resumable: {run:#?}");
    assert!(
        run.error().contains("Task failed due to Internal Error")
            && run.error().contains("imgferry resume"),
        "{}",
        run.error()
    );
    let glance = GlanceView::login(&auth_url, "alice", "alpha").await;
    assert!(
        glance.of_migration(&run.id()).await.is_empty(),
        "the stuck image is gone"
    );
    let mut c = w.command(&["resume", &run.id(), "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path());
    let resumed = output(c).await;
    assert_eq!(resumed.code, 0, "{resumed:#?}");
    let images = glance.of_migration(&run.id()).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(images[0]["status"], "active");
}

/// A dynamic VHD stored as raw (`--disk-format raw`): read block by block in guest order and
/// identical to what `qemu-img convert -O raw` makes of it; Glance's digests match.
pub async fn dynamic_vhd_as_raw(w: &World, auth_url: &str) {
    let Some(_) = crate::support::qemu_img() else {
        return;
    };
    let clouds = clouds_yaml(w.files.path(), auth_url, "alice", "alpha");
    // Blocks written out of guest order, and one left unallocated between them.
    let vhd = imgferry::vhd::build::Builder::new(
        imgferry::vhd::build::Kind::Dynamic,
        imgferry::vhd::build::Style::XenServer,
        9 * MIB,
    )
    .random_block(3, 1)
    .random_block(0, 2)
    .block(4, 0x42)
    .build()
    .bytes;
    let path = w.file("dyn.vhd", &vhd);
    crate::support::run_qemu(
        w.files.path(),
        &["convert", "-f", "vpc", "-O", "raw", "dyn.vhd", "dyn.raw"],
    );
    let want = std::fs::read(w.files.path().join("dyn.raw")).unwrap();
    let run = output(cloud_command(
        w,
        &clouds,
        &[
            "--vhd",
            path.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--concurrency",
            "3",
        ],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["glance_upload"]["disk_format"], "raw");
    let glance = GlanceView::login(auth_url, "alice", "alpha").await;
    let id = r["imported_image"].as_str().unwrap();
    let stored = glance.data(id).await;
    assert_eq!(stored.len(), want.len());
    assert!(
        stored == want,
        "the raw image is the guest's disk, as qemu reads the VHD"
    );
    assert_eq!(
        glance.image(id).await["os_hash_value"],
        r["glance_upload"]["sha512"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_vhd_is_stored_as_raw_when_asked() {
    let w = World::start(seeded()).await;
    dynamic_vhd_as_raw(&w, &w.sim.keystone_url()).await;
}

/// A fleet into an OpenStack cloud, SIGKILLed in its first upload and resumed by its fleet id:
/// every member ends as its own image (found by its own migration's property), converted from its
/// own export; no member made two images; nothing imported into a legacy region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_moves_into_an_openstack_cloud_and_resumes_after_a_kill() {
    let mut config = large();
    config.servers[0].disk.virtual_size = 64 * MIB;
    let mut second = config.servers[0].clone();
    second.name = "web-2".into();
    second.disk.seed = 12;
    config.servers.push(second);
    let w = World::start(config).await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let mut c = cloud_command(
        &w,
        &clouds,
        &[
            "--from",
            "DFW",
            "--server",
            "web-1",
            "--server",
            "web-2",
            "--parallel",
            "2",
            "--concurrency",
            "3",
        ],
    );
    c.stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut fleet = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["event"] == "fleet_started" {
            fleet = e["fleet"].as_str().map(str::to_string);
        }
        // A member's events carry its `member` id beside their own fields.
        let done = e["detail"]["done"].as_u64().unwrap_or(0);
        if e["event"] == "transfer" && e["member"].is_string() && done > 0 {
            crate::support::signal(child.id().unwrap(), "KILL");
            break;
        }
    }
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed mid-upload");
    let fleet = fleet.expect("a fleet_started event");
    let glance = GlanceView::login(&auth_url, "alice", "alpha").await;
    let unfinished = w.records().len();
    assert_eq!(unfinished, 2, "both members recorded");
    let mut c = w.command(&["resume", &fleet, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path());
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let report = &run.event("fleet_report").expect("a fleet report")["report"];
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{report:#}");
    for m in members {
        let id = m["migration"].as_str().unwrap();
        let images = glance.of_migration(id).await;
        assert_eq!(images.len(), 1, "{id}: {images:#?}");
        assert_eq!(images[0]["status"], "active");
        let vhd = w.export_bytes(&w.export_of(id)).await;
        let stored = glance.data(images[0]["id"].as_str().unwrap()).await;
        assert!(stored == qcow2_of(&vhd), "{id}: its own export, converted");
    }
    assert_eq!(w.created("snapshot"), 2, "each server imaged once");
    assert_eq!(w.created("import_task"), 0);
}

/// Over the cloud's `image_size_cap` Glance answers 413: the migration stops for good with exit 3
/// and a message naming the cap, the empty image it created is deleted, and with nothing left in
/// the cloud its record can be forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_the_size_cap_is_refused_and_its_empty_image_deleted() {
    let w = World::start(imgferry::sim::SimConfig {
        glance_size_cap: MIB,
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let path = w.file("disk.vhd", &good_vhd());
    let run = output(cloud_command(
        &w,
        &clouds,
        &["--vhd", path.to_str().unwrap()],
    ))
    .await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.error().contains("too large"), "{}", run.error());
    assert!(run.error().contains("image_size_cap"), "{}", run.error());
    let id = run.id();
    let glance = GlanceView::login(&auth_url, "alice", "alpha").await;
    assert!(
        glance.of_migration(&id).await.is_empty(),
        "the empty image is deleted"
    );
    let out = w.command(&["forget", &id]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--boot FLAVOR --network NET` into an OpenStack cloud: the image is uploaded, then a server is
/// booted from it by Nova (flavor and network given by name), once, and reported with its address.
/// A flavor or network the cloud does not have, or no network where several exist, is refused
/// before anything is created. Fails on the code before it (`--boot` conflicted with
/// `--to-cloud`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_boots_in_an_openstack_cloud() {
    let w = World::start(seeded()).await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let server = w.server();
    for (args, says) in [
        (
            vec!["--boot", "m1.huge", "--network", "public"],
            "no flavor m1.huge",
        ),
        (
            vec!["--boot", "m1.small", "--network", "nowhere"],
            "no network nowhere",
        ),
        (vec!["--boot", "m1.small"], "2 networks (public, private)"),
    ] {
        let mut all = vec!["--from", "DFW", "--server", &server];
        all.extend(args);
        let run = output(cloud_command(&w, &clouds, &all)).await;
        assert_eq!(run.code, 3, "{run:#?}");
        assert!(run.error().contains(says), "{}", run.error());
    }
    assert_eq!(
        w.created("snapshot"),
        0,
        "refused before anything was created"
    );
    let run = output(cloud_command(
        &w,
        &clouds,
        &[
            "--from",
            "DFW",
            "--server",
            &server,
            "--boot",
            "m1.small",
            "--network",
            "public",
        ],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["step"], "Done");
    let booted = r["boot_server"].as_str().expect("a booted server");
    assert_eq!(
        w.sim.stats().created["openstack_server"],
        vec![booted.to_string()]
    );
    assert_eq!(
        r["boot_addresses"].as_array().map(Vec::len),
        Some(1),
        "{r:#}"
    );
    assert!(r["admin_pass"].is_string(), "shown once: {r:#}");
    let saved = w.saved(&run.id()).to_string();
    assert!(
        !saved.contains("Sim-Pass-5678"),
        "the password is not stored"
    );
}

/// A kill after the boot's POST was sent but before its answer was saved: the resumed run finds
/// the server by its name and never boots a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_in_an_openstack_cloud_is_never_made_twice() {
    let w = World::start(imgferry::sim::SimConfig {
        timing: imgferry::sim::Timing {
            build: std::time::Duration::from_secs(3),
            ..imgferry::sim::Timing::instant()
        },
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let clouds = clouds_yaml(w.files.path(), &auth_url, "alice", "alpha");
    let server = w.server();
    let c = cloud_command(
        &w,
        &clouds,
        &[
            "--from",
            "DFW",
            "--server",
            &server,
            "--boot",
            "2",
            "--network",
            "private",
        ],
    );
    // Waiting for the server to build: it exists, and the state may or may not know its id.
    let id = kill_while_waiting_then_forget(&w, c, "-boot", "Booting", "boot_server").await;
    let mut c = w.command(&["resume", &id, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("HOME", w.files.path());
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        w.sim.stats().created["openstack_server"].len(),
        1,
        "one server, found again by its name"
    );
}
