//! A local file as the transfer's destination (`migrate --to-file`): the image written in place.
//!
//! The file (`PATH.part` until the caller validates and renames it) is created private (0600, an
//! image holds a server's disk) and sized to the image up front. Each piece is fetched with a
//! ranged GET and written at its offset in the image as it streams, with no spill file; the bytes
//! are hashed on the way (md5, checked against the listing for a whole segment), blocks of 64 KiB
//! that are all zero are left as holes, so the file is as sparse as the VHD, and the file is synced
//! before the piece is handed on, so a piece the state records as written is on disk. The in-order
//! hasher then reads the piece back from the file: the whole-image digests are of what is stored.
//!
//! A retried or resumed piece may find bytes of an earlier attempt in its range; skipping a zero
//! block would keep them. So the range is first deallocated (`fallocate` punch-hole), and where the
//! file system cannot, the piece is written densely, zeros included.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use md5::{Digest, Md5};

use super::context::{Ctx, Ready};
use super::digest::Digests;
use super::source::{SrcSegment, etag_of_etags};
use super::{Error, Event, Outcome, Persist, Piece, SourceAccess, TransferState};

/// Holes are made in blocks of this size: the VHD block granularity that matters is 2 MiB, and
/// file systems allocate in 4 KiB, so 64 KiB finds nearly every hole for little checking.
const BLOCK: u64 = 64 * 1024;
/// Bytes gathered before they are written (one blocking write call per batch, not per chunk).
const BATCH: usize = 1 << 20;

fn io(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Opens the destination file at `path`, sized to the image. A file that is missing or of another
/// size holds none of the pieces recorded as written: they are forgotten (and the hashing starts
/// over) and a fresh, private, sized file is made. Kept pieces after the hashed ones are read back
/// and kept only if they still have the md5 they were written with.
pub(super) async fn prepare(path: &Path, state: &mut TransferState) -> Result<(), Error> {
    let len = state.source.len;
    let existing = tokio::fs::metadata(path).await.ok().map(|m| m.len());
    if existing != Some(len) {
        if state.pieces.iter().any(|p| p.uploaded.is_some()) {
            tracing::warn!(
                path = %path.display(),
                "the partly written file is missing or has another size; writing it again"
            );
        }
        forget_all(state);
        let file = crate::fsutil::private_file(path)
            .await
            .map_err(|e| io("cannot create", path, e))?;
        file.set_len(len)
            .await
            .map_err(|e| io("cannot size (disk full?)", path, e))?;
        file.sync_all()
            .await
            .map_err(|e| io("cannot sync", path, e))?;
        return Ok(());
    }
    let starts = piece_starts(state);
    let hashed = state.hashed;
    for (p, at) in state.pieces.iter_mut().zip(starts).skip(hashed) {
        let Some(want) = p.uploaded.clone() else {
            continue;
        };
        if super::read_back::hash_file_region(path, at, p.len).await? != want {
            tracing::info!(
                piece = p.index,
                "a piece recorded as written does not read back the same; writing it again"
            );
            p.uploaded = None;
            p.md5 = None;
        }
    }
    Ok(())
}

fn forget_all(state: &mut TransferState) {
    for p in &mut state.pieces {
        p.uploaded = None;
        p.md5 = None;
    }
    state.hashed = 0;
    state.digest = Digests::default().save();
    state.segment_start = None;
}

/// Where each piece starts in the image.
pub(super) fn piece_starts(state: &TransferState) -> Vec<u64> {
    let seg_starts: Vec<u64> = state
        .source
        .segments
        .iter()
        .scan(0u64, |at, s| {
            let start = *at;
            *at += s.bytes;
            Some(start)
        })
        .collect();
    state
        .pieces
        .iter()
        .map(|p| seg_starts.get(p.segment).copied().unwrap_or(0) + p.offset)
        .collect()
}

/// Writes one piece into the file at `at` (or, when it is recorded as written and was confirmed
/// by [`prepare`], only hands it on) and returns it ready for the in-order hasher.
pub(super) async fn write_piece(
    ctx: &Ctx,
    path: &Path,
    at: u64,
    piece: &Piece,
    segment: &SrcSegment,
) -> Result<Ready, Error> {
    let ready = |md5: String| Ready {
        index: piece.index,
        path: path.to_path_buf(),
        offset: at,
        spill: false,
        md5: md5.clone(),
        uploaded: Some(md5),
        spill_permit: None,
    };
    if let Some(md5) = &piece.uploaded {
        ctx.done.fetch_add(piece.len, Ordering::Relaxed);
        return Ok(ready(md5.clone()));
    }
    let SourceAccess::Store(store) = &ctx.source else {
        return Err(Error::Invariant(
            "a local file cannot be copied to a local file".into(),
        ));
    };
    let expected = segment.md5.as_ref().filter(|_| piece.whole);
    let (mut broken, mut mismatched) = (0u32, 0u32);
    // One handle for every attempt: the hole, the writes and the sync.
    let file = open(path).await?;
    loop {
        let dense = !punch_hole(&file, at, piece.len).await;
        match fetch_into(ctx, store, piece, segment, (&file, path), at, dense).await {
            Ok(md5) if expected.is_none_or(|w| *w == md5) => {
                sync(&file, path).await?;
                return Ok(ready(md5));
            }
            Ok(md5) => {
                mismatched += 1;
                ctx.done.fetch_sub(piece.len, Ordering::Relaxed);
                let err = Error::Integrity {
                    what: format!(
                        "piece {} ({}/{})",
                        piece.index, segment.container, segment.name
                    ),
                    found: md5,
                    expected: expected.cloned().unwrap_or_default(),
                };
                if mismatched > ctx.opts.integrity_retries {
                    return Err(err);
                }
                tracing::warn!(error = %err, "downloaded bytes do not match the source md5; downloading again");
                ctx.emit(Event::Retry {
                    what: format!("piece {}", piece.index),
                    attempt: mismatched,
                    delay_ms: 0,
                    reason: "md5 mismatch".into(),
                });
            }
            Err(e @ Error::Short { .. }) if broken < 5 => {
                broken += 1;
                let delay = Duration::from_millis(200 * u64::from(broken));
                ctx.emit(Event::Retry {
                    what: format!("piece {}", piece.index),
                    attempt: broken,
                    delay_ms: delay.as_millis() as u64,
                    reason: e.to_string(),
                });
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The destination file opened for writing (off the runtime's workers).
async fn open(path: &Path) -> Result<Arc<std::fs::File>, Error> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(p))
        .await
        .map_err(Error::Task)?
        .map(Arc::new)
        .map_err(|e| io("cannot open", path, e))
}

/// Deallocates `len` bytes at `at` (reads as zeros, size kept). False when the file system cannot.
async fn punch_hole(file: &Arc<std::fs::File>, at: u64, len: u64) -> bool {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&*file, flags, at, len).is_ok()
    })
    .await
    .unwrap_or(false)
}

async fn sync(file: &Arc<std::fs::File>, path: &Path) -> Result<(), Error> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || file.sync_data())
        .await
        .map_err(Error::Task)?
        .map_err(|e| io("cannot sync", path, e))
}

