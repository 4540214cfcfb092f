//! `imgferry status [ID]`: one migration in detail, or a table of all known ones, read from the
//! state directory (no network).

use serde_json::json;

use super::{Error, Outcome};
use crate::config::RunConfig;
use crate::exit_code;
use crate::migrate::{self, Migration, Report, Store};
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
            show_table(&store, &all, cfg.format);
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

/// Where it goes: `DFW → IAD`, `DFW → file` for a download, `file → IAD` for a local VHD.
fn route(m: &Migration) -> String {
    let from = m.plan.from.as_deref().unwrap_or("file");
    let to = if m.plan.to_file.is_some() {
        "file"
    } else {
        m.plan.to.as_str()
    };
    format!("{from} → {to}")
}

/// Bytes copied, as a share of the total only when the total is known: while a pipelined export
/// is still writing, the listed segments are not the whole image.
fn progress_label(m: &Migration) -> String {
    match m.progress() {
        Some((done, _)) if !m.total_known() => {
            format!("{} copied (export still writing)", size(done))
        }
        Some((done, total)) => format!(
            "{}/{} ({}%)",
            size(done),
            size(total),
            done * 100 / total.max(1)
        ),
        None => "-".into(),
    }
}

fn show_table(store: &Store, all: &[Migration], format: Format) {
    let fleets = migrate::fleet::state::list(store);
    if format == Format::Json {
        for m in all {
            let (done, total) = m.progress().unwrap_or((0, 0));
            println!(
                "{}",
                json!({"event": "migration", "id": m.id, "state": state_label(m), "step": m.step,
                       "from": m.plan.from, "to": m.plan.to, "to_file": m.plan.to_file,
                       "source": m.plan.entry.describe(), "bytes_done": done,
                       "bytes_total": m.total_known().then_some(total),
                       "created": m.created, "updated": m.updated})
            );
        }
        for f in &fleets {
            let (done, failed) = fleet_counts(store, f);
            println!(
                "{}",
                json!({"event": "fleet", "id": f.id, "from": f.from, "to": f.to,
                       "members": f.members.len(), "done": done, "failed": failed,
                       "selection": f.selection, "created": f.created, "updated": f.updated})
            );
        }
        return;
    }
    if all.is_empty() && fleets.is_empty() {
        println!("no migrations in {}", store.dir().display());
        return;
    }
    let now = migrate::state::unix_now();
    if !all.is_empty() {
        let mut t = super::table::new(
            &["ID", "STATE", "ROUTE", "PROGRESS", "AGE", "SOURCE"],
            &[0, 2, 4],
        );
        for m in all {
            t.add_row(vec![
                m.id.clone(),
                state_label(m),
                route(m),
                progress_label(m),
                super::table::age(now.saturating_sub(m.created)),
                crate::text::escape_controls(&m.plan.entry.describe()).into_owned(),
            ]);
        }
        super::table::print(&t);
    }
    if !fleets.is_empty() {
        if !all.is_empty() {
            println!();
        }
        let mut t = super::table::new(
            &["FLEET", "MEMBERS", "STATE", "ROUTE", "AGE", "SERVERS"],
            &[0, 1, 3, 4],
        );
        for f in &fleets {
            let (done, failed) = fleet_counts(store, f);
            let members = f.members.len();
            let state = if done == members {
                "Done".to_string()
            } else if failed > 0 {
                format!("{failed} failed (imgferry resume {})", f.id)
            } else {
                "unfinished".to_string()
            };
            t.add_row(vec![
                f.id.clone(),
                format!("{done}/{members} done"),
                state,
                format!("{} → {}", f.from, f.to),
                super::table::age(now.saturating_sub(f.created)),
                crate::text::escape_controls(&f.selection).into_owned(),
            ]);
        }
        super::table::print(&t);
    }
}

/// A fleet's members that are done, and those that stopped with a failure.
fn fleet_counts(store: &Store, f: &migrate::fleet::state::Fleet) -> (usize, usize) {
    let saved: Vec<Migration> = f
        .members
        .iter()
        .filter_map(|m| store.load(&m.migration).ok())
        .collect();
    let done = saved
        .iter()
        .filter(|m| m.step == migrate::Step::Done)
        .count();
    let failed = saved.iter().filter(|m| m.failure.is_some()).count();
    (done, failed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Step;
    use crate::migrate::state::{Entry, Plan};
    use crate::transfer::TransferState;
    use crate::transfer::source::{Kind, Source};

    #[test]
    fn a_share_is_shown_only_once_the_total_is_known() {
        let plan = Plan::new(
            Some("DFW".into()),
            "IAD".into(),
            Entry::Server { id: "s".into() },
            String::new(),
        );
        let mut m = Migration::new("m-1".into(), String::new(), plan);
        // What a pipelined copy has seen so far: 8 MiB listed, 6 MiB copied.
        m.facts.transfer = Some(TransferState {
            source: Source {
                kind: Kind::Dlo,
                len: 8 << 20,
                etag: None,
                segments: Vec::new(),
            },
            dest_container: "c".into(),
            dest_name: "o".into(),
            segment_size: 1 << 20,
            pieces: Vec::new(),
            hashed: 0,
            digest: crate::transfer::digest::Digests::default().save(),
            segment_start: None,
            manifest_etag: None,
            sha256: None,
            md5: None,
        });
        m.facts.pipelined = true;
        m.step = Step::Exporting;
        let label = progress_label(&m);
        assert!(
            label.contains("export still writing") && !label.contains('%'),
            "{label}"
        );
        m.step = Step::Exported;
        assert!(progress_label(&m).contains('%'));
        assert_eq!(route(&m), "DFW → IAD");
        m.plan.to_file = Some("/x.vhd".into());
        assert_eq!(route(&m), "DFW → file");
    }
}
