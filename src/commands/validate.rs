//! `imgferry validate FILE...`: validate local VHD files and print a report per file.
//!
//! Exit code: 1 if any file cannot be read, else 3 if any would be rejected, else 0.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::cli::{OutputFormat, ValidateArgs};
use crate::exit_code;
use crate::vhd::{self, FileSource, Policy, Report};

/// The JSON line for one file: its report, or the reason it could not be read.
#[derive(Serialize)]
struct FileResult<'a> {
    file: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    report: Option<&'a Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Validates each file in turn and prints its result. Returns the exit code.
pub async fn run(args: &ValidateArgs, output: OutputFormat) -> u8 {
    let policy = Policy {
        max_virtual_size: args.max_virtual_size,
        max_physical_size: args.max_physical_size,
        ..Policy::default()
    };
    let mut unreadable = false;
    let mut rejected = false;
    for path in &args.files {
        let name = path.display().to_string();
        match validate_file(path, &policy).await {
            Ok(report) => {
                rejected |= !report.verdict.accepted;
                emit(output, &name, Ok(&report));
            }
            Err(error) => {
                unreadable = true;
                emit(output, &name, Err(&error));
            }
        }
    }
    if unreadable {
        exit_code::FAILED
    } else if rejected {
        exit_code::REJECTED
    } else {
        exit_code::OK
    }
}

/// Why a file could not be validated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] vhd::Error),
}

async fn validate_file(path: &Path, policy: &Policy) -> Result<Report, Error> {
    let source = FileSource::open(path).map_err(|source| Error::Open {
        path: path.display().to_string(),
        source,
    })?;
    Ok(vhd::validate(&source, policy).await?)
}

fn emit(output: OutputFormat, name: &str, result: Result<&Report, &Error>) {
    match output {
        OutputFormat::Human => match result {
            Ok(report) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", report.render_human(name));
            }
            Err(error) => eprintln!(
                "error: {}\n  what to do: check the path and permissions",
                crate::error_chain(error)
            ),
        },
        OutputFormat::Json => {
            let line = FileResult {
                file: name,
                report: result.ok(),
                error: result.err().map(|e| crate::error_chain(e)),
            };
            if let Ok(json) = serde_json::to_string(&line) {
                println!("{json}");
            }
            if let Err(error) = result {
                eprintln!("error: {}", crate::error_chain(error));
            }
        }
    }
}
