//! `imgferry demo`: a complete migration against the embedded simulated cloud. It starts the
//! simulator with DFW and IAD and a server holding a realistic image (1 GiB virtual, 40% allocated
//! by default), runs `migrate --server … --boot …` with live progress, checks the imported image's
//! bytes against the source's digest, and shows how to do the same against the real cloud.

use std::sync::Arc;
use std::time::Duration;

use super::migrate::{Runner, cancel_on_signals, finish_report, http_timeout};
use crate::cli::{DemoArgs, GlobalOpts, OutputFormat};
use crate::exit_code;
use crate::migrate::Store;
use crate::migrate::state::{Cleanup, Entry, Plan, Polling};
use crate::progress::Reporter;
use crate::sim::{self, DiskSpec, SeedServer, SimConfig, Timing};

const SERVER: &str = "demo-web-1";

/// Runs the demo; returns the exit code.
pub async fn run(args: &DemoArgs, global: &GlobalOpts) -> u8 {
    let reporter = Arc::new(Reporter::new(global.output));
    let human = global.output == OutputFormat::Human;
    let step = Duration::from_secs_f64(args.step_seconds.clamp(0.0, 600.0));
    let config = SimConfig {
        timing: Timing {
            build: step,
            imaging: step,
            task: step,
            ..Timing::demo()
        },
        export_segment_size: 64 << 20,
        servers: vec![SeedServer {
            region: "DFW".into(),
            name: SERVER.into(),
            disk: DiskSpec {
                virtual_size: args.disk_size,
                allocated: args.allocated.clamp(0.0, 1.0),
                seed: 2026,
            },
        }],
        ..SimConfig::default()
    };
    let sim = match sim::spawn(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot start the simulated cloud: {}",
                crate::error_chain(&e)
            );
            return exit_code::FAILED;
        }
    };
    let Some((server_id, _)) = sim.servers("DFW").into_iter().find(|(_, n)| n == SERVER) else {
        eprintln!("error: the simulated cloud did not create its demo server");
        return exit_code::FAILED;
    };
    // The demo's state lives in a temporary directory unless --state-dir says otherwise, so it
    // never mixes with real migrations.
    let tmp = tempfile::Builder::new().prefix("imgferry-demo-").tempdir();
    let dir = match (&global.state_dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("error: cannot create a state directory: {e}");
            return exit_code::FAILED;
        }
    };
    let store = match Store::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            return exit_code::FAILED;
        }
    };
    if human {
        eprintln!(
            "imgferry demo: a simulated Rackspace cloud with DFW and IAD is running at {}",
            sim.base_url()
        );
        eprintln!(
            "server {SERVER} ({server_id}) in DFW has a {} disk; moving it to IAD and booting it there\n",
            crate::progress::size(args.disk_size)
        );
        eprintln!(
            "equivalent command:\n  imgferry migrate --from DFW --to IAD --server {server_id} --boot general1-2\n"
        );
    }
    let runner = Runner {
        identity_url: sim.identity_url(),
        http_timeout: http_timeout(global),
        creds: sim.account().credentials(),
        store,
        reporter: Arc::clone(&reporter),
        cancel: cancel_on_signals(),
    };
    let plan = Plan {
        from: Some("DFW".into()),
        to: "IAD".into(),
        entry: Entry::Server { id: server_id },
        name: format!("{SERVER} from DFW (imgferry demo)"),
        boot: Some("general1-2".into()),
        src_container: "imgferry-exports".into(),
        dst_container: "imgferry-imports".into(),
        cleanup: Cleanup::None,
        concurrency: 4,
        segment_size: 128 << 20,
        force: false,
        polling: Polling {
            server_secs: 0.5,
            task_secs: 0.5,
            deadline_secs: 600.0,
        },
    };
    let finished = match runner.start(plan).await {
        Ok(f) => f,
        Err(e) => return finish_report(&reporter, global.output, Err(e)),
    };
    let verified = match &finished.result {
        Ok(report) => {
            verify(
                &sim,
                report.imported_image.as_deref(),
                report.sha256.as_deref(),
            )
            .await
        }
        Err(_) => None,
    };
    let code = finish_report(&reporter, global.output, Ok(Ok(finished)));
    if human && code == exit_code::OK {
        match verified {
            Some(Ok(sum)) => println!(
                "Verified: the image imported in IAD has SHA-256 {sum}, the same as the VHD exported in DFW."
            ),
            Some(Err(e)) => {
                println!("Verification FAILED: {e}");
                return exit_code::FAILED;
            }
            None => {}
        }
        println!(
            "\nTo do this for real:\n  export RAX_USERNAME=<user> RAX_API_KEY=<api key>\n  \
             imgferry migrate --from DFW --to IAD --server <server id> --boot <flavor>\n\
             If it is interrupted: imgferry resume <id>    Progress of all: imgferry status"
        );
    }
    code
}

/// Hashes the imported image's bytes inside the simulator and compares with the transfer's digest.
async fn verify(
    sim: &sim::SimHandle,
    image: Option<&str>,
    expected: Option<&str>,
) -> Option<Result<String, String>> {
    let disk = sim.image_disk("IAD", image?)?;
    let expected = expected?.to_string();
    Some(
        match tokio::task::spawn_blocking(move || disk.sha256()).await {
            Ok(Ok(sum)) if sum == expected => Ok(sum),
            Ok(Ok(sum)) => Err(format!("imported image SHA-256 {sum}, source {expected}")),
            Ok(Err(e)) => Err(format!("cannot read the imported image: {e}")),
            Err(e) => Err(e.to_string()),
        },
    )
}
