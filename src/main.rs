//! The `imgferry` binary: parse the command line, set up logging and the runtime, run, print the
//! outcome once and exit with its code (`app::finish` is the only error printer).

use imgferry::{app, exit_code};

fn main() -> std::process::ExitCode {
    end_quietly_on_a_closed_pipe();
    let cli = match imgferry::cli::parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let g = &cli.global;
    if let Err(e) = imgferry::logging::init(g.verbose, g.quiet, g.log_file.as_deref()) {
        let file = g.log_file.as_deref().unwrap_or(std::path::Path::new("-"));
        eprintln!(
            "error: cannot open the log file {}\n  caused by: {e}\n  choose a file you can write, \
             or leave out --log-file",
            file.display()
        );
        return exit_code::USAGE.into();
    }
    let format = match g.output {
        imgferry::cli::OutputFormat::Json => imgferry::progress::Format::Json,
        imgferry::cli::OutputFormat::Human => imgferry::progress::Format::Human,
    };
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
