//! Reading piece bytes back from local files (spill files, a local source, a file destination):
//! in 1 MiB chunks for the in-order hasher, or as one md5.

use std::path::Path;

use md5::{Digest, Md5};

use super::Error;

/// Reads `len` bytes of `path` from `offset` in 1 MiB chunks, handing each to `f`. Blocking.
pub(super) fn for_each_chunk(
    path: &Path,
    offset: u64,
    len: u64,
    mut f: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut file = file.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = file.read(&mut buf)?;
        if k == 0 {
            return Ok(());
        }
        f(&buf[..k]);
    }
}

/// The md5 of `len` bytes of `path` from `offset`, read off the runtime's workers.
pub(super) async fn hash_file_region(path: &Path, offset: u64, len: u64) -> Result<String, Error> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&p)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut f = f.take(len);
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = f.read(&mut buf)?;
            if k == 0 {
                break;
            }
            md5.update(&buf[..k]);
        }
        Ok(hex::encode(md5.finalize()))
    })
    .await
    .map_err(Error::Task)?
    .map_err(|source| Error::Io {
        what: "cannot read",
        path: path.display().to_string(),
        source,
    })
}
