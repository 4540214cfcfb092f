//! What a migration holds in the clouds (and on this machine): the resources it created that may
//! still exist. `imgferry forget` refuses to drop an unfinished migration that holds anything
//! (without its record, imgferry can neither resume nor clean up), and a new migration that holds
//! nothing when it is refused is not kept at all.

use super::state::{Cleanup, Entry, Intent, Migration, Step};

impl Migration {
    /// What this migration created that may still exist, one line each ("DFW: snapshot image
    /// …"), leaving out what its cleanup deleted. A request whose answer was lost (an intent
    /// without an id) counts: what it asked for may exist.
    pub fn held(&self) -> Vec<String> {
        let f = &self.facts;
        let from = self.plan.from.as_deref().unwrap_or("source");
        let to = &self.plan.to;
        let cleaned = self.step >= Step::CleanedUp;
        let staging_gone = cleaned && self.plan.cleanup != Cleanup::None;
        let all_gone = cleaned && self.plan.cleanup == Cleanup::All;
        let named = |i: &Intent| match &i.id {
            Some(id) => id.clone(),
            // A Glance image's intent is found by its property, not by a name.
            None if f.glance_image.as_ref() == Some(i) => format!(
                "with property {}={} (its id was never received)",
                super::properties::MIGRATION_KEY,
                i.name
            ),
            None => format!("named {} (its id was never received)", i.name),
        };
        let mut out = Vec::new();
        if !all_gone {
            if let Some(s) = f
                .created_server
                .as_ref()
                .filter(|_| matches!(self.plan.entry, Entry::CreateServer { .. }))
            {
                out.push(format!("{from}: server {}", named(s)));
            }
            if let Some(s) = &f.snapshot {
                out.push(format!("{from}: snapshot image {}", named(s)));
            }
        }
        if !staging_gone {
            match (&f.export, &f.export_task) {
                (Some(e), _) if f.exported_by_us => {
                    out.push(format!("{from}: exported VHD {e} and its segments"));
                }
                (None, Some(t)) => out.push(format!(
                    "{from}: the export of export task {} in container {}",
                    t.id.as_deref().unwrap_or("(id never received)"),
                    self.plan.src_container
                )),
                _ => {}
            }
            if let Some(t) = f.transfer.as_ref().filter(|t| t.uploaded_bytes() > 0) {
                match &self.plan.to_file {
                    Some(path) if self.step < Step::Done => {
                        out.push(format!("this machine: partial download {path}.part"));
                    }
                    Some(_) => {}
                    None => out.push(format!(
                        "{to}: uploaded copy {}/{} and its segments",
                        t.dest_container, t.dest_name
                    )),
                }
            }
        }
        if let Some(id) = &f.imported_image {
            out.push(format!("{to}: imported image {id}"));
        } else if let Some(i) = &f.glance_image {
            out.push(format!("{to}: image {}", named(i)));
        } else if let Some(t) = &f.import_task {
            out.push(format!(
                "{to}: whatever import task {} creates",
                t.id.as_deref().unwrap_or("(id never received)")
            ));
        }
        if let Some(s) = &f.boot_server {
            out.push(format!("{to}: server {}", named(s)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::state::{ObjectRef, Plan};

    #[test]
    fn what_a_migration_holds_is_what_it_created_and_did_not_clean_up() {
        let plan = Plan::new(
            Some("DFW".into()),
            "IAD".into(),
            Entry::Server { id: "s".into() },
            String::new(),
        );
        let mut m = Migration::new("m-1".into(), String::new(), plan);
        assert!(m.held().is_empty());
        // An intent whose answer was lost may exist.
        m.facts.snapshot = Some(Intent {
            name: "imgferry-m-1-snapshot".into(),
            id: None,
        });
        assert_eq!(m.held().len(), 1);
        assert!(m.held()[0].contains("never received"), "{:?}", m.held());
        m.facts.snapshot.as_mut().unwrap().id = Some("img".into());
        m.facts.export = Some(ObjectRef {
            container: "c".into(),
            object: "img.vhd".into(),
        });
        m.facts.exported_by_us = true;
        assert_eq!(m.held().len(), 2);
        // Cleaned up with --cleanup all: nothing left.
        m.plan.cleanup = Cleanup::All;
        m.step = Step::CleanedUp;
        assert!(m.held().is_empty(), "{:?}", m.held());
    }
}
