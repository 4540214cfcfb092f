//! `migrate --to-file PATH`: a migration that ends at a local VHD file instead of an import (the
//! backup, and the way off the cloud).
//!
//! The route is the usual one up to the checked export (`Exported`: inspected, validated by ranged
//! reads); the transfer then writes the image into `PATH.part` with the transfer engine's file
//! destination (verified pieces written in place, sparse, synced before they are recorded, so a
//! resume fetches only what is not on disk yet). The finished file is validated again as a whole,
//! like `imgferry validate`, and only then renamed to `PATH`: a file at `PATH` is always complete.

use std::path::{Path, PathBuf};

use super::preflight::{self, VhdSource};
use super::state::Migration;
use super::{Ctx, Error, Event};
use crate::transfer::{self, Destination};

/// Where a download is written until it is complete and validated.
pub fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".part");
    PathBuf::from(name)
}

/// `--to-file PATH` made absolute (a resume may run elsewhere). Refused, with the path shown and
/// the reason, when the file (or an unfinished download of it) exists or its directory does not:
/// imgferry never overwrites a file.
///
/// An existing directory, or a path ending in `/`, stands for `DIR/<image name>.vhd`: it is kept
/// with its trailing `/` until the first step knows the image's name ([`name_in_directory`]).
pub fn check_path(path: &Path) -> Result<String, (String, String)> {
    let abs = std::path::absolute(path).map_err(|e| (path.display().to_string(), e.to_string()))?;
    let shown = abs.display().to_string();
    let refuse = |why: String| Err((shown.clone(), why));
    if path.as_os_str().to_string_lossy().ends_with('/') || abs.is_dir() {
        if !abs.is_dir() {
            return refuse("the directory does not exist: create it first".into());
        }
        if let Err(e) = tempfile::Builder::new()
            .prefix(".imgferry-write-check")
            .tempfile_in(&abs)
        {
            return refuse(format!(
                "cannot be written to ({e}): choose a writable directory"
            ));
        }
        return Ok(format!("{}/", shown.trim_end_matches('/')));
    }
    if abs.file_name().is_none() {
        return refuse("name a file, not a directory".into());
    }
    if abs.exists() {
        return refuse("already exists: remove it or choose another path".into());
    }
    let part = part_path(&abs);
    if part.exists() {
        return refuse(format!(
            "{} exists: an unfinished download (`imgferry status` names it; `imgferry resume ID` \
             continues it), or remove it",
            part.display()
        ));
    }
    let Some(dir) = abs.parent().filter(|d| d.is_dir()) else {
        return refuse("its directory does not exist: create it first".into());
    };
    // Writable now, before any snapshot or export exists (a read-only mount, say).
    if let Err(e) = tempfile::Builder::new()
        .prefix(".imgferry-write-check")
        .tempfile_in(dir)
    {
        return refuse(format!(
            "its directory {} cannot be written to ({e}): choose a writable one",
            dir.display()
        ));
    }
    Ok(shown)
}

/// For a `--to-file DIR/`, the file: `DIR/<image name>.<ext>` (`vhd` from a legacy region, the
/// image's disk format from an OpenStack cloud), checked like any `--to-file` path (never
/// overwriting). A plan that names a file is left as it is.
pub fn name_in_directory(plan: &mut super::state::Plan, ext: &str) -> Result<(), super::Error> {
    let Some(dir) = plan.to_file.as_deref().filter(|p| p.ends_with('/')) else {
        return Ok(());
    };
    let file = format!("{dir}{}.{ext}", file_name_for(&plan.name));
    plan.to_file = Some(
        check_path(Path::new(&file))
            .map_err(|(path, why)| super::Error::Usage(format!("--to-file {path}: {why}")))?,
    );
    Ok(())
}

/// An image name as a file name: path separators and control characters become `_` (a name is
/// the cloud's text, and may hold anything), and an empty name becomes `image`.
fn file_name_for(name: &str) -> String {
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match clean.as_str() {
        "" | "." | ".." => "image".into(),
        _ => clean,
    }
}

pub(super) fn file_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::File {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// `--to-file`'s `PATH` and the `PATH.part` it is written to until complete.
pub(super) fn target(m: &Migration) -> Result<(PathBuf, PathBuf), Error> {
    let path = PathBuf::from(
        m.plan
            .to_file
            .clone()
            .ok_or(Error::Invariant("a download without --to-file"))?,
    );
    let part = part_path(&path);
    Ok((path, part))
}

/// Refuses a download of `needed` more bytes that the file system holding `path` cannot take
/// (not knowing is not a reason to refuse: a full disk is then reported when it happens).
pub(super) fn check_room(path: &Path, needed: u64) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match crate::fsutil::available_bytes(dir) {
        Ok(available) if available < needed => Err(Error::NoSpaceForFile {
            dir: dir.display().to_string(),
            needed: crate::units::size(needed),
            available: crate::units::size(available),
        }),
        _ => Ok(()),
    }
}

