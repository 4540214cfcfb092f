//! The application layer: validates the command line into a [`RunConfig`], dispatches to the
//! command that renders the work, and turns the result into output and an exit code. [`finish`] is
//! the one place that prints an error (`error: …`, one `caused by: …` per cause, then what the
//! user can do next) and the exit code always comes from [`Error::exit_code`], whose classes map to
//! numbers in one table ([`crate::exit_code::Class::code`]).

use std::io::Write;

use crate::cli::{Cli, Command, SimCommand};
use crate::commands;
use crate::config::{self, RunConfig};
use crate::exit_code::Class;
use crate::migrate;
use crate::progress::Format;

pub use crate::commands::{Error, Outcome, Stopped};

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<Outcome, Error> {
    let g = &cli.global;
    match cli.command {
        Command::Validate(args) => {
            let cfg = RunConfig::new(g, None, Some(&args.credentials), Some(&args.http))?;
            commands::validate::run(&args, &cfg).await
        }
        Command::Transfer(args) => {
            let cfg = RunConfig::new(g, None, None, Some(&args.http))?;
            commands::transfer::run(&args, &cfg).await
        }
        Command::Migrate(args) => {
            let cfg = RunConfig::new(
                g,
                Some(&args.state),
                Some(&args.credentials),
                Some(&args.http),
            )?;
            commands::migrate::run_migrate(&args, &cfg).await
        }
        Command::Resume(args) => {
            let cfg = RunConfig::new(
                g,
                Some(&args.state),
                Some(&args.credentials),
                Some(&args.http),
            )?;
            let changes = config::resume_changes(
                args.poll_interval,
                args.concurrency,
                args.segment_size,
                args.no_restore_properties,
            )?;
            commands::migrate::run_resume(&args.id, changes, &cfg).await
        }
        Command::Status { id, state } => {
            let cfg = RunConfig::new(g, Some(&state), None, None)?;
            commands::status::run(id.as_deref(), &cfg)
        }
        Command::Forget { id, force, state } => {
            let cfg = RunConfig::new(g, Some(&state), None, None)?;
            commands::forget::forget(&id, force, &cfg)
        }
        Command::Clean {
            older_than,
            dry_run,
            state,
        } => {
            let cfg = RunConfig::new(g, Some(&state), None, None)?;
            commands::forget::clean(older_than, dry_run, &cfg)
        }
        Command::Demo(args) => {
            let cfg = RunConfig::new(g, Some(&args.state), None, Some(&args.http))?;
            commands::demo::run(&args, &cfg).await
        }
        Command::Convert { vhd, qcow2 } => commands::convert::run(&vhd, &qcow2),
        Command::Sim {
            command: SimCommand::Serve(args),
        } => commands::sim_serve::run(&args).await,
        Command::Completions { shell } => commands::completions::completions(shell),
        Command::Man { command, dir } => {
            commands::completions::man(command.as_deref(), dir.as_deref())
        }
    }
}

/// Prints the result (an error on stderr, and as a JSON event on stdout with `--output json`) and
/// returns the exit code.
pub fn finish(result: &Result<Outcome, Error>, format: Format) -> u8 {
    let e = match result {
        Ok(Outcome::Done) => return crate::exit_code::OK,
        Ok(Outcome::Rejected) => return Class::Rejected.code(),
        // The reader closed the pipe (`imgferry man | head`): it has what it wanted.
        Err(Error::Output(io)) if io.kind() == std::io::ErrorKind::BrokenPipe => {
            return crate::exit_code::OK;
        }
        Err(e) => e,
    };
    let interrupted = e.class() == Class::Interrupted;
    let message = crate::secrets::scrub(&crate::error_chain(e));
    if interrupted {
        eprintln!("interrupted");
    } else {
        eprintln!(
            "error: {}",
            crate::text::escape_controls_keep_lines(&message)
        );
    }
    for h in e.hints() {
        eprintln!("  {h}");
    }
    if format == Format::Json {
        let event = migrate::Event::Error {
            message,
            exit_code: e.exit_code(),
            resume: e.resume_command().filter(|c| c.starts_with("imgferry")),
        };
        if let Ok(line) = serde_json::to_string(&event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
    e.exit_code()
}
