//! The hidden `transfer` command's state file: a [`TransferState`] with a format version, written
//! atomically (the same writer as the migrations' state) so a kill leaves the old state or the new
//! one. Files from a newer imgferry are refused, never rewritten; files written before the version
//! field existed read as version 1.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TransferState;

/// The format version of the file.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    #[serde(default = "first_version")]
    version: u32,
    #[serde(flatten)]
    state: TransferState,
}

fn first_version() -> u32 {
    1
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the state file {path} cannot be read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is damaged; it was left untouched (move it away to start over)")]
    Damaged {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the state file {path} has format version {found}, newer than the {VERSION} this imgferry \
         understands; upgrade imgferry (the file was left untouched)"
    )]
    Newer { path: String, found: u64 },
    #[error("cannot write the state file {path}; the previous state is intact")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `state` to `path` atomically with mode 0600.
pub fn save(path: &Path, state: &TransferState) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = File {
        version: VERSION,
        state: state.clone(),
    };
    let write = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| write(std::io::Error::other(e)))?;
    crate::fsutil::write_atomic(dir, path, &json).map_err(write)
}

/// Reads the state at `path`; `None` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<TransferState>, Error> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: shown,
                source,
            });
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Damaged {
            path: shown.clone(),
            source,
        })?;
    // The version first, so a newer file is reported as newer rather than as damaged.
    if let Some(found) = value["version"]
        .as_u64()
        .filter(|v| *v > u64::from(VERSION))
    {
        return Err(Error::Newer { path: shown, found });
    }
    let file: File = serde_json::from_value(value).map_err(|source| Error::Damaged {
        path: shown,
        source,
    })?;
    Ok(Some(file.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, br#"{"version": 9}"#).unwrap();
        assert!(matches!(load(&path), Err(Error::Newer { found: 9, .. })));
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(load(&path), Err(Error::Damaged { .. })));
        assert!(load(&dir.path().join("none.json")).unwrap().is_none());
    }
}
