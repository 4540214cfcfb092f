//! `imgferry sim serve`: run the simulated cloud on loopback until Ctrl-C, and print how to point
//! imgferry (or curl, swift, glance) at it.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Error as CommandError, Outcome};
use crate::cli::SimServeArgs;
use crate::sim::{self, DiskSpec, Plan, SeedServer, SimConfig, Timing};

/// Why the simulator could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--listen {0}: the simulator only listens on loopback addresses (127.0.0.0/8 or [::1])"
    )]
    NotLoopback(String),
    #[error("--listen {0}: not an address such as 127.0.0.1:5000")]
    BadListen(String),
    #[error("cannot read the fault plan {path}")]
    FaultsRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the fault plan {path} is not valid")]
    FaultsParse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("--object-store {0}: expected REGION=URL")]
    ObjectStore(String),
    #[error("--server {0}: expected NAME:SIZE:FRACTION, such as web-1:1GiB:0.4")]
    Server(String),
    #[error("--step-seconds {0}: use a number from 0 to 600")]
    StepSeconds(f64),
    #[error(transparent)]
    Start(#[from] sim::Error),
    #[error("cannot listen for Ctrl-C")]
    Signals(#[source] std::io::Error),
}

/// Turns the flags into a simulator configuration.
pub fn config(args: &SimServeArgs) -> Result<SimConfig, Error> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| Error::BadListen(args.listen.clone()))?;
    if !addr.ip().is_loopback() {
        return Err(Error::NotLoopback(args.listen.clone()));
    }
    let faults = match &args.faults {
        None => Plan::default(),
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| Error::FaultsRead {
                path: shown.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|source| Error::FaultsParse {
                path: shown,
                source,
            })?
        }
    };
    let object_stores = args
        .object_store
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(r, u)| (r.to_uppercase(), u.trim_end_matches('/').to_string()))
                .ok_or_else(|| Error::ObjectStore(s.clone()))
        })
        .collect::<Result<_, _>>()?;
    let first = args
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| "DFW".into());
    let specs = if args.server.is_empty() {
        vec!["demo-web-1:1GiB:0.4".to_string()]
    } else {
        args.server.clone()
    };
    let servers = specs
        .iter()
        .enumerate()
        .map(|(i, s)| parse_server(s, &first, i as u64).ok_or_else(|| Error::Server(s.clone())))
        .collect::<Result<_, _>>()?;
    if !(args.step_seconds.is_finite() && (0.0..=600.0).contains(&args.step_seconds)) {
        return Err(Error::StepSeconds(args.step_seconds));
    }
    let step = Duration::from_secs_f64(args.step_seconds);
    Ok(SimConfig {
        regions: args.regions.iter().map(|r| r.to_uppercase()).collect(),
        data_dir: args.data_dir.clone(),
        timing: Timing {
            build: step,
            imaging: step,
            task: step,
            ..Timing::demo()
        },
        export_segment_size: args.export_segment_size.max(1),
        export: crate::sim::ExportShape {
            rate: args.export_rate.filter(|r| *r > 0),
            rewrite_segment: args.export_rewrite_segment,
            ..crate::sim::ExportShape::default()
        },
        object_stores,
        servers,
        faults,
        ..SimConfig::default()
    })
}

fn parse_server(spec: &str, region: &str, seed: u64) -> Option<SeedServer> {
    let mut parts = spec.split(':');
    let name = parts.next().filter(|n| !n.is_empty())?.to_string();
    let size = crate::units::parse_bytes(parts.next()?).ok()?;
    let allocated: f64 = parts
        .next()?
        .parse()
        .ok()
        .filter(|f: &f64| (0.0..=1.0).contains(f))?;
    Some(SeedServer {
        region: region.to_string(),
        name,
        disk: DiskSpec {
            virtual_size: size,
            allocated,
            seed: 1000 + seed,
        },
        variant: Default::default(),
    })
}

/// Runs the simulator until Ctrl-C.
pub async fn run(args: &SimServeArgs) -> Result<Outcome, CommandError> {
    let handle = sim::spawn_on(config(args)?, &args.listen)
        .await
        .map_err(Error::from)?;
    // Register for Ctrl-C (and SIGTERM) before announcing readiness, so a signal sent as soon as the
    // endpoints are printed is never missed.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let a = handle.account();
    println!(
        "imgferry simulated cloud listening on {}",
        handle.base_url()
    );
    println!("identity: {}", handle.identity_url());
    println!(
        "openstack: keystone v3 {} (alice in project alpha, bob in beta; password <user>-secret), \
         glance in {}",
        handle.keystone_url(),
        crate::sim::openstack::REGIONS.join(", ")
    );
    for region in &args.regions {
        let r = region.to_uppercase();
        println!(
            "{r}: servers {}  images {}  files {}",
            handle.compute_url(&r),
            handle.images_url(&r),
            handle.object_store_url(&r)
        );
    }
    if let Some(first) = args.regions.first() {
        for (id, name) in handle.servers(first) {
            println!("server in {}: {name} ({id})", first.to_uppercase());
        }
    }
    println!("\n# paste into a shell to point imgferry at this cloud:");
    println!("export RAX_IDENTITY_URL={}", handle.identity_url());
    println!("export RAX_USERNAME={}", a.username);
    // The simulated account's key is a fixed, public test value, not a secret.
    println!("export RAX_API_KEY={}", a.api_key);
    println!(
        "\n# stats: curl {}/_sim/stats    stop: Ctrl-C",
        handle.base_url()
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping the simulated cloud");
    Ok(Outcome::Done)
}
