//! The `imgferry` binary: parse the command line, set up logging and the runtime, run, print the
//! outcome once and exit with its code (`app::finish` is the only error printer).

use clap::Parser;
use imgferry::{app, cli::Cli, config, exit_code};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    end_quietly_on_a_closed_pipe();
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
        .with_writer(|| imgferry::secrets::ScrubbingStderr)
        .with_ansi(imgferry::progress::color_on_stderr())
        .init();
    let format = config::RunConfig::from_global(&cli.global)
        .map_or(imgferry::progress::Format::Human, |c| c.format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime\n  caused by: {e}");
            return exit_code::FAILED.into();
        }
    };
    let result = runtime.block_on(app::run(cli));
    app::finish(&result, format).into()
}

/// `imgferry status | head` closes imgferry's stdout early. Rust ignores SIGPIPE, so the next
/// `println!` fails and panics; a reader that stopped reading is not an error, so the process
/// ends there, quietly and with success, as ripgrep does. Every other panic is reported as usual.
fn end_quietly_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(exit_code::OK.into());
        }
        report(info);
    }));
}
