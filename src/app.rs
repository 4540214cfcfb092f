//! Dispatches a parsed command line to the code that does the work and maps the outcome to an exit
//! code. Commands that later versions fill in say so plainly and exit 2; none pretends to work.

use crate::cli::{Cli, Command, SimCommand};
use crate::commands;
use crate::exit_code;

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let output = cli.global.output;
    match cli.command {
        Command::Validate(args) => {
            commands::validate::run(&args, output, cli.global.identity_url.as_deref()).await
        }
        Command::Transfer(args) => commands::transfer::run(&args, output).await,
        Command::Migrate(_) => not_yet("migrate", "migrating an image between regions"),
        Command::Resume { .. } => not_yet("resume", "resuming a migration"),
        Command::Status { .. } => not_yet("status", "listing migrations"),
        Command::Demo => not_yet("demo", "the demo on the simulated cloud"),
        Command::Sim {
            command: SimCommand::Serve(args),
        } => commands::sim_serve::run(&args).await,
    }
}

/// Reports a command this version does not provide yet. Exit 2: it is a usage problem, and nothing
/// was attempted.
fn not_yet(command: &str, what: &str) -> u8 {
    eprintln!(
        "error: `imgferry {command}` is not implemented in imgferry {}: {what} is not available yet\n  \
         what works today: `imgferry validate FILE...`",
        env!("CARGO_PKG_VERSION")
    );
    exit_code::USAGE
}
