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

/// Validates each file (or the remote object) and prints the result. Returns the exit code.
pub async fn run(args: &ValidateArgs, output: OutputFormat, identity_url: Option<&str>) -> u8 {
    let policy = Policy {
        max_virtual_size: args.max_virtual_size,
        max_physical_size: args.max_physical_size,
        ..Policy::default()
    };
    if let Some(remote) = &args.remote {
        return run_remote(remote, output, identity_url, &policy).await;
    }
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
    #[error("cannot open {path}; check the path and its permissions")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] vhd::Error),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::Error),
    #[error(transparent)]
    Catalog(#[from] crate::api::identity::CatalogError),
    #[error(transparent)]
    Api(#[from] crate::api::Error),
    #[error("{0} must be CONTAINER/OBJECT")]
    Location(String),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Credentials(_) | Self::Catalog(_) | Self::Location(_) => exit_code::USAGE,
            Self::Api(crate::api::Error::Unauthorized { .. }) => exit_code::AUTH_FAILED,
            _ => exit_code::FAILED,
        }
    }
}

/// `validate --remote REGION CONTAINER/OBJECT`: the same validation over HTTP Range reads.
async fn run_remote(
    remote: &[String],
    output: OutputFormat,
    identity_url: Option<&str>,
    policy: &Policy,
) -> u8 {
    let [region, location] = remote else {
        return exit_code::USAGE;
    };
    match validate_remote(region, location, identity_url, policy).await {
        Ok(report) => {
            emit(output, &format!("{region}:{location}"), Ok(&report));
            if report.verdict.accepted {
                exit_code::OK
            } else {
                exit_code::REJECTED
            }
        }
        Err(error) => {
            let code = error.exit_code();
            emit(output, &format!("{region}:{location}"), Err(&error));
            code
        }
    }
}

async fn validate_remote(
    region: &str,
    location: &str,
    identity_url: Option<&str>,
    policy: &Policy,
) -> Result<Report, Error> {
    use crate::api::{identity, object_store};
    let (container, object) = location
        .split_once('/')
        .filter(|(c, o)| !c.is_empty() && !o.is_empty())
        .ok_or_else(|| Error::Location(location.to_string()))?;
    let creds = crate::credentials::Credentials::from_env()?;
    let client = crate::http::client().map_err(Error::Client)?;
    let retry = crate::http::RetryConfig::default();
    let (auth, session) = crate::api::auth::Auth::login(
        &client,
        identity_url.unwrap_or(identity::DEFAULT_URL),
        creds,
        &retry,
    )
    .await?;
    let url = session.endpoint("object-store", region)?;
    let store = object_store::ObjectStore::new(client, &url, auth, retry);
    let meta = store
        .head(container, object)
        .await?
        .ok_or_else(|| crate::api::Error::NotFound {
            what: format!("object {location} in {region}"),
            url: crate::http::redact(&store.object_url(container, object)),
        })?;
    let source = object_store::RemoteObject {
        store: &store,
        container: container.into(),
        name: object.into(),
        len: meta.len,
    };
    Ok(vhd::validate(&source, policy).await?)
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
            Err(error) => eprintln!("error: {}", crate::error_chain(error)),
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
