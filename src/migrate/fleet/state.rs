//! A fleet's own record: which servers it moves, the migration id of each (chosen and saved
//! before any member starts, so a kill at any instant leaves nothing a resume cannot find), and
//! how the fleet runs (`--parallel`, `--concurrency`, the shard). Each member's progress is in its
//! own migration state file; this record never duplicates it.
//!
//! Fleet files live in `<state dir>/fleets/<id>.json`, written atomically with mode 0600 like the
//! migrations' (and so never listed as a migration).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::migrate::state::{Plan, unix_now};
use crate::migrate::store::{self, Store};

/// The fleet file format. Files with a larger number are refused, never rewritten.
pub const VERSION: u32 = 1;

/// One server of the fleet and the migration that moves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The source server's id.
    pub server: String,
    /// Its name when the fleet was made (for tables; the id is what is used).
    pub server_name: String,
    /// The member's migration id (its state file, once it starts).
    pub migration: String,
    /// The member's plan: the fleet's options with this server as the source.
    pub plan: Plan,
}

/// The K-th of N parts of a fleet (1-based), for spreading one fleet over N machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The persisted record of one fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub version: u32,
    pub id: String,
    pub created: u64,
    pub updated: u64,
    pub identity_url: String,
    pub username: Option<String>,
    /// The destination account's identity endpoint, when it is another account.
    #[serde(default)]
    pub dst_identity_url: Option<String>,
    /// The destination account's user, when it is another account.
    #[serde(default)]
    pub dst_username: Option<String>,
    pub from: String,
    pub to: String,
    /// Members imaging and exporting at once (`--parallel`; see `fleet::Places`).
    pub parallel: usize,
    /// Transfer connections of the whole fleet, handed to members by need.
    pub concurrency: usize,
    pub shard: Option<Shard>,
    /// How the members were chosen, for people (`--all-servers --match '^web-'`).
    pub selection: String,
    pub members: Vec<Member>,
}

impl Fleet {
    pub fn new(id: String, identity_url: String, from: String, to: String) -> Self {
        let now = unix_now();
        Self {
            version: VERSION,
            id,
            created: now,
            updated: now,
            identity_url,
            username: None,
            dst_identity_url: None,
            dst_username: None,
            from,
            to,
            parallel: 1,
            concurrency: 1,
            shard: None,
            selection: String::new(),
            members: Vec::new(),
        }
    }
}

/// Whether `id` names a fleet rather than a migration.
pub fn is_fleet_id(id: &str) -> bool {
    id.starts_with("f-")
}

fn dir(store: &Store) -> PathBuf {
    store.dir().join("fleets")
}

/// Where fleet `id` is saved.
pub fn path(store: &Store, id: &str) -> PathBuf {
    dir(store).join(format!("{id}.json"))
}

/// Saves `fleet` atomically (mode 0600), checking that it reads back.
pub async fn save(store: &Store, fleet: &mut Fleet) -> Result<(), store::Error> {
    fleet.updated = unix_now();
    let json = serde_json::to_vec_pretty(fleet).map_err(store::Error::Serialise)?;
    let target = path(store, &fleet.id);
    serde_json::from_slice::<Fleet>(&json).map_err(|source| store::Error::WouldNotReadBack {
        path: target.display().to_string(),
        source,
    })?;
    let d = dir(store);
    let shown = target.display().to_string();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        crate::fsutil::private_dir(&d)?;
        crate::fsutil::write_atomic(&d, &target, &json)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r);
    written.map_err(|source| store::Error::Write {
        path: shown,
        source,
    })
}

/// Loads fleet `id`; an unknown id says where it looked.
pub fn load(store: &Store, id: &str) -> Result<Fleet, store::Error> {
    let p = path(store, id);
    let shown = p.display().to_string();
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(store::Error::Unknown {
                id: id.to_string(),
                dir: dir(store).display().to_string(),
            });
        }
        Err(source) => {
            return Err(store::Error::Read {
                path: shown,
                source,
            });
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| store::Error::Corrupt {
            path: shown.clone(),
            source,
        })?;
    if let Some(v) = value["version"].as_u64()
        && v > u64::from(VERSION)
    {
        return Err(store::Error::Newer {
            path: shown,
            found: v,
        });
    }
    serde_json::from_value(value).map_err(|source| store::Error::Corrupt {
        path: shown,
        source,
    })
}

/// Every readable fleet in the state directory (unreadable ones are skipped: `status` reports
/// them).
pub fn list(store: &Store) -> Vec<Fleet> {
    let Ok(entries) = std::fs::read_dir(dir(store)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?;
            load(store, id).ok()
        })
        .collect()
}
