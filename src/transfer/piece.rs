//! One piece: download (or read) it, check it, upload it unless the destination already has it.
//! The fast path streams a piece straight through to the destination while it downloads (see
//! [`super::tee`]); a piece fetched again, or one whose streamed copy failed, goes through its
//! spill file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::context::{Ctx, Ready};
use super::read_back::hash_file_region;
use super::source::SrcSegment;
use super::tee::Tee;
use super::{Destination, Endpoint, Error, Event, SourceAccess};
use crate::api::object_store::ObjectStore;

/// Downloads (or reads) one piece, checks it, and uploads it unless the destination already has it.
///
/// A piece not uploaded yet is uploaded while its download is still running, so each piece keeps
/// one connection busy in each direction. When it is a whole source segment whose md5 the listing
/// gave, the PUT carries `ETag: <source md5>` and the destination itself refuses any byte that
/// differs from the source (422); a part of a segment is hashed on the way and the answered ETag
/// compared with that md5 (its segment's md5 is checked by the in-order hasher). Anything that
/// goes wrong on that fast path falls back to download-then-upload from the spill file.
pub(super) async fn piece_task(
    ctx: Arc<Ctx>,
    piece: super::Piece,
    segment: SrcSegment,
    permits: super::context::Permits,
) -> Result<Ready, Error> {
    let mut ready = piece_bytes(ctx, piece, segment).await?;
    // The connection is free for the next piece now; the spill place is kept until the hasher
    // has read the bytes.
    drop(permits.connection);
    ready.spill_permit = Some(permits.spill);
    Ok(ready)
}

async fn piece_bytes(
    ctx: Arc<Ctx>,
    piece: super::Piece,
    segment: SrcSegment,
) -> Result<Ready, Error> {
    let dest = match &ctx.dest {
        Destination::Store(e) => e,
        Destination::File(path) => {
            let at = ctx.starts[piece.index];
            return super::file_dest::write_piece(&ctx, path, at, &piece, &segment).await;
        }
    };
    if let (SourceAccess::Store(store), None) = (&ctx.source, &piece.uploaded) {
        // A whole segment is vouched for by the listing's md5; a part of one by the md5 computed
        // on the way (its segment is checked by the in-order hasher).
        let want = segment.md5.as_deref().filter(|_| piece.whole);
        match stream_through(&ctx, dest, store, &piece, &segment, want).await {
            Ok(ready) => return Ok(ready),
            Err(e) => {
                tracing::info!(piece = piece.index, error = %e, "streamed copy failed; retrying through the spill file");
                ctx.emit(Event::Retry {
                    what: format!("piece {}", piece.index),
                    attempt: 1,
                    delay_ms: 0,
                    reason: e.to_string(),
                });
            }
        }
    }
    let got = fetch_checked(&ctx, &piece, &segment).await?;
    // An upload recorded earlier stands only for the very bytes fetched now, which the in-order
    // hasher is about to check: a piece fetched again (on resume, or when its segment is redone)
    // can differ from what was sent before, and then it is sent again.
    let uploaded = match &piece.uploaded {
        Some(etag) if *etag == got.md5 => Some(etag.clone()),
        _ => Some(upload_from(dest, &piece, &got).await?),
    };
    Ok(Ready {
        index: piece.index,
        path: got.path,
        offset: got.offset,
        spill: got.spill,
        md5: got.md5,
        uploaded,
        spill_permit: None,
    })
}

/// A piece's bytes on local disk.
struct PieceBytes {
    /// The spill file, or the local source file.
    path: PathBuf,
    /// Where the piece starts in `path`.
    offset: u64,
    /// Whether `path` is a spill file (removed once hashed) rather than the source.
    spill: bool,
    md5: String,
}

