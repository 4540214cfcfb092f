//! `migrate --from-cloud NAME --image ID|NAME --to REGION` (docs/openstack.md): an image of an
//! OpenStack cloud into a Rackspace legacy region. It is downloaded to a staging directory,
//! made a dynamic VHD (from qcow2, compressed clusters included, or raw), validated, uploaded to
//! Cloud Files, imported, given its properties and `vm_mode`, and booted. The imported VHD is
//! compared with the source image by `qemu-img compare`. These run the simulator's OpenStack
//! side; `real_openstack.rs` runs the first against real Keystone and Glance. Each fails on the
//! code before this route (`--from-cloud` into a legacy region was refused).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::from_cloud::{raw_bytes, seed_image, two_clouds};
use crate::support::{MIB, Run, World, output, qemu_img, run_qemu, seeded};
use crate::to_cloud::{GlanceView, kill_after};

/// `migrate --from-cloud alpha --to IAD ARGS` with fast polling, `clouds` and the simulator's
/// Rackspace credentials (the destination is a legacy region).
fn to_iad(w: &World, clouds: &Path, args: &[&str]) -> tokio::process::Command {
    let mut all = vec![
        "migrate",
        "--from-cloud",
        "alpha",
        "--to",
        "IAD",
        "--poll-interval",
        "0.02",
        "--segment-size",
        "4MiB",
    ];
    all.extend_from_slice(args);
    let mut c = w.command(&all);
    c.env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("HOME", w.files.path());
    c
}

/// A raw disk of 41 MiB and three sectors (not a whole number of VHD blocks) with data at its
/// start, inside a block, across a block boundary and at its very end; the rest zeros.
fn raw_disk(dir: &Path) -> PathBuf {
    let path = dir.join("disk.raw");
    let mut f = std::fs::File::create(&path).unwrap();
    let len = 41 * MIB + 1536;
    f.set_len(len).unwrap();
    for (at, fill) in [
        (0, 1u8),
        (8 * MIB + 12_345, 2),
        (20 * MIB - 700, 3),
        (len - 4096, 4),
    ] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&raw_bytes(4096).iter().map(|b| b ^ fill).collect::<Vec<_>>())
            .unwrap();
    }
    path
}

/// The VHD file behind the image `run` imported into IAD.
fn imported_vhd(w: &World, run: &Run) -> PathBuf {
    let image = run.report()["imported_image"]
        .as_str()
        .expect("an imported image")
        .to_string();
    match w.sim.image_disk("IAD", &image).expect("the imported image") {
        imgferry::sim::Disk::File { path, .. } => path,
        other => panic!("an imported image is a file: {other:?}"),
    }
}

