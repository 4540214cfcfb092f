//! `imgferry forget ID` and `imgferry clean`: drop records from the state directory. Nothing in
//! the cloud is touched. An unfinished migration that holds resources (a snapshot, an export, an
//! upload…) is only forgotten with `--force`, and then they are listed, since without its
//! record imgferry can neither resume nor clean them up.

use serde_json::json;

use super::{Error, Outcome};
use crate::config::RunConfig;
use crate::migrate::fleet::state as fleet_state;
use crate::migrate::state::{Migration, Step, unix_now};
use crate::migrate::store::Store;
use crate::progress::Format;

/// Why a forget was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{id} is unfinished and holds resources imgferry created:\n{}\nresume it (imgferry resume \
         {id}) so it can finish or clean them up, or forget it with --force and delete them \
         yourself",
        list(.held)
    )]
    Holds { id: String, held: Vec<String> },
}

fn list(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `imgferry forget ID [--force]`.
pub fn forget(id: &str, force: bool, cfg: &RunConfig) -> Result<Outcome, Error> {
    let store = cfg.store()?;
    if fleet_state::is_fleet_id(id) {
        return forget_fleet(&store, id, force, cfg.format);
    }
    let _lock = store.lock(id)?;
    let m = store.load(id)?;
    let held = blocking(&m);
    if !held.is_empty() && !force {
        return Err(Error::Forget(Refusal::Holds {
            id: id.to_string(),
            held,
        }));
    }
    store.forget(id)?;
    report(id, &m.held(), cfg.format);
    Ok(Outcome::Done)
}

/// What keeps an unfinished migration from being forgotten: everything it holds. A finished one
/// holds only its result (and staging copies the user chose to keep), so nothing blocks it.
fn blocking(m: &Migration) -> Vec<String> {
    if m.step == Step::Done {
        Vec::new()
    } else {
        m.held()
    }
}

/// A fleet and its members' records: refused while any member is unfinished and holds
/// something, unless `force`.
fn forget_fleet(store: &Store, id: &str, force: bool, format: Format) -> Result<Outcome, Error> {
    let _lock = store.lock(id)?;
    let fleet = fleet_state::load(store, id)?;
    let members: Vec<Migration> = fleet
        .members
        .iter()
        .filter_map(|m| store.load(&m.migration).ok())
        .collect();
    let held: Vec<String> = members
        .iter()
        .flat_map(|m| blocking(m).into_iter().map(|h| format!("{}: {h}", m.id)))
        .collect();
    if !held.is_empty() && !force {
        return Err(Error::Forget(Refusal::Holds {
            id: id.to_string(),
            held,
        }));
    }
    let mut _member_locks = Vec::new();
    for m in &members {
        _member_locks.push(store.lock(&m.id)?);
        store.forget(&m.id)?;
    }
    remove_fleet_file(store, id)?;
    // The fleet's own lock file, beside the migrations'.
    store.forget(id)?;
    let left: Vec<String> = members
        .iter()
        .flat_map(|m| m.held().into_iter().map(|h| format!("{}: {h}", m.id)))
        .collect();
    report(id, &left, format);
    Ok(Outcome::Done)
}

fn remove_fleet_file(store: &Store, id: &str) -> Result<(), Error> {
    let path = fleet_state::path(store, id);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Store(crate::migrate::store::Error::Remove {
                path: path.display().to_string(),
                source: e,
            }))
        }
        _ => Ok(()),
    }
}

fn report(id: &str, left: &[String], format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            json!({"event": "forgotten", "id": id, "left_in_cloud": left})
        );
        return;
    }
    println!("forgot {id}");
    if !left.is_empty() {
        println!(
            "still in the cloud (imgferry no longer tracks it):\n{}",
            list(left)
        );
    }
}

/// `imgferry clean [--older-than D] [--dry-run]`: every finished migration, and every fleet
/// whose members all finished, last updated more than `older_than` seconds ago.
pub fn clean(older_than: Option<f64>, dry_run: bool, cfg: &RunConfig) -> Result<Outcome, Error> {
    let store = cfg.store()?;
    let now = unix_now();
    let old_enough =
        |updated: u64| older_than.is_none_or(|secs| now.saturating_sub(updated) as f64 >= secs);
    let (all, _) = store.list();
    let done: Vec<&Migration> = all
        .iter()
        .filter(|m| m.step == Step::Done && old_enough(m.updated))
        .collect();
    let fleets: Vec<_> = fleet_state::list(&store)
        .into_iter()
        .filter(|f| {
            old_enough(f.updated)
                && f.members.iter().all(|m| {
                    all.iter()
                        .any(|x| x.id == m.migration && x.step == Step::Done)
                })
        })
        .collect();
    let mut dropped = Vec::new();
    for f in &fleets {
        if !dry_run {
            let _lock = store.lock(&f.id)?;
            remove_fleet_file(&store, &f.id)?;
            store.forget(&f.id)?;
        }
        dropped.push(f.id.clone());
    }
    for m in done {
        if !dry_run {
            // One a process is still driving (it is writing its last record) is left alone.
            let Ok(_lock) = store.lock(&m.id) else {
                continue;
            };
            store.forget(&m.id)?;
        }
        dropped.push(m.id.clone());
    }
    if cfg.format == Format::Json {
        println!(
            "{}",
            json!({"event": "cleaned", "dry_run": dry_run, "ids": dropped})
        );
    } else if dropped.is_empty() {
        println!("nothing finished to drop in {}", store.dir().display());
    } else {
        let verb = if dry_run { "would drop" } else { "dropped" };
        println!(
            "{verb} {} finished: {}",
            crate::units::count(dropped.len(), "record"),
            dropped.join(" ")
        );
    }
    Ok(Outcome::Done)
}