/// Fetches a piece and, when the listing gave its md5, fetches it again while they differ.
async fn fetch_checked(
    ctx: &Ctx,
    piece: &super::Piece,
    segment: &SrcSegment,
) -> Result<PieceBytes, Error> {
    let expected = segment.md5.as_ref().filter(|_| piece.whole);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let got = fetch(ctx, piece, segment).await?;
        let Some(want) = expected.filter(|w| **w != got.md5) else {
            return Ok(got);
        };
        if got.spill {
            let _ = tokio::fs::remove_file(&got.path).await;
        }
        let err = Error::Integrity {
            what: format!(
                "piece {} ({}/{})",
                piece.index, segment.container, segment.name
            ),
            found: got.md5,
            expected: want.clone(),
        };
        if attempt > ctx.opts.integrity_retries {
            return Err(err);
        }
        tracing::warn!(error = %err, attempt, "downloaded bytes do not match the source md5; downloading again");
        ctx.emit(Event::Retry {
            what: format!("piece {}", piece.index),
            attempt,
            delay_ms: 0,
            reason: "md5 mismatch".into(),
        });
        ctx.done.fetch_sub(piece.len, Ordering::Relaxed);
    }
}

/// Uploads a fetched piece from disk with its md5 as ETag and checks the answered ETag. The spill
/// file is removed if the upload fails for good.
async fn upload_from(
    dest: &Endpoint,
    piece: &super::Piece,
    got: &PieceBytes,
) -> Result<String, Error> {
    let etag = dest
        .store
        .put_file_region(
            &dest.container,
            &piece.dest,
            &got.path,
            got.offset,
            piece.len,
            &got.md5,
        )
        .await;
    let etag = match etag {
        Ok(e) => e,
        Err(e) => {
            if got.spill {
                let _ = tokio::fs::remove_file(&got.path).await;
            }
            return Err(e.into());
        }
    };
    if etag != got.md5 {
        return Err(Error::Integrity {
            what: format!("upload of {}", piece.dest),
            found: etag,
            expected: got.md5.clone(),
        });
    }
    Ok(etag)
}

/// The fast path: GET the piece and PUT it at the same time, teeing the bytes into the spill file
/// (for the in-order hasher and any retry). `want` is the source segment's md5 when the piece is
/// that whole segment; otherwise the piece's md5 is computed on the way.
async fn stream_through(
    ctx: &Ctx,
    dest: &Endpoint,
    store: &ObjectStore,
    piece: &super::Piece,
    segment: &SrcSegment,
    want: Option<&str>,
) -> Result<Ready, Error> {
    let spill = ctx
        .opts
        .work_dir
        .join(format!("piece-{:06}.spill", piece.index));
    let (mut tee, upload) = spawn_upload(dest, piece, want);
    // With `want`, no local md5: the destination computes it over exactly the bytes it received
    // and refuses them (422) unless it equals the source segment's md5, which was sent as ETag, and
    // its answer is compared again. The spill file holds the same bytes (same chunks, same order)
    // for the in-order hasher. Hashing locally only happens when the destination could not vouch.
    let local = match download(
        ctx,
        store,
        piece,
        segment,
        &spill,
        Some(&mut tee),
        want.is_none(),
    )
    .await
    {
        Ok(md5) => md5,
        Err(e) => {
            tee.abort().await;
            upload.abort();
            let _ = tokio::fs::remove_file(&spill).await;
            return Err(e);
        }
    };
    tee.finish().await;
    let uploaded = upload.await.map_err(Error::Task)?;
    let md5 = want.map_or(local, str::to_string);
    let etag = match uploaded {
        Ok(etag) if etag == md5 => etag,
        // Refused (422: the bytes differ from the source's), failed, or answered oddly: with the
        // source's md5, check the spill file ourselves, then upload from it or fetch the piece
        // again; with our own md5 of the spill file, upload from it.
        _ if want.is_some() => vouch_locally(ctx, dest, piece, &spill, &md5).await?,
        _ => {
            let got = PieceBytes {
                path: spill.clone(),
                offset: 0,
                spill: true,
                md5: md5.clone(),
            };
            upload_from(dest, piece, &got).await?
        }
    };
    if etag != md5 {
        return Err(Error::Integrity {
            what: format!("upload of {}", piece.dest),
            found: etag,
            expected: md5,
        });
    }
    Ok(Ready {
        index: piece.index,
        path: spill,
        offset: 0,
        spill: true,
        md5,
        uploaded: Some(etag),
        spill_permit: None,
    })
}

