//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imgferry::vhd::{self, MemSource, Policy, Report};

/// A fixed "now" (2026-11-27T00:00:00Z) so timestamp checks do not depend on the clock.
pub fn policy() -> Policy {
    Policy {
        now: UNIX_EPOCH + Duration::from_secs(1_795_737_600),
        ..Policy::default()
    }
}

/// Validates bytes held in memory.
pub fn check(bytes: &[u8]) -> Report {
    futures::executor::block_on(vhd::validate(&MemSource { bytes }, &policy()))
        .expect("an in-memory source never fails to read")
}

/// Validates a file on disk.
pub fn check_file(path: &Path) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = vhd::FileSource::open(path).expect("open");
    rt.block_on(vhd::validate(&source, &policy()))
        .expect("read")
}

/// The predicted code, or `None` for "accepted".
pub fn code(report: &Report) -> Option<u16> {
    report.verdict.code.map(|c| c.number())
}

/// A readable dump for assertion messages.
pub fn explain(report: &Report) -> String {
    report.render_human("image")
}

/// The qemu-img binary, or `None` (with a printed reason) when it is missing outside CI. In CI its
/// absence is a failure: `.ci/run` installs it.
pub fn qemu_img() -> Option<PathBuf> {
    let found = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("qemu-img"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "qemu-img is missing in CI; .ci/run must install qemu-utils"
    );
    eprintln!("skipping: qemu-img is not installed");
    None
}

/// Runs qemu-img with `args` in `dir`, failing the test on error.
pub fn run_qemu(dir: &Path, args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds since the VHD epoch for a SystemTime, for building timestamps.
#[allow(dead_code)]
pub fn vhd_seconds(t: SystemTime) -> u32 {
    let unix = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(unix - 946_684_800).unwrap_or(u32::MAX)
}

/// Authenticates against a simulator with its account's API key, through imgferry's own identity
/// client.
#[allow(dead_code)]
pub async fn sim_session(sim: &imgferry::sim::SimHandle) -> imgferry::api::identity::Session {
    let http = imgferry::http::client().expect("http client");
    let creds = sim.account().credentials();
    imgferry::api::identity::authenticate(&http, &sim.identity_url(), &creds, &Default::default())
        .await
        .expect("authenticate against the simulator")
}
