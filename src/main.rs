//! The `imgferry` binary: parse the command line, set up logging and the runtime, run, exit.

use clap::Parser;
use imgferry::{app, cli::Cli, exit_code};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime\n  caused by: {e}");
            return exit_code::FAILED.into();
        }
    };
    runtime.block_on(app::run(cli)).into()
}
