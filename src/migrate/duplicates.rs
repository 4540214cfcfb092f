//! One migration per source and route at a time. A re-run from shell history, cron, a retried
//! Kubernetes pod or an overlapping GNU parallel job would otherwise image and export the same
//! server again and orphan the first run's resources. An unfinished migration counts (one that
//! stopped for good does not), and so does a member of a fleet that has not started yet: it is
//! recorded only in its fleet's file until it runs.
//!
//! The check is made twice: early, for a quick answer, and again under the state directory's lock
//! right before the new migration (or fleet) is first recorded, which makes the check and the
//! record one step against another process doing the same (`Store::lock_dir`).

use super::fleet::state as fleet_state;
use super::state::{Plan, Step};
use super::{Error, Store};

/// Refuses `plan` when an unfinished migration, or a fleet member not started yet, moves the
/// same source along the same route.
pub fn refuse(store: &Store, plan: &Plan) -> Result<(), Error> {
    let same = |p: &Plan| p.entry == plan.entry && p.from == plan.from && p.to == plan.to;
    let (all, _) = store.list();
    if let Some(m) = all.iter().find(|m| {
        m.step != Step::Done && m.failure.as_ref().is_none_or(|f| f.resumable) && same(&m.plan)
    }) {
        return Err(Error::Usage(format!(
            "migration {} already moves {} from {} to {} and is not finished (at {}); continue it \
             with `imgferry resume {}`, or pass --new to start another",
            m.id,
            m.plan.entry.describe(),
            m.plan.from.as_deref().unwrap_or("a local file"),
            m.plan.to,
            m.step,
            m.id
        )));
    }
    for fleet in fleet_state::list(store) {
        let waiting = fleet
            .members
            .iter()
            .find(|member| same(&member.plan) && !store.path(&member.migration).exists());
        if let Some(member) = waiting {
            return Err(Error::Usage(format!(
                "fleet {} already moves {} ({}) from {} to {} (member {}, not started yet); \
                 continue it with `imgferry resume {}`, or pass --new to start another",
                fleet.id,
                plan.entry.describe(),
                member.server_name,
                fleet.from,
                fleet.to,
                member.migration,
                fleet.id
            )));
        }
    }
    Ok(())
}

/// The finished migrations that already moved `plan`'s source along its route, by source: what
/// `--all-servers` skips unless `--new`.
pub fn finished(store: &Store) -> Vec<(Plan, String)> {
    let (all, _) = store.list();
    all.into_iter()
        .filter(|m| m.step == Step::Done)
        .map(|m| (m.plan, m.id))
        .collect()
}
