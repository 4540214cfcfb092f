//! The simulator with a region's Cloud Files on a real OpenStack Swift (`--object-store`): export
//! (simulator) → object in real Swift → import (simulator). Swift is started by
//! `scripts/swift-saio.sh start`, whose URL the tests read from IMGFERRY_SWIFT_URL. Locally they skip
//! with a printed reason when it is unset; in CI `.ci/run` starts Swift and they must run.

use imgferry::sim::{self, DiskSpec, SeedServer, SimConfig};
use serde_json::{Value, json};

use crate::support::{MIB, wait_task};

pub fn swift_url() -> Option<String> {
    crate::support::service_url("IMGFERRY_SWIFT_URL", "scripts/swift-saio.sh start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_real_swift_then_import_from_it() {
    let Some(swift) = swift_url() else { return };
    // Fresh accounts per run: Swift creates them on first use.
    let run = std::process::id();
    let dfw = format!("{swift}/v1/AUTH_dfw{run}");
    let iad = format!("{swift}/v1/AUTH_iad{run}");
    let sim = sim::spawn(SimConfig {
        servers: vec![SeedServer {
            region: "DFW".into(),
            name: "web-1".into(),
            disk: DiskSpec {
                virtual_size: 24 * MIB,
                allocated: 0.5,
                seed: 11,
            },
            variant: Default::default(),
        }],
        object_stores: [
            ("DFW".to_string(), dfw.clone()),
            ("IAD".to_string(), iad.clone()),
        ]
        .into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let session = crate::support::sim_session(&sim).await;
    let token = session.token.clone();
    assert_eq!(
        session.endpoint("object-store", "DFW").unwrap(),
        dfw,
        "the catalog advertises the external Swift"
    );

    // Export the server's base image into real Swift.
    let image = sim.servers("DFW")[0].0.clone();
    let base_image = {
        let v: Value = http
            .get(format!("{}/servers/{image}", sim.compute_url("DFW")))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["server"]["image"]["id"].as_str().unwrap().to_string()
    };
    for url in [format!("{dfw}/exports"), format!("{iad}/imports")] {
        let r = http
            .put(&url)
            .header("X-Auth-Token", "x")
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
    }
    let images = sim.images_url("DFW");
    let task: Value = http
        .post(format!("{images}/tasks"))
        .header("X-Auth-Token", &token)
        .json(&json!({"type": "export", "input": {"image_uuid": base_image, "receiving_swift_container": "exports"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = wait_task(
        &http,
        &token,
        &format!("{images}/tasks/{}", task["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(done["status"], "success", "{done}");
    let location = done["result"]["export_location"]
        .as_str()
        .unwrap()
        .to_string();

    // Real Swift serves it as a DLO whose bytes are the image's VHD.
    let head = http
        .head(format!("{dfw}/{location}"))
        .header("X-Auth-Token", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["x-object-manifest"],
        format!("exports/{base_image}.vhd-").as_str()
    );
    let exported = http
        .get(format!("{dfw}/{location}"))
        .header("X-Auth-Token", "x")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut want = Vec::new();
    sim.image_disk("DFW", &base_image)
        .unwrap()
        .write_to(&mut want)
        .unwrap();
    assert_eq!(exported.as_ref(), &want[..]);

    // Move it to the other "region" of real Swift and import it from there.
    let r = http
        .put(format!("{iad}/imports/web.vhd"))
        .header("X-Auth-Token", "x")
        .header("Content-Length", exported.len())
        .body(exported.to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let iad_images = sim.images_url("IAD");
    let import = json!({"type": "import", "input": {"import_from": "imports/web.vhd", "import_from_format": "vhd", "image_properties": {"name": "web-copy"}}});
    let task: Value = http
        .post(format!("{iad_images}/tasks"))
        .header("X-Auth-Token", &token)
        .json(&import)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = wait_task(
        &http,
        &token,
        &format!("{iad_images}/tasks/{}", task["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(done["status"], "success", "{done}");
    let mut got = Vec::new();
    sim.image_disk("IAD", done["result"]["image_id"].as_str().unwrap())
        .unwrap()
        .write_to(&mut got)
        .unwrap();
    assert_eq!(
        got, want,
        "the imported image is byte-identical to the source"
    );

    // A non-VHD object in real Swift fails the import with 396.
    let r = http
        .put(format!("{iad}/imports/raw.img"))
        .header("X-Auth-Token", "x")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let import = json!({"type": "import", "input": {"import_from": "imports/raw.img", "import_from_format": "vhd", "image_properties": {"name": "raw"}}});
    let task: Value = http
        .post(format!("{iad_images}/tasks"))
        .header("X-Auth-Token", &token)
        .json(&import)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = wait_task(
        &http,
        &token,
        &format!("{iad_images}/tasks/{}", task["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        done["message"].as_str().unwrap().starts_with("396: "),
        "{done}"
    );
}
