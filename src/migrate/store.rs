//! Where migrations live on disk: `<dir>/<id>.json`, one file per migration.
//!
//! Invariants:
//! - A save writes a temporary file in the same directory, fsyncs it, renames it over the old file
//!   and fsyncs the directory, so a crash or a full disk leaves either the old state or the new one,
//!   never a mixture. The directory is 0700 and files are 0600.
//! - A file that does not parse, or that carries a newer `version`, is reported and never
//!   overwritten: the user's record of remote resources is worth more than convenience.
//! - `<id>.lock` holds an advisory lock (`flock`) while a process drives the migration, so a second
//!   `imgferry resume` of the same id stops with a clear error. The OS drops the lock when the
//!   process dies, even by SIGKILL, so a killed run never leaves a stale lock behind.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::state::{Migration, VERSION};
use crate::fsutil::write_atomic;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the state directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the state file {path}; the previous state is intact")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state directory {path} is not writable: point --state-dir (or IMGFERRY_STATE_DIR) at \
         a directory you can write"
    )]
    NotWritable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the state file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state file {path} is damaged and was left untouched; it lists the remote resources \
         of this migration, so inspect it before moving it away"
    )]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the state file {path} has format version {found}, newer than the {VERSION} this imgferry \
         understands; upgrade imgferry (the file was left untouched)"
    )]
    Newer { path: String, found: u64 },
    #[error("no migration {id} in {dir} (see `imgferry status`)")]
    Unknown { id: String, dir: String },
    #[error(
        "migration {id} is being driven by another imgferry process (lock {path} is held); wait \
         for it to finish or stop it first"
    )]
    Locked { id: String, path: String },
    #[error("cannot lock {path}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise the migration state")]
    Serialise(#[source] serde_json::Error),
    #[error(
        "refusing to save {path}: the new state would not read back (the previous state is intact)"
    )]
    WouldNotReadBack {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A locked, damaged, newer or unknown migration is a usage problem (exit 2): running again
    /// will not help until the user acts. Failing disks and directories are ordinary failures.
    pub fn class(&self) -> crate::exit_code::Class {
        use crate::exit_code::Class;
        match self {
            Error::Locked { .. }
            | Error::CreateDir { .. }
            | Error::NotWritable { .. }
            | Error::Corrupt { .. }
            | Error::Newer { .. }
            | Error::Unknown { .. } => Class::Usage,
            _ => Class::Failed,
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held while a process drives a migration; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The default state directory: `$XDG_STATE_HOME/imgferry`, else `~/.local/state/imgferry`.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("imgferry");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/imgferry")
}

impl Store {
    /// Opens (creating with mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let err = |source| Error::CreateDir {
            path: dir.display().to_string(),
            source,
        };
        // The state files list the remote resources; the work directories hold the customer's
        // disk. Neither is anyone else's business.
        let tightened = match crate::fsutil::private_dir(dir) {
            Ok(t) => t,
            // It exists but cannot be changed: a read-only directory (or file system).
            Err(source) if dir.is_dir() => {
                return Err(Error::NotWritable {
                    path: dir.display().to_string(),
                    source,
                });
            }
            Err(e) => return Err(err(e)),
        };
        if let Some(old) = tightened {
            tracing::warn!(
                "the state directory {} was readable by other users (mode {old:o}); tightened to 700",
                dir.display()
            );
        }
        // A read-only directory would only show when the first state is saved, after remote
        // resources may exist: find out now.
        tempfile::Builder::new()
            .prefix(".probe-")
            .tempfile_in(dir)
            .map_err(|source| Error::NotWritable {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Spill files of a migration's transfer.
    pub fn work_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.work"))
    }

    /// Where an OpenStack image going to a legacy region is staged as a VHD.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.staging"))
    }

    /// Takes the advisory lock of migration `id`, or fails at once if another process holds it.
    pub fn lock(&self, id: &str) -> Result<Lock, Error> {
        let path = self.dir.join(format!("{id}.lock"));
        let shown = path.display().to_string();
        let file = crate::fsutil::lock_file(&path).map_err(|source| Error::Lock {
            path: shown.clone(),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
                id: id.to_string(),
                path: shown,
            }),
            Err(fs::TryLockError::Error(source)) => Err(Error::Lock {
                path: shown,
                source,
            }),
        }
    }

    /// Takes the state directory's own lock, waiting while another process holds it. Held only
    /// for the moment that checks for an unfinished migration of the same source and records the
    /// new one, so two runs started together cannot both go ahead.
    pub fn lock_dir(&self) -> Result<Lock, Error> {
        let path = self.dir.join("imgferry.lock");
        let shown = path.display().to_string();
        let file = crate::fsutil::lock_file(&path).map_err(|source| Error::Lock {
            path: shown.clone(),
            source,
        })?;
        file.lock().map_err(|source| Error::Lock {
            path: shown,
            source,
        })?;
        Ok(Lock { _file: file })
    }

    /// [`Store::lock_dir`] for async code: the wait happens off the async workers.
    pub async fn lock_dir_async(&self) -> Result<Lock, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.lock_dir())
            .await
            .map_err(|e| Error::Lock {
                path: self.dir.join("imgferry.lock").display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Writes `m` atomically with mode 0600. Blocking: async code calls [`Store::persist`].
    pub fn save(&self, m: &Migration) -> Result<(), Error> {
        let json = self.serialise(m)?;
        self.write(&m.id, &json)
    }

    /// The file's bytes, checked to read back: a value JSON cannot carry (a NaN becomes `null`)
    /// must never replace a good file with one the loader refuses.
    fn serialise(&self, m: &Migration) -> Result<Vec<u8>, Error> {
        let json = serde_json::to_vec_pretty(m).map_err(Error::Serialise)?;
        serde_json::from_slice::<Migration>(&json).map_err(|source| Error::WouldNotReadBack {
            path: self.path(&m.id).display().to_string(),
            source,
        })?;
        Ok(json)
    }

    fn write(&self, id: &str, json: &[u8]) -> Result<(), Error> {
        let path = self.path(id);
        write_atomic(&self.dir, &path, json).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// [`Store::save`] for async code: the record is serialised here and the file and directory
    /// fsyncs run on the blocking pool, never on a runtime worker.
    pub async fn persist(&self, m: &Migration) -> Result<(), Error> {
        let json = self.serialise(m)?;
        let (store, id) = (self.clone(), m.id.clone());
        match tokio::task::spawn_blocking(move || store.write(&id, &json)).await {
            Ok(r) => r,
            Err(join) => Err(Error::Write {
                path: self.path(&m.id).display().to_string(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    /// Loads migration `id`.
    pub fn load(&self, id: &str) -> Result<Migration, Error> {
        let path = self.path(id);
        if !path.exists() {
            return Err(Error::Unknown {
                id: id.to_string(),
                dir: self.dir.display().to_string(),
            });
        }
        load_file(&path)
    }

    /// Removes migration `id`'s record, its spill and staging files and its lock file. The caller holds the
    /// migration's lock ([`Store::lock`]), so no run is driving it.
    pub fn forget(&self, id: &str) -> Result<(), Error> {
        let remove = |path: PathBuf, dir: bool| {
            let r = if dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Remove {
                    path: path.display().to_string(),
                    source: e,
                }),
                _ => Ok(()),
            }
        };
        remove(self.path(id), false)?;
        remove(self.work_dir(id), true)?;
        remove(self.staging_dir(id), true)?;
        remove(self.dir.join(format!("{id}.lock")), false)
    }

    /// Every migration in the directory, oldest first, with the files that could not be read.
    pub fn list(&self) -> (Vec<Migration>, Vec<Error>) {
        let mut found = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (found, bad);
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "json") {
                match load_file(&p) {
                    Ok(m) => found.push(m),
                    Err(e) => bad.push(e),
                }
            }
        }
        found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        (found, bad)
    }
}

fn load_file(path: &Path) -> Result<Migration, Error> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    // Check the version before the shape, so a newer file is reported as newer, not as damaged.
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            path: shown.clone(),
            source,
        })?;
    if let Some(v) = value["version"].as_u64()
        && v > u64::from(VERSION)
    {
        return Err(Error::Newer {
            path: shown,
            found: v,
        });
    }
    serde_json::from_value(value).map_err(|source| Error::Corrupt {
        path: shown,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::state::{Cleanup, Entry, Plan, Polling};

    fn migration(id: &str) -> Migration {
        Migration::new(
            id.into(),
            "http://127.0.0.1:1/identity/v2.0".into(),
            Plan {
                from: Some("DFW".into()),
                to: "IAD".into(),
                entry: Entry::Image { id: "img".into() },
                name: "n".into(),
                boot: None,
                src_container: "a".into(),
                dst_container: "b".into(),
                cleanup: Cleanup::None,
                concurrency: 2,
                segment_size: 1 << 20,
                force: false,
                polling: Polling::default(),
                max_virtual_size: crate::vhd::IMPORT_LIMIT,
                max_physical_size: crate::vhd::IMPORT_LIMIT,
                servicenet: Default::default(),
                restore_properties: true,
                vm_mode: None,
                pipeline: true,
                to_file: None,
                to_cloud: None,
                from_cloud: None,
                disk_format: crate::migrate::state::DiskFormat::Auto,
                upload_method: crate::migrate::state::UploadMethod::Auto,
                network: None,
            },
        )
    }

    #[test]
    fn saves_atomically_with_private_modes_and_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let store = Store::open(&dir).unwrap();
        let m = migration("m-1");
        store.save(&m).unwrap();
        assert_eq!(store.load("m-1").unwrap(), m);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&store.path("m-1")), 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::write(store.path("bad"), b"{\"version\": 1, \"id\": ").unwrap();
        assert!(matches!(store.load("bad"), Err(Error::Corrupt { .. })));
        assert_eq!(
            fs::read(store.path("bad")).unwrap(),
            b"{\"version\": 1, \"id\": "
        );
        let mut newer = serde_json::to_value(migration("new")).unwrap();
        newer["version"] = 2.into();
        fs::write(store.path("new"), newer.to_string()).unwrap();
        let err = store.load("new").unwrap_err();
        assert!(matches!(err, Error::Newer { found: 2, .. }), "{err}");
        assert!(matches!(store.load("nope"), Err(Error::Unknown { .. })));
        let (ok, bad) = store.list();
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn a_state_that_would_not_read_back_is_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m = migration("m-nan");
        store.save(&m).unwrap();
        m.plan.polling.server_secs = f64::NAN;
        assert!(matches!(
            store.save(&m),
            Err(Error::WouldNotReadBack { .. })
        ));
        assert!(store.load("m-nan").is_ok(), "the previous state is intact");
    }

    #[test]
    fn a_second_lock_on_one_migration_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let held = store.lock("m-1").unwrap();
        assert!(matches!(store.lock("m-1"), Err(Error::Locked { .. })));
        assert!(store.lock("m-2").is_ok());
        drop(held);
        assert!(store.lock("m-1").is_ok());
    }
}
