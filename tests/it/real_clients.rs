//! The simulator driven by the real OpenStack clients: python-swiftclient's `swift` and
//! python-glanceclient's `glance`, from the venv scripts/setup-venv.sh makes (or $IMGFERRY_VENV).
//! Locally these tests skip with a printed reason when the venv is absent; in CI they must run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgferry::sim::{self, DiskSpec, SeedServer, SimConfig, SimHandle};
use md5::{Digest, Md5};
use serde_json::json;

use crate::support::MIB;

/// The venv's bin directory, or `None` (printing why) outside CI.
fn venv_bin() -> Option<PathBuf> {
    let root = std::env::var_os("IMGFERRY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = root.join("bin");
    if bin.join("swift").exists() && bin.join("glance").exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide the client venv: .ci/run runs scripts/setup-venv.sh"
    );
    eprintln!(
        "skipping: no python-swiftclient/python-glanceclient venv at {} (run scripts/setup-venv.sh)",
        root.display()
    );
    None
}

struct Clients {
    bin: PathBuf,
    home: tempfile::TempDir,
    token: String,
}

impl Clients {
    /// Runs a client command and returns (success, stdout + stderr).
    async fn run(&self, tool: &str, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(self.bin.join(tool))
            .args(args)
            // glanceclient caches schemas under $HOME; a fresh home per test avoids stale ones.
            .env("HOME", self.home.path())
            .env_remove("OS_AUTH_URL")
            .output()
            .await
            .expect("run client");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn swift(&self, sim: &SimHandle, args: &[&str]) -> (bool, String) {
        let url = sim.object_store_url("DFW");
        let mut all = vec!["--os-storage-url", &url, "--os-auth-token", &self.token];
        all.extend_from_slice(args);
        self.run("swift", &all).await
    }

    async fn glance(&self, sim: &SimHandle, region: &str, args: &[&str]) -> (bool, String) {
        // glanceclient appends /v2/… itself, so it takes the catalog URL without the version.
        let url = sim.images_url(region);
        let url = url.trim_end_matches("/v2");
        let mut all = vec!["--os-image-url", url, "--os-auth-token", &self.token];
        all.extend_from_slice(args);
        self.run("glance", &all).await
    }

    /// `glance task-show` until the task ends; returns the table text.
    async fn wait_task(&self, sim: &SimHandle, region: &str, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (ok, text) = self.glance(sim, region, &["task-show", id]).await;
            assert!(ok, "{text}");
            if row(&text, "status").is_some_and(|s| s == "success" || s == "failure") {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} did not finish: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The value of a `| key | value |` row of a glance table.
fn row(table: &str, key: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        (cells.len() > 2 && cells[1] == key).then(|| cells[2].to_string())
    })
}

async fn setup() -> Option<(SimHandle, Clients)> {
    let bin = venv_bin()?;
    let sim = sim::spawn(SimConfig {
        servers: vec![SeedServer {
            region: "DFW".into(),
            name: "web-1".into(),
            disk: DiskSpec {
                virtual_size: 16 * MIB,
                allocated: 0.5,
                seed: 3,
            },
            variant: Default::default(),
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let token = crate::support::sim_session(&sim).await.token;
    Some((
        sim,
        Clients {
            bin,
            home: tempfile::tempdir().unwrap(),
            token,
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_cli_uploads_an_slo_and_downloads_it_identical() {
    let Some((sim, c)) = setup().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.bin");
    let data: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&up, &data).unwrap();
    let up_s = up.display().to_string();
    let (ok, text) = c
        .swift(
            &sim,
            &[
                "upload",
                "--use-slo",
                "-S",
                "1048576",
                "images",
                &up_s,
                "--object-name",
                "disk.vhd",
            ],
        )
        .await;
    assert!(ok, "{text}");
    let down = dir.path().join("down.bin").display().to_string();
    let (ok, text) = c
        .swift(&sim, &["download", "images", "disk.vhd", "-o", &down])
        .await;
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read(&down).unwrap(),
        data,
        "byte-identical download"
    );
    let (ok, stat) = c.swift(&sim, &["stat", "images", "disk.vhd"]).await;
    assert!(ok, "{stat}");
    assert!(stat.contains("X-Static-Large-Object: True"), "{stat}");
    assert!(stat.contains("Content Length: 3500000"), "{stat}");
    let segment_md5s: String = data
        .chunks(MIB as usize)
        .map(|c| hex::encode(Md5::digest(c)))
        .collect();
    let slo_etag = hex::encode(Md5::digest(segment_md5s.as_bytes()));
    assert!(
        stat.contains(&format!("ETag: \"{slo_etag}\"")),
        "SLO ETag is the md5 of the segment md5s:\n{stat}"
    );
    let (ok, list) = c.swift(&sim, &["list", "images"]).await;
    assert!(ok && list.lines().any(|l| l == "disk.vhd"), "{list}");
    let (ok, segs) = c.swift(&sim, &["list", "images_segments"]).await;
    assert!(ok && segs.lines().count() == 4, "{segs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_cli_creates_an_export_task_and_shows_it_succeed() {
    let Some((sim, c)) = setup().await else {
        return;
    };
    let (ok, text) = c.swift(&sim, &["post", "exports"]).await;
    assert!(ok, "{text}");
    let (ok, images) = c.glance(&sim, "DFW", &["image-list"]).await;
    assert!(ok, "{images}");
    let image = images
        .lines()
        .find(|l| l.contains("web-1 base image"))
        .and_then(|l| l.split('|').nth(1))
        .unwrap()
        .trim()
        .to_string();
    let input = json!({"image_uuid": image, "receiving_swift_container": "exports"}).to_string();
    let (ok, created) = c
        .glance(
            &sim,
            "DFW",
            &["task-create", "--type", "export", "--input", &input],
        )
        .await;
    assert!(ok, "{created}");
    let id = row(&created, "id").unwrap();
    let done = c.wait_task(&sim, "DFW", &id).await;
    assert_eq!(row(&done, "status").as_deref(), Some("success"), "{done}");
    assert!(done.contains(&format!("exports/{image}.vhd")), "{done}");
    // As upstream Glance does, a type filter other than `import` is refused; the unfiltered list
    // has the task.
    let (ok, refused) = c
        .glance(&sim, "DFW", &["task-list", "--type", "export"])
        .await;
    assert!(!ok && refused.contains("Invalid type value"), "{refused}");
    let (ok, list) = c.glance(&sim, "DFW", &["task-list"]).await;
    assert!(ok && list.contains(&id), "{list}");
    let (ok, objects) = c.swift(&sim, &["list", "exports"]).await;
    assert!(
        ok && objects.contains(&format!("{image}.vhd-00001")),
        "{objects}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glance_cli_shows_a_failed_import_with_its_code() {
    let Some((sim, c)) = setup().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.img");
    std::fs::write(&raw, vec![0u8; 2 * MIB as usize]).unwrap();
    let raw_s = raw.display().to_string();
    let url = sim.object_store_url("IAD");
    let (ok, text) = c
        .run(
            "swift",
            &[
                "--os-storage-url",
                &url,
                "--os-auth-token",
                &c.token,
                "upload",
                "imports",
                &raw_s,
                "--object-name",
                "raw.vhd",
            ],
        )
        .await;
    assert!(ok, "{text}");
    let input = json!({"import_from": "imports/raw.vhd", "import_from_format": "vhd", "image_properties": {"name": "copy"}}).to_string();
    let (ok, created) = c
        .glance(
            &sim,
            "IAD",
            &["task-create", "--type", "import", "--input", &input],
        )
        .await;
    assert!(ok, "{created}");
    let done = c
        .wait_task(&sim, "IAD", &row(&created, "id").unwrap())
        .await;
    assert_eq!(row(&done, "status").as_deref(), Some("failure"), "{done}");
    assert!(
        row(&done, "message").unwrap().starts_with("396: "),
        "{done}"
    );
}