/// GETs the piece and writes it at `at`, hashing as it passes; zero blocks are skipped unless
/// `dense`. On failure the progress it counted is taken back.
async fn fetch_into(
    ctx: &Ctx,
    store: &crate::api::object_store::ObjectStore,
    piece: &Piece,
    segment: &SrcSegment,
    (file, path): (&Arc<std::fs::File>, &Path),
    at: u64,
    dense: bool,
) -> Result<String, Error> {
    let resp = store
        .get_range(&segment.container, &segment.name, piece.offset, piece.len)
        .await?;
    let mut md5 = Md5::new();
    let mut got = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    let mut written = 0u64;
    let mut stream = resp.bytes_stream();
    let result: Result<(), Error> = async {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err(Error::Short {
                    index: piece.index,
                    got,
                    want: piece.len,
                });
            };
            if got + chunk.len() as u64 > piece.len {
                return Err(Error::Integrity {
                    what: format!("piece {} (ranged GET)", piece.index),
                    found: format!("more than {} bytes", piece.len),
                    expected: format!("{} bytes", piece.len),
                });
            }
            md5.update(&chunk);
            batch.extend_from_slice(&chunk);
            got += chunk.len() as u64;
            ctx.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if batch.len() >= BATCH {
                batch = write_batch(file, path, at + written, batch, dense).await?;
                written = got;
                ctx.emit(Event::Progress {
                    done: ctx.done.load(Ordering::Relaxed),
                    total: ctx.total,
                });
            }
        }
        if got != piece.len {
            return Err(Error::Short {
                index: piece.index,
                got,
                want: piece.len,
            });
        }
        write_batch(file, path, at + written, batch, dense).await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        ctx.done.fetch_sub(got, Ordering::Relaxed);
        return Err(e);
    }
    Ok(hex::encode(md5.finalize()))
}

