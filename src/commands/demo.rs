//! `imgferry demo`: a complete migration against the embedded simulated cloud. It starts the
//! simulator with DFW and IAD and a server holding a realistic image (1 GiB virtual, 40% allocated
//! by default), runs `migrate --server … --boot …` with live progress, checks the imported image's
//! bytes against the source's digest, and shows how to do the same against the real cloud.

use std::sync::Arc;
use std::time::Duration;

use super::migrate::render;
use super::{Error as CommandError, Outcome};
use crate::cli::DemoArgs;
use crate::config::{self, RunConfig};
use crate::migrate::state::{Entry, Plan, Polling};
use crate::migrate::{Session, Store};
use crate::progress::{Format, Reporter};
use crate::sim::{self, DiskSpec, SeedServer, SimConfig, Timing};
use crate::units::size;

const SERVER: &str = "demo-web-1";

/// Why the demo could not run or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the simulated cloud")]
    Sim(#[source] sim::Error),
    #[error("the simulated cloud did not create its demo server")]
    NoServer,
    #[error("cannot create a state directory")]
    StateDir(#[source] std::io::Error),
    #[error("verification failed: {0}")]
    Verify(String),
}

/// Runs the demo.
pub async fn run(args: &DemoArgs, cfg: &RunConfig) -> Result<Outcome, CommandError> {
    let step = config::finite_in("--step-seconds", args.step_seconds, (0.0, 600.0))?;
    let allocated = config::finite_in("--allocated", args.allocated, (0.0, 1.0))?;
    let sim = sim::spawn(sim_config(args.disk_size, allocated, step))
        .await
        .map_err(Error::Sim)?;
    let (server_id, _) = sim
        .servers("DFW")
        .into_iter()
        .find(|(_, n)| n == SERVER)
        .ok_or(Error::NoServer)?;
    // The demo's state lives in a temporary directory unless --state-dir says otherwise, so it
    // never mixes with real migrations.
    let mut tmp = tempfile::Builder::new();
    tmp.prefix("imgferry-demo-");
    // Private from the start: the state directory check would otherwise warn about (and
    // tighten) the directory the demo itself made.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let tmp = tmp.tempdir().map_err(Error::StateDir)?;
    let dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let human = cfg.format == Format::Human;
    if human {
        introduce(&sim, &server_id, args.disk_size);
    }
    let reporter = Arc::new(Reporter::new(cfg.format, cfg.quiet));
    let mut link = cfg.link(None);
    link.identity_url = sim.identity_url();
    let session = Session::new(
        link,
        Some(sim.account().credentials()),
        Store::open(&dir)?,
        reporter.sink(),
        crate::signals::cancel_on_signals(),
    )?;
    let mut plan = Plan::new(
        Some("DFW".into()),
        "IAD".into(),
        Entry::Server { id: server_id },
        String::new(),
    );
    plan.boot = Some("general1-2".into());
    plan.polling = Polling {
        server_secs: 0.5,
        task_secs: 0.5,
        deadline_secs: 600.0,
    };
    let name = Some(format!("{SERVER} from DFW (imgferry demo)"));
    let finished = session.start(plan, name, &|_, _| Ok(())).await?;
    let imported = finished
        .result
        .as_ref()
        .ok()
        .map(|r| (r.imported_image.clone(), r.sha256.clone()));
    let outcome = render(&reporter, cfg.format, finished)?;
    if let Some((Some(image), Some(expected))) = imported {
        let sum = verify(&sim, &image, &expected).await?;
        if human {
            println!(
                "Verified: the image imported in IAD has SHA-256 {sum}, the same as the VHD exported in DFW."
            );
        }
    }
    if human {
        println!(
            "\nTo do this for real:\n  export RAX_USERNAME=<user> RAX_API_KEY=<api key>\n  \
             imgferry migrate --from DFW --to IAD --server <server id> --boot <flavor>\n\
             If it is interrupted: imgferry resume <id>    Progress of all: imgferry status"
        );
    }
    Ok(outcome)
}

fn sim_config(disk_size: u64, allocated: f64, step_secs: f64) -> SimConfig {
    let step = Duration::from_secs_f64(step_secs);
    SimConfig {
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
                virtual_size: disk_size,
                allocated,
                seed: 2026,
            },
            variant: Default::default(),
        }],
        ..SimConfig::default()
    }
}

fn introduce(sim: &sim::SimHandle, server_id: &str, disk_size: u64) {
    eprintln!(
        "imgferry demo: a simulated Rackspace cloud with DFW and IAD is running at {}",
        sim.base_url()
    );
    eprintln!(
        "server {SERVER} ({server_id}) in DFW has a {} disk; moving it to IAD and booting it there\n",
        size(disk_size)
    );
    eprintln!(
        "equivalent command:\n  imgferry migrate --from DFW --to IAD --server {server_id} --boot general1-2\n"
    );
}

/// Hashes the imported image's bytes inside the simulator and compares with the transfer's digest.
async fn verify(sim: &sim::SimHandle, image: &str, expected: &str) -> Result<String, Error> {
    let disk = sim
        .image_disk("IAD", image)
        .ok_or_else(|| Error::Verify(format!("image {image} is not in IAD")))?;
    let sum = tokio::task::spawn_blocking(move || disk.sha256())
        .await
        .map_err(|e| Error::Verify(e.to_string()))?
        .map_err(|e| Error::Verify(format!("cannot read the imported image: {e}")))?;
    if sum == expected {
        Ok(sum)
    } else {
        Err(Error::Verify(format!(
            "imported image SHA-256 {sum}, source {expected}"
        )))
    }
}
