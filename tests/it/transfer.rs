//! The transfer engine against the simulator (and, when IMGFERRY_SWIFT_URL is set, real Swift):
//! DLO, SLO and plain sources, a local file, the listing-consistency wait, remote pre-flight,
//! corruption in flight, resume with bounded re-sending, and whole-file digests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use imgferry::api::auth::Auth;
use imgferry::api::object_store::{ObjectStore, RemoteObject};
use imgferry::http::RetryConfig;
use imgferry::sim::{
    self, Action, DiskSpec, Plan, Rule, SeedServer, Service, SimConfig, SimHandle,
};
use imgferry::transfer::PersistError;
use imgferry::transfer::{
    self, Endpoint, Event, ListingPolicy, Options, SourceAccess, TransferState,
};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::MIB;

fn quick_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        ..RetryConfig::default()
    }
}

struct World {
    sim: SimHandle,
    src: ObjectStore,
    dst: ObjectStore,
    work: tempfile::TempDir,
}

impl World {
    async fn new(virtual_size: u64, export_segment: u64) -> Self {
        let sim = sim::spawn(SimConfig {
            servers: vec![SeedServer {
                region: "DFW".into(),
                name: "web-1".into(),
                disk: DiskSpec {
                    virtual_size,
                    allocated: 0.7,
                    seed: 5,
                },
                variant: Default::default(),
            }],
            export_segment_size: export_segment,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let token = sim.issue_token();
        let http = imgferry::http::client().unwrap();
        let src = ObjectStore::new(
            http.clone(),
            &sim.object_store_url("DFW"),
            Auth::fixed(&token),
            quick_retry(),
        );
        let dst = ObjectStore::new(
            http,
            &sim.object_store_url("IAD"),
            Auth::fixed(&token),
            quick_retry(),
        );
        dst.put_container("imports").await.unwrap();
        Self {
            sim,
            src,
            dst,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// Inspects `exports/object` in DFW and plans its copy to `imports/dest` in pieces of at most
    /// `segment` bytes.
    async fn plan(&self, object: &str, dest: &str, segment: u64) -> TransferState {
        let source = transfer::inspect(&self.src, "exports", object, ListingPolicy::default())
            .await
            .unwrap();
        TransferState::new(source, "imports", dest, segment).unwrap()
    }

    /// Exports the seeded server's base image; returns (export object name, its bytes).
    async fn export(&self) -> (String, Vec<u8>) {
        let http = reqwest::Client::new();
        let token = self.sim.issue_token();
        let server = self.sim.servers("DFW")[0].0.clone();
        let v: Value = http
            .get(format!("{}/servers/{server}", self.sim.compute_url("DFW")))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let image = v["server"]["image"]["id"].as_str().unwrap().to_string();
        self.src.put_container("exports").await.unwrap();
        let images = self.sim.images_url("DFW");
        let task: Value = http
            .post(format!("{images}/tasks"))
            .header("X-Auth-Token", &token)
            .json(&json!({"type": "export", "input": {"image_uuid": image, "receiving_swift_container": "exports"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!("{images}/tasks/{}", task["id"].as_str().unwrap());
        loop {
            let t: Value = http
                .get(&url)
                .header("X-Auth-Token", &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if t["status"] == "success" {
                break;
            }
            assert_ne!(t["status"], "failure", "{t}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut bytes = Vec::new();
        self.sim
            .image_disk("DFW", &image)
            .unwrap()
            .write_to(&mut bytes)
            .unwrap();
        (format!("{image}.vhd"), bytes)
    }

    fn dest(&self, name: &str) -> Endpoint {
        Endpoint {
            store: self.dst.clone(),
            container: "imports".into(),
            name: name.into(),
        }
    }

    /// Runs `state` from the source in DFW to `imports/dest` in IAD, saving nothing.
    async fn copy(
        &self,
        state: &mut TransferState,
        dest: &str,
        concurrency: usize,
        events: transfer::Events,
    ) -> Result<transfer::Outcome, transfer::Error> {
        transfer::run(
            SourceAccess::Store(self.src.clone()),
            self.dest(dest),
            state,
            self.opts(concurrency),
            events,
            &mut no_persist(),
        )
        .await
    }

    fn opts(&self, concurrency: usize) -> Options {
        Options {
            concurrency,
            work_dir: self.work.path().join("spill"),
            integrity_retries: 3,
            budget: None,
        }
    }

    async fn download_dest(&self, name: &str) -> Vec<u8> {
        let r = reqwest::Client::new()
            .get(self.dst.object_url("imports", name))
            .header("X-Auth-Token", self.sim.issue_token())
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap().to_vec()
    }
}

fn collect_events() -> (transfer::Events, Arc<Mutex<Vec<Event>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (Arc::new(move |e| sink.lock().unwrap().push(e)), seen)
}

fn no_persist() -> impl FnMut(TransferState) -> BoxFuture<'static, Result<(), PersistError>> + Send
{
    |_| Box::pin(async { Ok(()) })
}

fn digests(bytes: &[u8]) -> (String, String) {
    (
        hex::encode(Sha256::digest(bytes)),
        hex::encode(Md5::digest(bytes)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_a_dlo_export_verified_with_whole_file_digests() {
    let w = World::new(24 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let source = transfer::inspect(&w.src, "exports", &name, ListingPolicy::default())
        .await
        .unwrap();
    assert_eq!(source.kind, transfer::source::Kind::Dlo);
    assert_eq!(source.len, bytes.len() as u64);
    let mut state = TransferState::new(source, "imports", "web.vhd", 128 * MIB).unwrap();
    assert_eq!(
        state.pieces.len(),
        (bytes.len() as u64).div_ceil(2 * MIB) as usize,
        "one piece per source segment"
    );
    let (events, seen) = collect_events();
    let out = w.copy(&mut state, "web.vhd", 4, events).await.unwrap();
    assert_eq!(w.download_dest("web.vhd").await, bytes, "byte-identical");
    assert_eq!((out.sha256.clone(), out.md5.clone()), digests(&bytes));
    assert!(state.is_done());
    let seen = seen.lock().unwrap();
    assert!(matches!(seen.first(), Some(Event::Started { .. })));
    assert!(matches!(seen.last(), Some(Event::Committed { .. })));
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, Event::PieceDone { .. }))
            .count(),
        state.pieces.len()
    );
    // The spill directory is empty afterwards.
    assert_eq!(
        std::fs::read_dir(w.work.path().join("spill"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_slo_and_plain_sources_and_splits_large_segments() {
    let w = World::new(16 * MIB, 8 * MIB).await;
    let (name, bytes) = w.export().await;
    // The export's 8 MiB segments are split into 3 MiB pieces; md5s are checked per source segment.
    let mut state = w.plan(&name, "split.vhd", 3 * MIB).await;
    assert!(state.pieces.iter().any(|p| !p.whole));
    w.copy(&mut state, "split.vhd", 3, collect_events().0)
        .await
        .unwrap();
    assert_eq!(w.download_dest("split.vhd").await, bytes);
    // The SLO just written is itself a source.
    let slo = transfer::inspect(&w.dst, "imports", "split.vhd", ListingPolicy::default())
        .await
        .unwrap();
    assert_eq!(slo.kind, transfer::source::Kind::Slo);
    let mut state = TransferState::new(slo, "imports", "again.vhd", 128 * MIB).unwrap();
    transfer::run(
        SourceAccess::Store(w.dst.clone()),
        w.dest("again.vhd"),
        &mut state,
        w.opts(2),
        collect_events().0,
        &mut no_persist(),
    )
    .await
    .unwrap();
    assert_eq!(w.download_dest("again.vhd").await, bytes);
    // A plain object is cut into segment-size ranges, and its own md5 is checked at the end.
    let plain = bytes[..5 * MIB as usize + 123].to_vec();
    let r = reqwest::Client::new()
        .put(w.src.object_url("exports", "plain.bin"))
        .header("X-Auth-Token", w.sim.issue_token())
        .header("Content-Length", plain.len())
        .body(plain.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let source = transfer::inspect(&w.src, "exports", "plain.bin", ListingPolicy::default())
        .await
        .unwrap();
    assert_eq!(source.kind, transfer::source::Kind::Object);
    let mut state = TransferState::new(source, "imports", "plain.bin", MIB).unwrap();
    assert_eq!(state.pieces.len(), 6);
    let out = w
        .copy(&mut state, "plain.bin", 4, collect_events().0)
        .await
        .unwrap();
    assert_eq!(w.download_dest("plain.bin").await, plain);
    assert_eq!(out.md5, hex::encode(Md5::digest(&plain)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_is_read_directly() {
    let w = World::new(8 * MIB, 2 * MIB).await;
    let path = w.work.path().join("local.vhd");
    let bytes: Vec<u8> = (0..(7 * MIB + 5) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let mut state = TransferState::new(
        transfer::source::local_file(&path).unwrap(),
        "imports",
        "local.vhd",
        2 * MIB,
    )
    .unwrap();
    let out = transfer::run(
        SourceAccess::File(path),
        w.dest("local.vhd"),
        &mut state,
        w.opts(3),
        collect_events().0,
        &mut no_persist(),
    )
    .await
    .unwrap();
    assert_eq!(w.download_dest("local.vhd").await, bytes);
    assert_eq!((out.sha256, out.md5), digests(&bytes));
    assert!(
        !w.work
            .path()
            .join("spill")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "no spill for a local file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_waits_for_a_consistent_listing() {
    let w = World::new(8 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let segments = (bytes.len() as u64).div_ceil(2 * MIB);
    // Hide segment 2: the DLO now looks short, as a listing that lags an export does.
    let last = format!("{name}-00002");
    let url = w.src.object_url("exports", &last);
    let token = w.sim.issue_token();
    let http = reqwest::Client::new();
    let saved = http
        .get(&url)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    http.delete(&url)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    let policy = ListingPolicy {
        attempts: 3,
        first_wait: Duration::from_millis(20),
        max_wait: Duration::from_millis(50),
    };
    let err = transfer::inspect(&w.src, "exports", &name, policy)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never became consistent"), "{err}");
    // The segment "appears" while inspection is waiting: it succeeds.
    let (src, put_url, put_token) = (w.src.clone(), url.clone(), token.clone());
    let inspect = tokio::spawn(async move {
        let policy = ListingPolicy {
            attempts: 20,
            first_wait: Duration::from_millis(50),
            max_wait: Duration::from_millis(100),
        };
        transfer::inspect(&src, "exports", &name, policy).await
    });
    tokio::time::sleep(Duration::from_millis(120)).await;
    http.put(&put_url)
        .header("X-Auth-Token", &put_token)
        .header("Content-Length", saved.len())
        .body(saved)
        .send()
        .await
        .unwrap();
    let source = inspect.await.unwrap().unwrap();
    assert_eq!(source.segments.len() as u64, segments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_preflight_validates_by_ranged_reads() {
    let w = World::new(24 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let remote = RemoteObject {
        store: &w.src,
        container: "exports".into(),
        name: name.clone(),
        len: bytes.len() as u64,
    };
    let report = imgferry::vhd::validate(&remote, &Default::default())
        .await
        .unwrap();
    assert!(report.verdict.accepted, "{}", report.render_human("export"));
    assert!(report.io.bytes_read < 8192);
    // A doomed image (a differencing disk) is rejected before any bulk transfer.
    let mut child = imgferry::vhd::build::Builder::new(
        imgferry::vhd::build::Kind::Dynamic,
        imgferry::vhd::build::Style::XenServer,
        4 * MIB,
    )
    .build();
    child.edit_footers(true, |f| f[60..64].copy_from_slice(&4u32.to_be_bytes()));
    reqwest::Client::new()
        .put(w.src.object_url("exports", "child.vhd"))
        .header("X-Auth-Token", w.sim.issue_token())
        .header("Content-Length", child.bytes.len())
        .body(child.bytes.clone())
        .send()
        .await
        .unwrap();
    let remote = RemoteObject {
        store: &w.src,
        container: "exports".into(),
        name: "child.vhd".into(),
        len: child.bytes.len() as u64,
    };
    let report = imgferry::vhd::validate(&remote, &Default::default())
        .await
        .unwrap();
    assert_eq!(report.verdict.code.map(|c| c.number()), Some(721));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_answered_with_200_is_an_error() {
    // A server that ignores Range and always sends the whole object.
    let app = axum::Router::new().route(
        "/v1/acct/c/o",
        axum::routing::get(|| async { vec![7u8; 4096] }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let store = ObjectStore::new(
        reqwest::Client::new(),
        &format!("http://{addr}/v1/acct"),
        Auth::fixed("t"),
        quick_retry(),
    );
    let remote = RemoteObject {
        store: &store,
        container: "c".into(),
        name: "o".into(),
        len: 4096,
    };
    let err = imgferry::vhd::validate(&remote, &Default::default())
        .await
        .unwrap_err();
    let text = imgferry::error_chain(&err);
    assert!(text.contains("200, not 206"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_in_flight_is_caught_and_fetched_again() {
    let w = World::new(16 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Files, "GET", Action::FlipByte { offset: 777 })
            .in_region("DFW")
            .path("-00003")
            .firing(1, 2),
    ]));
    let mut state = w.plan(&name, "web.vhd", 128 * MIB).await;
    let (events, seen) = collect_events();
    w.copy(&mut state, "web.vhd", 4, events).await.unwrap();
    assert_eq!(
        w.download_dest("web.vhd").await,
        bytes,
        "no corrupted byte reached the destination"
    );
    // Both corrupted GETs were caught: the first on the streamed path (the destination refused the
    // bytes, and so did the md5 check), the second on the spill path.
    let retries = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Retry { reason, .. } if reason == "md5 mismatch" || reason.contains("integrity")))
        .count();
    assert_eq!(retries, 2);
    // Corruption on every try fails the transfer with an integrity error instead.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Files, "GET", Action::FlipByte { offset: 5 })
            .in_region("DFW")
            .path("-00002")
            .firing(1, 100),
    ]));
    let mut state = w.plan(&name, "bad.vhd", 128 * MIB).await;
    let err = w
        .copy(&mut state, "bad.vhd", 4, collect_events().0)
        .await
        .unwrap_err();
    assert!(matches!(err, transfer::Error::Integrity { .. }), "{err}");
    assert!(
        w.dst.head("imports", "bad.vhd").await.unwrap().is_none(),
        "nothing committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_failure_resends_at_most_the_pieces_in_flight() {
    let w = World::new(40 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let concurrency = 4;
    // Uploads of piece 9 fail (500) until the retries run out: the first run stops there.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(
            Service::Files,
            "PUT",
            Action::Fail {
                status: 500,
                retry_after_secs: None,
            },
        )
        .in_region("IAD")
        .path("web.vhd.segments/000009")
        .firing(1, 1000),
    ]));
    let state_path: PathBuf = w.work.path().join("state.json");
    let mut state = w.plan(&name, "web.vhd", 128 * MIB).await;
    let save = |p: PathBuf| {
        move |s: TransferState| -> BoxFuture<'static, Result<(), PersistError>> {
            let p = p.clone();
            Box::pin(async move { Ok(transfer::state_file::save(&p, &s)?) })
        }
    };
    let err = transfer::run(
        SourceAccess::Store(w.src.clone()),
        w.dest("web.vhd"),
        &mut state,
        w.opts(concurrency),
        collect_events().0,
        &mut save(state_path.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, transfer::Error::Api(_)), "{err}");
    let uploaded_before = w.sim.stats().bytes_in.get("IAD").copied().unwrap_or(0);
    // Resume from what was saved on disk, as a new process would.
    w.sim.set_faults(Plan::default());
    let mut resumed: TransferState =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert!(resumed.uploaded_bytes() > 0 && !resumed.is_done());
    let out = transfer::run(
        SourceAccess::Store(w.src.clone()),
        w.dest("web.vhd"),
        &mut resumed,
        w.opts(concurrency),
        collect_events().0,
        &mut save(state_path.clone()),
    )
    .await
    .unwrap();
    let uploaded_total = w.sim.stats().bytes_in["IAD"];
    let resent = uploaded_total.saturating_sub(bytes.len() as u64);
    let segment = 2 * MIB;
    assert!(
        resent <= concurrency as u64 * segment,
        "re-sent {resent} bytes (before the failure {uploaded_before})"
    );
    assert_eq!(w.download_dest("web.vhd").await, bytes);
    assert_eq!(
        (out.sha256, out.md5),
        digests(&bytes),
        "whole-file digests survive the resume"
    );
}

/// An upload recorded by an earlier run stands only for the bytes fetched now: a split piece
/// whose earlier upload carried a corrupted byte (its md5 is only checked per source segment, by
/// the hasher) is sent again when the fetch brings the right bytes, instead of the commit naming
/// an md5 the stored segment does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_upload_of_other_bytes_is_sent_again() {
    let w = World::new(16 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    // 2 MiB export segments in 1 MiB pieces: every piece is split, checked by its segment.
    let mut state = w.plan(&name, "web.vhd", MIB).await;
    let piece = state.pieces[1].clone();
    assert!(!piece.whole);
    // An earlier run uploaded piece 1 with one byte flipped, and recorded it (the run stopped
    // before the hasher reached the end of its segment).
    let start = usize::try_from(MIB).unwrap();
    let mut wrong = bytes[start..start + usize::try_from(piece.len).unwrap()].to_vec();
    wrong[4242] ^= 0xff;
    let spill = w.work.path().join("wrong.bin");
    std::fs::write(&spill, &wrong).unwrap();
    let md5 = hex::encode(Md5::digest(&wrong));
    let etag = w
        .dst
        .put_file_region("imports", &piece.dest, &spill, 0, piece.len, &md5)
        .await
        .unwrap();
    state.pieces[1].uploaded = Some(etag);
    state.pieces[1].md5 = Some(md5);
    w.copy(&mut state, "web.vhd", 4, collect_events().0)
        .await
        .unwrap();
    assert_eq!(w.download_dest("web.vhd").await, bytes);
}

/// A piece that is part of a source segment streams too: its upload runs while it downloads, so
/// over a link slow in both directions it costs one transfer time, not a download and then an
/// upload. (Through the spill file, the 14 MiB image in 1 MiB pieces at 2 MiB/s on one
/// connection took 14.3 s; streamed, about 7 s. The bound sits between the two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_pieces_upload_while_they_download() {
    let w = World::new(16 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let mut state = w.plan(&name, "web.vhd", MIB).await;
    let split = state.pieces.iter().filter(|p| !p.whole).count();
    assert!(split >= 14, "{split} split pieces");
    w.sim.set_faults(Plan {
        throttle_bytes_per_sec: Some(2 * MIB),
        rules: Vec::new(),
    });
    let started = Instant::now();
    w.copy(&mut state, "web.vhd", 1, collect_events().0)
        .await
        .unwrap();
    let took = started.elapsed();
    w.sim.set_faults(Plan::default());
    assert_eq!(w.download_dest("web.vhd").await, bytes);
    let serial = Duration::from_secs_f64(2.0 * bytes.len() as f64 / (2 * MIB) as f64);
    assert!(
        took < serial * 3 / 4,
        "took {took:?}; download-then-upload takes {serial:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_segment_is_retried() {
    let w = World::new(16 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Files, "GET", Action::ResetAfter { bytes: 100_000 })
            .in_region("DFW")
            .path("-00002")
            .firing(1, 2),
    ]));
    let mut state = w.plan(&name, "web.vhd", 128 * MIB).await;
    let started = Instant::now();
    w.copy(&mut state, "web.vhd", 4, collect_events().0)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(w.download_dest("web.vhd").await, bytes);
}

/// A piece gives its connection back when its network work ends, not when the in-order hasher
/// has read it: while the first piece is slow, the others keep every connection busy up to the
/// spill window. (Holding the connection until the piece was hashed left connections idle behind
/// a slow first piece, and a whole wave idle while a backlog was hashed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_piece_does_not_hold_the_other_connections() {
    let w = World::new(16 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Files, "GET", Action::Delay { ms: 2000 })
            .in_region("DFW")
            .path("-00001")
            .firing(1, 1),
    ]));
    let mut state = w.plan(&name, "web.vhd", 128 * MIB).await;
    assert!(state.pieces.len() >= 4, "{} pieces", state.pieces.len());
    let (events, seen) = collect_events();
    w.copy(&mut state, "web.vhd", 2, events).await.unwrap();
    assert_eq!(w.download_dest("web.vhd").await, bytes);
    let done: Vec<usize> = (seen.lock().unwrap().iter())
        .filter_map(|e| match e {
            Event::PieceDone { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    let at = |i: usize| done.iter().position(|d| *d == i).unwrap();
    // Concurrency 2 and a window of 3 after the last hashed piece: pieces 1 and 2 both run on the
    // second connection while piece 0 waits.
    assert!(at(2) < at(0), "piece 2 waited for piece 0: {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_to_real_swift() {
    let Ok(swift) = std::env::var("IMGFERRY_SWIFT_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must start Swift and set IMGFERRY_SWIFT_URL"
        );
        eprintln!("skipping: IMGFERRY_SWIFT_URL is not set (run scripts/swift-saio.sh start)");
        return;
    };
    let w = World::new(24 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    let account = format!(
        "{}/v1/AUTH_xfer{}",
        swift.trim_end_matches('/'),
        std::process::id()
    );
    let swift_store = ObjectStore::new(
        imgferry::http::client().unwrap(),
        &account,
        Auth::fixed("any"),
        quick_retry(),
    );
    swift_store.put_container("imports").await.unwrap();
    // Simulator DFW → real Swift, then real Swift (as an SLO source) → simulator IAD.
    let mut state = w.plan(&name, "web.vhd", 3 * MIB).await;
    let dest = Endpoint {
        store: swift_store.clone(),
        container: "imports".into(),
        name: "web.vhd".into(),
    };
    let out = transfer::run(
        SourceAccess::Store(w.src.clone()),
        dest,
        &mut state,
        w.opts(4),
        collect_events().0,
        &mut no_persist(),
    )
    .await
    .unwrap();
    assert_eq!((out.sha256.clone(), out.md5.clone()), digests(&bytes));
    let back = transfer::inspect(&swift_store, "imports", "web.vhd", ListingPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        back.kind,
        transfer::source::Kind::Slo,
        "real Swift reports the SLO"
    );
    let mut state = TransferState::new(back, "imports", "from-swift.vhd", 128 * MIB).unwrap();
    let out = transfer::run(
        SourceAccess::Store(swift_store),
        w.dest("from-swift.vhd"),
        &mut state,
        w.opts(4),
        collect_events().0,
        &mut no_persist(),
    )
    .await
    .unwrap();
    assert_eq!(w.download_dest("from-swift.vhd").await, bytes);
    assert_eq!((out.sha256, out.md5), digests(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_files_and_their_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(24 * MIB, 2 * MIB).await;
    let (name, bytes) = w.export().await;
    // Hold every segment upload for a while, so spill files exist long enough to be looked at.
    w.sim.set_faults(Plan::with_rules(vec![
        Rule::new(Service::Files, "PUT", Action::Delay { ms: 1500 })
            .in_region("IAD")
            .path(".segments/")
            .firing(1, 3),
    ]));
    let mut state = w.plan(&name, "web.vhd", 128 * MIB).await;
    let spill_dir = w.opts(2).work_dir;
    let run = {
        let (src, dest, opts) = (w.src.clone(), w.dest("web.vhd"), w.opts(2));
        tokio::spawn(async move {
            transfer::run(
                SourceAccess::Store(src),
                dest,
                &mut state,
                opts,
                collect_events().0,
                &mut no_persist(),
            )
            .await
        })
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.is_empty() && Instant::now() < deadline {
        if let Ok(entries) = std::fs::read_dir(&spill_dir) {
            for e in entries.flatten() {
                if let Ok(meta) = e.metadata() {
                    seen.push((e.file_name(), meta.permissions().mode() & 0o777));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!seen.is_empty(), "no spill file appeared");
    for (file, mode) in &seen {
        assert_eq!(*mode, 0o600, "{file:?} is readable by others: {mode:o}");
    }
    let dir_mode = std::fs::metadata(&spill_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the spill directory is {dir_mode:o}");
    run.await.unwrap().unwrap();
    assert_eq!(w.download_dest("web.vhd").await, bytes);
}
