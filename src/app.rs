//! Dispatches a parsed command line to the code that does the work; each command returns its exit
//! code (src/exit_code.rs).

use crate::cli::{Cli, Command, SimCommand};
use crate::commands;

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let output = cli.global.output;
    match cli.command {
        Command::Validate(args) => {
            commands::validate::run(&args, output, cli.global.identity_url.as_deref()).await
        }
        Command::Transfer(args) => commands::transfer::run(&args, output).await,
        Command::Migrate(args) => commands::migrate::run_migrate(&args, &cli.global).await,
        Command::Resume { id, poll_interval } => {
            commands::migrate::run_resume(&id, poll_interval, &cli.global).await
        }
        Command::Status { id } => commands::migrate::run_status(id.as_deref(), &cli.global),
        Command::Demo(args) => commands::demo::run(&args, &cli.global).await,
        Command::Sim {
            command: SimCommand::Serve(args),
        } => commands::sim_serve::run(&args).await,
    }
}