/// Downloads the checked export into `PATH.part`, validates it, and renames it to `PATH`.
pub(super) async fn download(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let (path, part) = target(m)?;
    // A copy, never the state moved out: an early return below (no space, no source) leaves
    // the migration's own transfer plan in place, so the saved state can always be resumed.
    let mut state = m
        .facts
        .transfer
        .clone()
        .ok_or(Error::Invariant("Transferring without a transfer plan"))?;
    if state.is_done() && !part.exists() && path.exists() {
        // Killed after the rename and before the state said so: the file is in place.
        return Ok(());
    }
    check_room(
        &path,
        state.source.len.saturating_sub(state.uploaded_bytes()),
    )?;
    // One download per `.part`: a second run onto the same path (another migration, a retried
    // job) is refused rather than writing into the same file. Held until the rename.
    let _part_lock = lock_part(&part, &m.id)?;
    let super::pipelined::Copy {
        opts,
        events,
        mut persist,
    } = super::pipelined::copy_setup(ctx, m);
    let access = transfer::SourceAccess::Store(ctx.src()?.files.clone());
    let dest = Destination::File(part.clone());
    let outcome = tokio::select! {
        r = transfer::run(access, dest, &mut state, opts, events, &mut *persist) => Some(r),
        () = ctx.cancel.cancelled() => None,
    };
    m.facts.transfer = Some(state);
    match outcome {
        None => return Err(Error::Interrupted),
        Some(r) => r?,
    };
    validate(ctx, m, &part).await?;
    rename_into_place(&part, &path).await?;
    // What is at PATH now must be what was downloaded and reported.
    let expected = m.facts.transfer.as_ref().and_then(|t| t.sha256.clone());
    if let Some(expected) = expected {
        let found = preflight::sha256_of(&path).await?;
        if found != expected {
            return Err(Error::Final(format!(
                "{} is not the file downloaded: its SHA-256 is {found}, the download's was \
                 {expected}; another process wrote to it. Remove it and start again",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Creates (or opens) `part` and takes its advisory lock, or refuses at once when another
/// process holds it.
pub(super) fn lock_part(part: &Path, id: &str) -> Result<std::fs::File, Error> {
    let file = crate::fsutil::lock_file(part)
        .map_err(|e| file_error("cannot open the download file", part, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "another imgferry process is downloading into {} (migration {id} was not started \
             there); wait for it, or choose another --to-file path",
            part.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(file_error("cannot lock the download file", part, e))
        }
    }
}

/// The whole file validated as `imgferry validate` would: it must get the verdict the export's
/// ranged pre-flight gave (a file Cloud Images would refuse is still refused unless `--force`).
async fn validate(ctx: &Ctx, m: &Migration, part: &Path) -> Result<(), Error> {
    let report = preflight::validate(VhdSource::File(part), &m.plan.policy()).await?;
    let facts = preflight::facts(&report);
    let code = facts.predicted_code;
    let before = m.facts.vhd.as_ref().and_then(|v| v.predicted_code);
    match code {
        None => Ok(()),
        Some(code) if m.plan.force => {
            ctx.emit(Event::Warning {
                message: format!(
                    "the downloaded VHD would be refused by an import with code {code}; kept \
                     because of --force"
                ),
            });
            Ok(())
        }
        Some(code) => Err(Error::Refused {
            rule: format!(
                "the downloaded VHD {} would be refused by an import with code {code}{}",
                part.display(),
                if before.is_none() {
                    " (the export's ranged pre-flight did not see it)"
                } else {
                    ""
                }
            ),
            from: "imgferry's validation of the whole file (docs/vhd.md)",
            advice: format!(
                "inspect it with `imgferry validate {}`; `--force` keeps such a file",
                part.display()
            ),
        }),
    }
}

/// Renames the finished file to its name and syncs the directory, so the rename survives a crash.
pub(super) async fn rename_into_place(part: &Path, path: &Path) -> Result<(), Error> {
    let (from, to) = (part.to_path_buf(), path.to_path_buf());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if to.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "another file appeared at this path; the download is kept at PATH.part",
            ));
        }
        std::fs::rename(&from, &to)?;
        if let Some(dir) = to.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|_| Error::Invariant("the rename task stopped"))?
    .map_err(|e| file_error("cannot rename the finished download to", path, e))
}