/// Writes `batch` at file offset `at`, leaving all-zero blocks (aligned to the file's 64 KiB
/// grid) unwritten unless `dense`; returns the emptied buffer for reuse.
async fn write_batch(
    file: &Arc<std::fs::File>,
    path: &Path,
    at: u64,
    mut batch: Vec<u8>,
    dense: bool,
) -> Result<Vec<u8>, Error> {
    let file = Arc::clone(file);
    let (result, mut batch) = tokio::task::spawn_blocking(move || {
        let r = write_sparse(&file, at, &batch, dense);
        (r, std::mem::take(&mut batch))
    })
    .await
    .map_err(Error::Task)?;
    result.map_err(|e| io("cannot write (disk full?)", path, e))?;
    batch.clear();
    Ok(batch)
}

/// The blocking write behind [`write_batch`].
fn write_sparse(file: &std::fs::File, at: u64, bytes: &[u8], dense: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let abs = at + pos as u64;
        let to_boundary = (BLOCK - abs % BLOCK) as usize;
        let end = (pos + to_boundary).min(bytes.len());
        let block = &bytes[pos..end];
        if dense || !is_zero(block) {
            file.write_all_at(block, abs)?;
        }
        pos = end;
    }
    Ok(())
}

fn is_zero(b: &[u8]) -> bool {
    // Sixteen bytes at a time: the check runs over every byte of the image.
    let words = b.chunks_exact(16);
    let tail = words.remainder();
    tail.iter().all(|&x| x == 0)
        && words
            .map(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])))
            .all(|w| w == 0)
}

/// The commit of a file: the whole-image digests, a plain source object's own md5, the file's size
/// on disk, and a sync. The recorded "manifest ETag" is the md5 of the piece md5s, the ETag the same
/// pieces would have as a large object.
pub(super) async fn commit(
    ctx: &Ctx,
    path: &Path,
    state: &mut TransferState,
    persist: &mut Persist<'_>,
) -> Result<Outcome, Error> {
    let (sha256, md5) = super::commit::whole_digests(state)?;
    let md5s = state
        .pieces
        .iter()
        .map(|p| {
            p.md5
                .clone()
                .ok_or_else(|| Error::Invariant(format!("piece {} has no md5 at commit", p.index)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let etag = etag_of_etags(md5s.iter().map(String::as_str));
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| io("cannot read", path, e))?
        .len();
    if len != state.source.len {
        return Err(Error::Integrity {
            what: format!("the size of {}", path.display()),
            found: len.to_string(),
            expected: state.source.len.to_string(),
        });
    }
    sync(&open(path).await?, path).await?;
    super::commit::record(ctx, state, persist, etag, sha256, md5).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_and_the_bytes_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let len = 4 * BLOCK as usize;
        file.set_len(len as u64).unwrap();
        // Block 0 zero, block 1 data, blocks 2-3 zero except the last byte.
        let mut bytes = vec![0u8; len];
        bytes[BLOCK as usize + 7] = 1;
        bytes[len - 1] = 9;
        write_sparse(&file, 0, &bytes, false).unwrap();
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= 2 * BLOCK,
            "two of four blocks hold data; {allocated} bytes allocated"
        );
    }

    #[test]
    fn a_rewritten_range_keeps_no_byte_of_the_earlier_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(2 * BLOCK).unwrap();
        // An earlier attempt wrote a flipped byte where the true block is all zero.
        let mut first = vec![0u8; 2 * BLOCK as usize];
        first[42] = 0xff;
        write_sparse(&file, 0, &first, false).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = Arc::new(std::fs::OpenOptions::new().write(true).open(&path).unwrap());
        let punched = rt.block_on(punch_hole(&handle, 0, 2 * BLOCK));
        let truth = vec![0u8; 2 * BLOCK as usize];
        write_sparse(&file, 0, &truth, !punched).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), truth);
    }

    #[test]
    fn unaligned_batches_split_on_the_file_grid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(3 * BLOCK).unwrap();
        let bytes: Vec<u8> = (0..BLOCK as usize + 100).map(|i| (i % 251) as u8).collect();
        write_sparse(&file, 1000, &bytes, false).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[1000..1000 + bytes.len()], &bytes[..]);
        assert!(back[..1000].iter().all(|&b| b == 0));
    }
}
