//! `imgferry validate FILE...` and `validate --remote REGION CONTAINER/OBJECT`: the pre-flight of a
//! migration ([`crate::migrate::preflight`]) run on its own, printing a report per file.
//!
//! Outcome: an error if any file cannot be read (exit 1), else "rejected" (exit 3) if any would be
//! refused, else done.

use std::io::Write;

use serde::Serialize;

use super::{Error as CommandError, Outcome};
use crate::cli::ValidateArgs;
use crate::config::RunConfig;
use crate::exit_code::Class;
use crate::migrate;
use crate::migrate::preflight::{self, VhdSource};
use crate::migrate::session::connect_region;
use crate::migrate::state::ObjectRef;
use crate::progress::Format;
use crate::vhd::{Policy, Report};

/// Why validation as a whole failed (the report of each file says what it found).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{failed} of {total} files could not be read (see above)")]
    Unreadable { failed: usize, total: usize },
    #[error("--remote {0}: expected CONTAINER/OBJECT")]
    Location(String),
    #[error("object {object} is not in {region}")]
    NoObject { object: String, region: String },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Location(_) => Class::Usage,
            Error::Unreadable { .. } | Error::NoObject { .. } => Class::Failed,
        }
    }
}

/// The JSON line for one file: its report, or the reason it could not be read.
#[derive(Serialize)]
struct FileResult<'a> {
    file: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    report: Option<&'a Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Validates each file (or the remote object) and prints the result.
pub async fn run(args: &ValidateArgs, cfg: &RunConfig) -> Result<Outcome, CommandError> {
    let policy = Policy {
        max_virtual_size: args.max_virtual_size,
        max_physical_size: args.max_physical_size,
        ..Policy::default()
    };
    if let Some(remote) = &args.remote {
        return run_remote(remote, cfg, &policy).await;
    }
    let (mut failed, mut rejected) = (0, false);
    for path in &args.files {
        let name = path.display().to_string();
        match preflight::validate(VhdSource::File(path), &policy).await {
            Ok(report) => {
                rejected |= !report.verdict.accepted;
                emit(cfg.format, &name, Ok(&report));
            }
            Err(error) => {
                failed += 1;
                emit(cfg.format, &name, Err(&error));
            }
        }
    }
    if failed > 0 {
        return Err(Error::Unreadable {
            failed,
            total: args.files.len(),
        }
        .into());
    }
    Ok(if rejected {
        Outcome::Rejected
    } else {
        Outcome::Done
    })
}

/// The same validation over HTTP Range reads of an object in Cloud Files.
async fn run_remote(
    remote: &[String],
    cfg: &RunConfig,
    policy: &Policy,
) -> Result<Outcome, CommandError> {
    let [region, location] = remote else {
        return Err(Error::Location(remote.join(" ")).into());
    };
    let object: ObjectRef = location
        .parse()
        .map_err(|_| Error::Location(location.clone()))?;
    let mut cfg = cfg.clone();
    let creds = cfg.credentials()?.creds;
    let events = migrate::event::discard();
    let files = connect_region(&cfg.link(None), creds, region, &events)
        .await?
        .files;
    let meta = files
        .head(&object.container, &object.object)
        .await
        .map_err(migrate::Error::from)?
        .ok_or_else(|| Error::NoObject {
            object: object.to_string(),
            region: region.clone(),
        })?;
    let source = VhdSource::Object {
        files: &files,
        object: &object,
        len: meta.len,
    };
    let report = preflight::validate(source, policy).await?;
    emit(cfg.format, &format!("{region}:{location}"), Ok(&report));
    Ok(if report.verdict.accepted {
        Outcome::Done
    } else {
        Outcome::Rejected
    })
}

fn emit(format: Format, name: &str, result: Result<&Report, &migrate::Error>) {
    match format {
        Format::Human => match result {
            Ok(report) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", report.render_human(name));
            }
            // Part of this file's report; the command's own error comes once, at the end.
            Err(error) => eprintln!(
                "{name}: {}",
                crate::secrets::scrub(&crate::error_chain(error))
            ),
        },
        Format::Json => {
            let line = FileResult {
                file: name,
                report: result.ok(),
                error: result
                    .err()
                    .map(|e| crate::secrets::scrub(&crate::error_chain(e))),
            };
            if let Ok(json) = serde_json::to_string(&line) {
                println!("{json}");
            }
        }
    }
}