/// `qemu-img compare` of the imported VHD with the source image (`format` at `source`).
fn assert_same_disk(dir: &Path, vhd: &Path, format: &str, source: &Path) {
    let out = std::process::Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", format])
        .arg(vhd)
        .arg(source)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Images are identical"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A compressed qcow2 image of alice's project goes to IAD and boots: the imported VHD is the
/// image's disk per qemu-img, its own properties are carried but not the KVM-only ones, it has
/// `vm_mode`, and the staging directory is gone.
pub async fn qcow2_to_legacy(w: &World, auth_url: &str) {
    let dir = w.files.path();
    let clouds = two_clouds(dir, auth_url, "RegionOne");
    let raw = raw_disk(dir);
    // -c: compressed clusters, as distributions publish their cloud images.
    run_qemu(
        dir,
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "disk.raw",
            "disk.qcow2",
        ],
    );
    let qcow2 = dir.join("disk.qcow2");
    let alpha = GlanceView::login(auth_url, "alice", "alpha").await;
    let name = format!("kvm-web-{}", std::process::id());
    let src = seed_image(
        &alpha,
        &name,
        "qcow2",
        std::fs::read(&qcow2).unwrap(),
        json!({"os_distro": "ubuntu", "hw_disk_bus": "virtio", "img_hv_type": "kvm"}),
    )
    .await;
    let run = output(to_iad(
        w,
        &clouds,
        &["--image", &name, "--boot", "general1-2"],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let r = run.report();
    assert_eq!(r["step"], "Done");
    assert_eq!(r["source_cloud_image"]["id"], src.as_str());
    assert_eq!(r["import_verdict"], "accepted");
    assert_eq!(r["vm_mode"], "hvm", "{r:#}");
    let dropped = r["dropped_properties"].to_string();
    assert!(
        dropped.contains("hw_disk_bus") && dropped.contains("img_hv_type"),
        "{dropped}"
    );
    let image = w
        .image_json("IAD", r["imported_image"].as_str().unwrap())
        .await;
    assert_eq!(image["os_distro"], "ubuntu", "{image:#}");
    assert!(image.get("hw_disk_bus").is_none(), "{image:#}");
    assert!(image.get("img_hv_type").is_none(), "{image:#}");
    assert_same_disk(dir, &imported_vhd(w, &run), "qcow2", &qcow2);
    assert_same_disk(dir, &imported_vhd(w, &run), "raw", &raw);
    assert!(w.sim.stats().unbootable.is_empty(), "the guest booted");
    assert!(
        !w.state
            .path()
            .join(format!("{}.staging", run.id()))
            .exists(),
        "the staging directory is removed once the VHD is uploaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qcow2_image_of_an_openstack_cloud_is_imported_into_a_legacy_region_and_boots() {
    if qemu_img().is_none() {
        return;
    }
    let w = World::start(seeded()).await;
    qcow2_to_legacy(&w, &w.sim.keystone_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_image_killed_mid_download_resumes_into_one_imported_image() {
    // 32 MiB/s per connection: the 96 MiB download at --concurrency 2 takes over a second and a
    // half, so a kill after 70 MiB lands before its end (and after the first 64 MiB sync).
    let w = World::start(imgferry::sim::SimConfig {
        faults: imgferry::sim::Plan {
            throttle_bytes_per_sec: Some(32 * MIB),
            ..imgferry::sim::Plan::default()
        },
        ..seeded()
    })
    .await;
    let auth_url = w.sim.keystone_url();
    let dir = w.files.path();
    let clouds = two_clouds(dir, &auth_url, "RegionOne");
    // Data everywhere but one 2 MiB block in the middle, which the VHD leaves unallocated.
    let mut bytes = raw_bytes((96 * MIB) as usize);
    bytes[(40 * MIB) as usize..(42 * MIB) as usize].fill(0);
    let raw = dir.join("disk.raw");
    std::fs::write(&raw, &bytes).unwrap();
    let alpha = GlanceView::login(&auth_url, "alice", "alpha").await;
    let src = seed_image(&alpha, "db", "raw", bytes, json!({})).await;
    let args = ["--image", src.as_str(), "--concurrency", "2"];
    let killed = kill_after(to_iad(&w, &clouds, &args), 70 * MIB).await;
    let saved = w.saved(&killed);
    assert_eq!(saved["step"], "Exporting", "killed in the download");
    let synced = saved["facts"]["downloaded"].as_u64().unwrap_or(0);
    assert!(synced >= 64 * MIB, "a sync was saved: {synced}");
    let mut c = w.command(&["resume", &killed, "--poll-interval", "0.02"]);
    c.env("OS_CLIENT_CONFIG_FILE", &clouds).env("HOME", dir);
    let run = output(c).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let resumed_from = run
        .events
        .iter()
        .find_map(|e| e["detail"]["already_done"].as_u64())
        .expect("a transfer event");
    assert_eq!(resumed_from, synced, "the download continued from its sync");
    let created = w.sim.stats().created;
    assert_eq!(
        created.get("import_task").map_or(0, Vec::len),
        1,
        "{created:?}"
    );
    assert_eq!(created.get("imported_image").map_or(0, Vec::len), 1);
    let vhd = imported_vhd(&w, &run);
    // 48 blocks of data, one all zeros left out: the VHD holds 47.
    let at = vhd.clone();
    let report = tokio::task::spawn_blocking(move || crate::support::check_file(&at))
        .await
        .unwrap();
    assert_eq!(
        report.bat.as_ref().map(|b| b.allocated),
        Some(47),
        "{report:#?}"
    );
    if qemu_img().is_some() {
        assert_same_disk(dir, &vhd, "raw", &raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_no_vhd_can_be_made_from_is_refused_before_anything_is_created() {
    let w = World::start(seeded()).await;
    let auth_url = w.sim.keystone_url();
    let clouds = two_clouds(w.files.path(), &auth_url, "RegionOne");
    let alpha = GlanceView::login(&auth_url, "alice", "alpha").await;
    // Glance has no format inspector for an Amazon machine image: it takes any bytes.
    let ami = seed_image(&alpha, "appliance", "ami", raw_bytes(64 * 1024), json!({})).await;
    let run = output(to_iad(&w, &clouds, &["--image", &ami])).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.error().contains("is ami") && run.error().contains("qemu-img convert"),
        "{}",
        run.error()
    );
    let created = w.sim.stats().created;
    assert!(!created.contains_key("import_task"), "{created:?}");
}
