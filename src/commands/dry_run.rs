//! `imgferry migrate --dry-run`: authenticate, check that the source exists and the regions are in
//! the catalog, validate what can be validated without creating anything (a local VHD, or an
//! existing export by ranged reads), and print the steps a real run would take. It sends only
//! GET and HEAD requests and writes no state file.

use serde_json::json;

use super::migrate::Runner;
use crate::api::object_store::RemoteObject;
use crate::exit_code;
use crate::migrate::Error;
use crate::migrate::state::{Cleanup, Entry, Plan, Step};
use crate::progress::size;
use crate::transfer::{self, ListingPolicy};
use crate::vhd::{self, Policy};

/// Runs the dry run; returns the exit code (3 when validation predicts a rejection).
pub async fn run(runner: &Runner, plan: &Plan) -> Result<u8, Error> {
    let ctx = runner.connect(plan).await?;
    let from = plan.from.as_deref().unwrap_or("-");
    let mut checks: Vec<String> = Vec::new();
    let mut report = None;
    match &plan.entry {
        Entry::Server { id } => {
            let s = ctx.src()?.compute.get_server(id).await?.ok_or_else(|| {
                Error::Config(format!(
                    "server {id} is not in {from} (check the id and --from)"
                ))
            })?;
            checks.push(format!("server {id} ({}) is {}", s.name, s.status));
        }
        Entry::Image { id } | Entry::CreateServer { image: id, .. } => {
            let i = ctx.src()?.images.get_image(id).await?.ok_or_else(|| {
                Error::Config(format!(
                    "image {id} is not in {from} (check the id and --from)"
                ))
            })?;
            checks.push(format!(
                "image {id} ({}) is {}",
                i.name.unwrap_or_default(),
                i.status
            ));
        }
        Entry::Export { container, object } => {
            let files = &ctx.src()?.files;
            let source = transfer::inspect(files, container, object, ListingPolicy::default())
                .await
                .map_err(transfer::Error::from)?;
            checks.push(format!(
                "{container}/{object} holds {} in {} segments",
                size(source.len),
                source.segments.len().max(1)
            ));
            let remote = RemoteObject {
                store: files,
                container: container.clone(),
                name: object.clone(),
                len: source.len,
            };
            report = Some(
                vhd::validate(&remote, &Policy::default())
                    .await
                    .map_err(|e| Error::LocalVhd {
                        path: format!("{container}/{object}"),
                        detail: crate::error_chain(&e),
                    })?,
            );
        }
        Entry::Vhd { path } => {
            let source =
                vhd::FileSource::open(std::path::Path::new(path)).map_err(|e| Error::LocalVhd {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            report = Some(
                vhd::validate(&source, &Policy::default())
                    .await
                    .map_err(|e| Error::LocalVhd {
                        path: path.clone(),
                        detail: crate::error_chain(&e),
                    })?,
            );
        }
    }
    let predicted = report
        .as_ref()
        .and_then(|r| r.verdict.code)
        .map(|c| c.number());
    if let Some(r) = &report {
        checks.push(match r.verdict.code {
            None => "validation predicts the import will be accepted".into(),
            Some(c) => format!(
                "validation predicts import code {}: {}{}",
                c.number(),
                c.meaning(),
                if plan.force {
                    " (--force: importing anyway)"
                } else {
                    ""
                }
            ),
        });
    }
    let steps = steps(plan);
    if runner.reporter.is_json() {
        println!(
            "{}",
            json!({"event": "plan", "from": plan.from, "to": plan.to, "source": plan.entry.describe(),
                   "steps": steps, "checks": checks, "predicted_code": predicted,
                   "image_name": plan.name, "creates_nothing": true})
        );
    } else {
        println!(
            "Plan: {} → {}, {} (dry run: nothing was created)",
            plan.from.as_deref().unwrap_or("local file"),
            plan.to,
            plan.entry.describe()
        );
        for c in &checks {
            println!("  checked: {c}");
        }
        for (i, s) in steps.iter().enumerate() {
            println!("  {:>2}. {s}", i + 1);
        }
    }
    Ok(match predicted {
        Some(_) if !plan.force => exit_code::REJECTED,
        _ => exit_code::OK,
    })
}

/// The steps a real run would take, with the names it would use (`<id>` is the migration id).
fn steps(plan: &Plan) -> Vec<String> {
    let from = plan.from.as_deref().unwrap_or("-");
    let to = &plan.to;
    let first = match plan.entry {
        Entry::CreateServer { .. } => Step::Planned,
        Entry::Server { .. } => Step::Imaging,
        Entry::Image { .. } => Step::ImageActive,
        Entry::Export { .. } => Step::Exported,
        Entry::Vhd { .. } => Step::Inspected,
    };
    let mut out = Vec::new();
    for step in Step::ALL.into_iter().filter(|s| *s >= first) {
        let line = match step {
            Step::Planned => {
                format!("create server imgferry-<id>-source in {from} and wait for ACTIVE")
            }
            Step::Imaging => {
                format!("create image imgferry-<id>-snapshot in {from} and wait for active")
            }
            Step::ImageActive => format!(
                "export it to Cloud Files {from} container {} and wait for the task",
                plan.src_container
            ),
            Step::Exported => "inspect the export and validate the VHD by ranged reads".into(),
            Step::Inspected if matches!(plan.entry, Entry::Vhd { .. }) => {
                "validate the local VHD (done above)".into()
            }
            Step::Transferring => format!(
                "copy it to {to} as {}/imgferry-<id>.vhd in verified segments ({} at a time)",
                plan.dst_container, plan.concurrency
            ),
            Step::Importing => format!("import it in {to} as image \"{}\"", plan.name),
            Step::Booting if plan.boot.is_some() => format!(
                "boot server imgferry-<id>-boot with flavor {} in {to}",
                plan.boot.as_deref().unwrap_or_default()
            ),
            Step::CleanedUp if plan.cleanup != Cleanup::None => {
                format!(
                    "delete the staging copies{}",
                    if plan.cleanup == Cleanup::All {
                        ", the snapshot and any server imgferry created"
                    } else {
                        ""
                    }
                )
            }
            _ => continue,
        };
        out.push(line);
    }
    out
}