/// Starts the streamed PUT of `piece` (with `ETag: want` when given) and returns the tee that feeds
/// its body. A small bounded channel: memory per piece is a few chunks, and a slow upload slows
/// the download.
fn spawn_upload(
    dest: &Endpoint,
    piece: &super::Piece,
    want: Option<&str>,
) -> (
    Tee,
    tokio::task::JoinHandle<Result<String, crate::api::Error>>,
) {
    let (tx, rx) = futures::channel::mpsc::channel(8);
    let dest = dest.clone();
    let (name, len, md5_header) = (piece.dest.clone(), piece.len, want.map(str::to_string));
    let upload = tokio::spawn(async move {
        dest.store
            .put_stream(
                &dest.container,
                &name,
                reqwest::Body::wrap_stream(rx),
                len,
                md5_header.as_deref(),
            )
            .await
    });
    let tee = Tee {
        tx,
        pending: bytes::BytesMut::with_capacity(512 * 1024),
        alive: true,
    };
    (tee, upload)
}

/// When the destination could not vouch for a streamed piece: hash the spill file here and, if it
/// holds the source's bytes, upload from it; otherwise drop it so the piece is fetched again.
async fn vouch_locally(
    ctx: &Ctx,
    dest: &Endpoint,
    piece: &super::Piece,
    spill: &Path,
    want: &str,
) -> Result<String, Error> {
    let md5 = hash_file_region(spill, 0, piece.len).await?;
    if md5 != want {
        ctx.done.fetch_sub(piece.len, Ordering::Relaxed);
        let _ = tokio::fs::remove_file(spill).await;
        return Err(Error::Integrity {
            what: format!("piece {} (streamed)", piece.index),
            found: md5,
            expected: want.to_string(),
        });
    }
    Ok(dest
        .store
        .put_file_region(&dest.container, &piece.dest, spill, 0, piece.len, &md5)
        .await?)
}

