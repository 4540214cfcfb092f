//! `imgferry status [ID]`: one migration in detail, or a table of all known ones, read from the
//! state directory (no network).

use std::path::Path;

use serde_json::json;

use super::{Error, Outcome};
use crate::config::RunConfig;
use crate::exit_code;
use crate::migrate::{self, Migration, Report};
use crate::progress::Format;
use crate::units::size;

/// `imgferry status [ID]`.
pub fn run(id: Option<&str>, cfg: &RunConfig) -> Result<Outcome, Error> {
    let store = cfg.store()?;
    match id {
        Some(id) if migrate::fleet::state::is_fleet_id(id) => {
            return super::fleet::status(&store, id, cfg.format);
        }
        Some(id) => show_one(&store.load(id)?, cfg.format),
        None => {
            let (all, bad) = store.list();
            for e in &bad {
                eprintln!("warning: {}", crate::error_chain(e));
            }
            show_table(&all, store.dir(), cfg.format);
        }
    }
    Ok(Outcome::Done)
}

/// "Done", "Transferring", "Failed at Importing (resumable)"…
fn state_label(m: &Migration) -> String {
    match &m.failure {
        Some(f) if f.exit_code == exit_code::INTERRUPTED => format!("Interrupted at {}", f.at),
        Some(f) if f.resumable => format!("Failed at {} (resumable)", f.at),
        Some(f) => format!("Failed at {}", f.at),
        None => m.step.to_string(),
    }
}

fn progress_label(m: &Migration) -> String {
    match m.progress() {
        Some((done, total)) => format!(
            "{}/{} ({}%)",
            size(done),
            size(total),
            done * 100 / total.max(1)
        ),
        None => "-".into(),
    }
}

fn age(m: &Migration) -> String {
    let secs = migrate::state::unix_now().saturating_sub(m.created);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn show_table(all: &[Migration], dir: &Path, format: Format) {
    if format == Format::Json {
        for m in all {
            let (done, total) = m.progress().unwrap_or((0, 0));
            println!(
                "{}",
                json!({"event": "migration", "id": m.id, "state": state_label(m), "step": m.step,
                       "from": m.plan.from, "to": m.plan.to, "source": m.plan.entry.describe(),
                       "bytes_done": done, "bytes_total": total, "created": m.created, "updated": m.updated})
            );
        }
        return;
    }
    if all.is_empty() {
        println!("no migrations in {}", dir.display());
        return;
    }
    println!(
        "{:<14} {:<32} {:<11} {:<26} {:>5}  SOURCE",
        "ID", "STATE", "ROUTE", "PROGRESS", "AGE"
    );
    for m in all {
        let route = format!("{}→{}", m.plan.from.as_deref().unwrap_or("file"), m.plan.to);
        println!(
            "{:<14} {:<32} {:<11} {:<26} {:>5}  {}",
            m.id,
            state_label(m),
            route,
            progress_label(m),
            age(m),
            m.plan.entry.describe()
        );
    }
}

fn show_one(m: &Migration, format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            json!({"event": "migration", "state": state_label(m), "migration": m})
        );
        return;
    }
    println!("{}", Report::new(m, None).render_human());
    println!("  {:<18} {}", "state", state_label(m));
    println!("  {:<18} {}", "progress", progress_label(m));
    if let Some(f) = &m.failure {
        println!(
            "  {:<18} {}",
            "last error",
            f.error.replace('\n', "\n                     ")
        );
        if f.resumable {
            println!("  {:<18} imgferry resume {}", "to continue", m.id);
        }
    }
}
