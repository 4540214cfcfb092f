//! File-system helpers shared by every state file imgferry writes (the migrations' and the hidden
//! `transfer` command's): one atomic, private, durable write.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Bytes available to an unprivileged user on the file system that holds `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Creates `dir` (and its parents) private to the user: mode 0700. An existing directory that
/// others can read, write or enter is tightened to 0700; returns its old mode when it was, so the
/// caller can say so.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            return Ok(Some(mode));
        }
    }
    Ok(None)
}

/// Creates (or truncates) `path` for writing, readable by the user only: mode 0600.
pub async fn private_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path).await
}

/// Temp file in `dir`, write, fsync, rename over `path`, fsync `dir`. Mode 0600.
pub fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".state-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o600));
    }
    // The temporary file's name is an implementation detail: errors name the file being saved
    // (the caller's path), with the operating system's reason.
    let mut tmp = builder.tempfile_in(dir).map_err(without_path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The operating system's error without the temporary path tempfile adds to its message.
fn without_path(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.kind().to_string()),
    }
}

/// Opens (creating it, private, never truncating) a file to take an advisory lock on.
pub fn lock_file(path: &Path) -> std::io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}