/// Gets a piece's bytes: from the local file, or streamed into a spill file while hashed.
async fn fetch(ctx: &Ctx, piece: &super::Piece, segment: &SrcSegment) -> Result<PieceBytes, Error> {
    match &ctx.source {
        SourceAccess::File(path) => {
            let md5 = hash_file_region(path, piece.offset, piece.len).await?;
            ctx.done.fetch_add(piece.len, Ordering::Relaxed);
            ctx.emit(Event::Progress {
                done: ctx.done.load(Ordering::Relaxed),
                total: ctx.total,
            });
            Ok(PieceBytes {
                path: path.clone(),
                offset: piece.offset,
                spill: false,
                md5,
            })
        }
        SourceAccess::Store(store) => {
            let spill = ctx
                .opts
                .work_dir
                .join(format!("piece-{:06}.spill", piece.index));
            let mut tries = 0u32;
            loop {
                tries += 1;
                match download(ctx, store, piece, segment, &spill, None, true).await {
                    Ok(md5) => {
                        return Ok(PieceBytes {
                            path: spill,
                            offset: 0,
                            spill: true,
                            md5,
                        });
                    }
                    Err(e) if tries <= 5 && matches!(e, Error::Short { .. } | Error::Io { .. }) => {
                        let delay = Duration::from_millis(200 * u64::from(tries));
                        tracing::info!(piece = piece.index, error = %e, tries, "download broke off; starting the piece again");
                        ctx.emit(Event::Retry {
                            what: format!("piece {}", piece.index),
                            attempt: tries,
                            delay_ms: delay.as_millis() as u64,
                            reason: e.to_string(),
                        });
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// GETs a piece into its spill file and, when `tee` is given, on to a streamed upload of the same
/// bytes. Returns their md5 when `hash` (otherwise meaningless: a destination given the source's
/// md5 verifies the bytes itself). On failure the progress it counted is taken back.
async fn download(
    ctx: &Ctx,
    store: &ObjectStore,
    piece: &super::Piece,
    segment: &SrcSegment,
    spill: &Path,
    tee: Option<&mut Tee>,
    hash: bool,
) -> Result<String, Error> {
    let resp = store
        .get_range(&segment.container, &segment.name, piece.offset, piece.len)
        .await?;
    // Buffered: tokio's File hands every write to the blocking pool, so small network chunks are
    // gathered into 1 MiB writes first.
    let file = crate::fsutil::private_file(spill)
        .await
        .map_err(|e| spill_error(spill, "cannot create the spill file", e))?;
    let mut out = SpillWriter {
        path: spill,
        file: tokio::io::BufWriter::with_capacity(1 << 20, file),
    };
    let mut md5 = Md5::new();
    let mut got = 0u64;
    let md5_ref = if hash { Some(&mut md5) } else { None };
    let result = copy_chunks(ctx, resp, piece, &mut out, md5_ref, tee, &mut got).await;
    let result = match result {
        Ok(()) if got != piece.len => Err(Error::Short {
            index: piece.index,
            got,
            want: piece.len,
        }),
        Ok(()) => out
            .file
            .flush()
            .await
            .map_err(|e| spill_error(spill, "cannot write the spill file (disk full?)", e)),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        ctx.done.fetch_sub(got, Ordering::Relaxed);
        return Err(e);
    }
    ctx.emit(Event::Progress {
        done: ctx.done.load(Ordering::Relaxed),
        total: ctx.total,
    });
    Ok(hex::encode(md5.finalize()))
}

/// A spill file being written, with its path for error messages.
struct SpillWriter<'a> {
    path: &'a Path,
    file: tokio::io::BufWriter<tokio::fs::File>,
}

fn spill_error(spill: &Path, what: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: spill.display().to_string(),
        source,
    }
}

/// Writes the answer's chunks to `out` (and through md5, and on to the tee), counting progress in
/// `got`. Stops at the first failure: a broken stream, more bytes than asked for, a failed write.
async fn copy_chunks(
    ctx: &Ctx,
    resp: reqwest::Response,
    piece: &super::Piece,
    out: &mut SpillWriter<'_>,
    mut md5: Option<&mut Md5>,
    mut tee: Option<&mut Tee>,
    got: &mut u64,
) -> Result<(), Error> {
    let mut stream = resp.bytes_stream();
    let mut since_event = 0u64;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(Error::Short {
                index: piece.index,
                got: *got,
                want: piece.len,
            });
        };
        // A server sending more than the range asked for is not trusted with the disk either.
        if *got + chunk.len() as u64 > piece.len {
            return Err(Error::Integrity {
                what: format!("piece {} (ranged GET)", piece.index),
                found: format!("more than {} bytes", piece.len),
                expected: format!("{} bytes", piece.len),
            });
        }
        if let Some(md5) = md5.as_deref_mut() {
            md5.update(&chunk);
        }
        out.file
            .write_all(&chunk)
            .await
            .map_err(|e| spill_error(out.path, "cannot write the spill file (disk full?)", e))?;
        if let Some(t) = tee.as_deref_mut() {
            t.push(&chunk).await;
        }
        *got += chunk.len() as u64;
        since_event += chunk.len() as u64;
        ctx.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if since_event >= 4 << 20 {
            since_event = 0;
            ctx.emit(Event::Progress {
                done: ctx.done.load(Ordering::Relaxed),
                total: ctx.total,
            });
        }
    }
    Ok(())
}
