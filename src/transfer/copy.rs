//! The pipeline: bounded parallel piece tasks (download → spill → verify → upload), an in-order
//! hasher that consumes their spill files, and the commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use md5::{Digest, Md5};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::digest::Digests;
use super::source::{SrcSegment, etag_of_etags};
use super::{Error, SegmentStart, TransferState};
use crate::api::object_store::ObjectStore;

/// A place in Cloud Files.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub store: ObjectStore,
    pub container: String,
    pub name: String,
}

/// Where the source bytes are read from.
#[derive(Debug, Clone)]
pub enum SourceAccess {
    /// The source segments live in this account.
    Store(ObjectStore),
    /// A local file, read directly with no spill.
    File(PathBuf),
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pieces in flight at once.
    pub concurrency: usize,
    /// Where spill files go.
    pub work_dir: PathBuf,
    /// Re-downloads of a piece whose bytes fail their check before giving up.
    pub integrity_retries: u32,
}

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        total: u64,
        pieces: usize,
        already_done: u64,
        segment_size: u64,
    },
    Progress {
        done: u64,
        total: u64,
    },
    PieceDone {
        index: usize,
        bytes: u64,
        uploaded: bool,
    },
    Retry {
        what: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    Committed {
        etag: String,
        sha256: String,
        md5: String,
    },
}

pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// The verified result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub bytes: u64,
    pub segments: usize,
    pub manifest_etag: String,
    pub sha256: String,
    pub md5: String,
}

/// A piece whose bytes are ready for the in-order hasher.
struct Ready {
    index: usize,
    /// Spill file, or the local source file.
    path: PathBuf,
    offset: u64,
    spill: bool,
    md5: String,
    uploaded: Option<String>,
}

struct Ctx {
    source: SourceAccess,
    dest: Endpoint,
    opts: Options,
    events: Events,
    done: AtomicU64,
    total: u64,
}

/// Runs (or resumes) the transfer described by `state`, calling `persist` after every change.
pub async fn run(
    source: SourceAccess,
    dest: Endpoint,
    state: &mut TransferState,
    opts: Options,
    events: Events,
    persist: &mut (dyn FnMut(&TransferState) -> Result<(), String> + Send),
) -> Result<Outcome, Error> {
    if let (Some(etag), Some(sha256), Some(md5)) = (&state.manifest_etag, &state.sha256, &state.md5)
    {
        return Ok(Outcome {
            bytes: state.source.len,
            segments: state.pieces.len(),
            manifest_etag: etag.clone(),
            sha256: sha256.clone(),
            md5: md5.clone(),
        });
    }
    tokio::fs::create_dir_all(&opts.work_dir)
        .await
        .map_err(|source| Error::Io {
            what: "cannot create the work directory",
            path: opts.work_dir.display().to_string(),
            source,
        })?;
    confirm_uploads(&dest, state, opts.concurrency).await?;
    persist(state).map_err(Error::Persist)?;
    let hashed_bytes: u64 = state.pieces[..state.hashed].iter().map(|p| p.len).sum();
    let ctx = Arc::new(Ctx {
        source,
        dest,
        opts,
        events,
        done: AtomicU64::new(hashed_bytes),
        total: state.source.len,
    });
    (ctx.events)(Event::Started {
        total: ctx.total,
        pieces: state.pieces.len(),
        already_done: state.uploaded_bytes(),
        segment_size: state.segment_size,
    });
    pipeline(&ctx, state, persist).await?;
    commit(&ctx, state, persist).await
}

/// On resume, keeps only the uploads the destination confirms (same ETag and size).
async fn confirm_uploads(
    dest: &Endpoint,
    state: &mut TransferState,
    concurrency: usize,
) -> Result<(), Error> {
    let claimed: Vec<(usize, String, u64, String)> = state
        .pieces
        .iter()
        .filter_map(|p| {
            p.uploaded
                .clone()
                .map(|e| (p.index, p.dest.clone(), p.len, e))
        })
        .collect();
    let checks = futures::stream::iter(claimed)
        .map(|(i, name, len, etag)| async move {
            let meta = dest.store.head(&dest.container, &name).await?;
            Ok::<_, Error>((i, meta.is_some_and(|m| m.len == len && m.etag == etag)))
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for check in checks {
        let (i, ok) = check?;
        if !ok {
            tracing::info!(
                piece = i,
                "an upload recorded before the restart is not in the destination; sending it again"
            );
            state.pieces[i].uploaded = None;
        }
    }
    Ok(())
}

async fn pipeline(
    ctx: &Arc<Ctx>,
    state: &mut TransferState,
    persist: &mut (dyn FnMut(&TransferState) -> Result<(), String> + Send),
) -> Result<(), Error> {
    let n = state.pieces.len();
    let window = ctx.opts.concurrency.max(1) + 1;
    let mut digests = Digests::restore(&state.digest)?;
    let mut launched = vec![false; n];
    let mut ready: BTreeMap<usize, Ready> = BTreeMap::new();
    let mut set: JoinSet<Result<Ready, Error>> = JoinSet::new();
    let mut redo_budget = ctx.opts.integrity_retries;
    loop {
        let end = n.min(state.hashed + window);
        for (i, started) in launched.iter_mut().enumerate().take(end).skip(state.hashed) {
            if set.len() >= ctx.opts.concurrency.max(1) {
                break;
            }
            if !*started {
                *started = true;
                let piece = state.pieces[i].clone();
                let segment = state.source.segments[piece.segment].clone();
                set.spawn(piece_task(Arc::clone(ctx), piece, segment));
            }
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let r = match joined {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                set.abort_all();
                remove_spills(ready.values()).await;
                persist(state).map_err(Error::Persist)?;
                return Err(e);
            }
            Err(join) => {
                set.abort_all();
                return Err(Error::Persist(format!("a transfer task failed: {join}")));
            }
        };
        let p = &mut state.pieces[r.index];
        p.md5 = Some(r.md5.clone());
        if r.uploaded.is_some() {
            p.uploaded = r.uploaded.clone();
        }
        (ctx.events)(Event::PieceDone {
            index: r.index,
            bytes: p.len,
            uploaded: r.uploaded.is_some(),
        });
        persist(state).map_err(Error::Persist)?;
        ready.insert(r.index, r);
        while let Some(r) = ready.remove(&state.hashed) {
            match hash_in_order(state, &mut digests, r).await? {
                Ok(()) => persist(state).map_err(Error::Persist)?,
                Err(redo) => {
                    if redo_budget == 0 {
                        return Err(redo);
                    }
                    redo_budget -= 1;
                    tracing::warn!(error = %redo, "a split source segment failed its md5 check; transferring it again");
                    let Some(start) = state.segment_start.clone() else {
                        return Err(redo);
                    };
                    digests = Digests::restore(&start.digest)?;
                    let segment = state.pieces[start.piece].segment;
                    for p in state.pieces.iter_mut().filter(|p| p.segment == segment) {
                        p.uploaded = None;
                        p.md5 = None;
                        launched[p.index] = false;
                    }
                    state.hashed = start.piece;
                    state.digest = start.digest;
                    persist(state).map_err(Error::Persist)?;
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn remove_spills<'a>(ready: impl Iterator<Item = &'a Ready>) {
    for r in ready.filter(|r| r.spill) {
        let _ = tokio::fs::remove_file(&r.path).await;
    }
}

/// Feeds one piece, in order, to the whole-image hashers; checks split source segments when their
/// last piece passes. The outer error is fatal; the inner one asks for the segment to be redone.
async fn hash_in_order(
    state: &mut TransferState,
    digests: &mut Digests,
    r: Ready,
) -> Result<Result<(), Error>, Error> {
    let piece = state.pieces[r.index].clone();
    if piece.offset == 0 {
        state.segment_start = Some(SegmentStart {
            piece: piece.index,
            digest: digests.save(),
        });
    }
    let (path, offset, len) = (r.path.clone(), r.offset, piece.len);
    // Only a source segment split into several pieces needs its own md5 here; a whole one was
    // checked when it was downloaded.
    let split = !piece.whole;
    let d = digests.clone();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Digests> {
        // MD5 and SHA-256 are each sequential, but independent of each other: hash the piece with
        // both at once on two threads (two reads of a file that is in the page cache), which
        // halves the time the in-order hasher needs once the last downloads finish together.
        let (mut md5_part, mut sha_part) = d.split();
        std::thread::scope(|scope| {
            let sha = scope.spawn(|| for_each_chunk(&path, offset, len, |b| sha_part.update(b)));
            let md5 = for_each_chunk(&path, offset, len, |b| md5_part.update(b, split));
            sha.join()
                .map_err(|_| std::io::Error::other("hashing thread panicked"))??;
            md5
        })?;
        Ok(Digests::join(md5_part, sha_part))
    })
    .await
    .map_err(|e| Error::Persist(e.to_string()))?
    .map_err(|source| Error::Io {
        what: "cannot read back",
        path: r.path.display().to_string(),
        source,
    })?;
    *digests = read;
    if r.spill {
        let _ = tokio::fs::remove_file(&r.path).await;
    }
    let segment = &state.source.segments[piece.segment];
    let last_of_segment = piece.offset + piece.len == segment.bytes;
    if last_of_segment {
        let seg_md5 = digests.finish_segment();
        if let Some(want) = segment.md5.as_ref().filter(|_| !piece.whole)
            && *want != seg_md5
        {
            return Ok(Err(Error::Integrity {
                what: format!("source segment {}", segment.name),
                found: seg_md5,
                expected: want.clone(),
            }));
        }
    }
    state.hashed += 1;
    state.digest = digests.save();
    Ok(Ok(()))
}

/// Downloads (or reads) one piece, checks it, and uploads it unless the destination already has it.
///
/// When the piece is a whole source segment whose md5 the listing gave, the upload streams while
/// the download is still running, with `ETag: <source md5>`: the destination itself then refuses
/// any byte that differs from the source (422), and each piece keeps one connection busy in each
/// direction. Anything that goes wrong on that fast path falls back to download-then-upload from
/// the spill file.
async fn piece_task(
    ctx: Arc<Ctx>,
    piece: super::Piece,
    segment: SrcSegment,
) -> Result<Ready, Error> {
    if let (SourceAccess::Store(store), true, None, Some(want)) = (
        &ctx.source,
        piece.whole,
        &piece.uploaded,
        segment.md5.as_ref(),
    ) {
        match stream_through(&ctx, store, &piece, &segment, want).await {
            Ok(ready) => return Ok(ready),
            Err(e) => {
                tracing::info!(piece = piece.index, error = %e, "streamed copy failed; retrying through the spill file");
                (ctx.events)(Event::Retry {
                    what: format!("piece {}", piece.index),
                    attempt: 1,
                    delay_ms: 0,
                    reason: e.to_string(),
                });
            }
        }
    }
    let mut attempt = 0u32;
    let (path, offset, spill, md5) = loop {
        attempt += 1;
        let got = fetch(&ctx, &piece, &segment).await?;
        let expected = segment.md5.as_ref().filter(|_| piece.whole);
        match expected {
            Some(want) if *want != got.3 => {
                if got.2 {
                    let _ = tokio::fs::remove_file(&got.0).await;
                }
                let err = Error::Integrity {
                    what: format!(
                        "piece {} ({}/{})",
                        piece.index, segment.container, segment.name
                    ),
                    found: got.3,
                    expected: want.clone(),
                };
                if attempt > ctx.opts.integrity_retries {
                    return Err(err);
                }
                tracing::warn!(error = %err, attempt, "downloaded bytes do not match the source md5; downloading again");
                (ctx.events)(Event::Retry {
                    what: format!("piece {}", piece.index),
                    attempt,
                    delay_ms: 0,
                    reason: "md5 mismatch".into(),
                });
                ctx.done.fetch_sub(piece.len, Ordering::Relaxed);
            }
            _ => break got,
        }
    };
    let uploaded = if piece.uploaded.is_some() {
        piece.uploaded.clone()
    } else {
        let etag = ctx
            .dest
            .store
            .put_file_region(
                &ctx.dest.container,
                &piece.dest,
                &path,
                offset,
                piece.len,
                &md5,
            )
            .await;
        let etag = match etag {
            Ok(e) => e,
            Err(e) => {
                if spill {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                return Err(e.into());
            }
        };
        if etag != md5 {
            return Err(Error::Integrity {
                what: format!("upload of {}", piece.dest),
                found: etag,
                expected: md5,
            });
        }
        Some(etag)
    };
    Ok(Ready {
        index: piece.index,
        path,
        offset,
        spill,
        md5,
        uploaded,
    })
}

/// Where a streamed download also sends its bytes: the upload's body, gathered into 256 KiB pieces
/// (network reads arrive in small chunks; one copy saves most of the per-chunk channel and socket
/// work).
struct Tee {
    tx: futures::channel::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    pending: bytes::BytesMut,
    alive: bool,
}

impl Tee {
    async fn push(&mut self, chunk: &[u8]) {
        use futures::SinkExt;
        if !self.alive {
            return;
        }
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= 256 * 1024
            && self
                .tx
                .send(Ok(self.pending.split().freeze()))
                .await
                .is_err()
        {
            // The upload gave up; the download goes on into the spill file, uploaded from after.
            self.alive = false;
        }
    }

    /// Sends what is left and ends the body.
    async fn finish(mut self) {
        use futures::SinkExt;
        if self.alive && !self.pending.is_empty() {
            let _ = self.tx.send(Ok(self.pending.split().freeze())).await;
        }
    }

    /// Ends the body with an error: the client then drops the request, and Swift discards it.
    async fn abort(mut self) {
        use futures::SinkExt;
        let _ = self
            .tx
            .send(Err(std::io::Error::other("download failed")))
            .await;
    }
}

/// The fast path: GET the segment and PUT it at the same time, teeing the bytes into the spill file
/// (for the in-order hasher and any retry) and through md5.
async fn stream_through(
    ctx: &Ctx,
    store: &ObjectStore,
    piece: &super::Piece,
    segment: &SrcSegment,
    want: &str,
) -> Result<Ready, Error> {
    let spill = ctx
        .opts
        .work_dir
        .join(format!("piece-{:06}.spill", piece.index));
    // A small bounded channel: memory per piece is a few chunks, and a slow upload slows the download.
    let (tx, rx) = futures::channel::mpsc::channel(8);
    let dest = ctx.dest.clone();
    let (name, len, md5_header) = (piece.dest.clone(), piece.len, want.to_string());
    let upload = tokio::spawn(async move {
        dest.store
            .put_stream(
                &dest.container,
                &name,
                reqwest::Body::wrap_stream(rx),
                len,
                &md5_header,
            )
            .await
    });
    let mut tee = Tee {
        tx,
        pending: bytes::BytesMut::with_capacity(512 * 1024),
        alive: true,
    };
    // No local md5 on this path: the destination computes it over exactly the bytes it received
    // and refuses them (422) unless it equals the source segment's md5, which was sent as ETag, and
    // its answer is compared again. The spill file holds the same bytes (same chunks, same order)
    // for the in-order hasher. Hashing locally only happens when the destination could not vouch.
    if let Err(e) = download(ctx, store, piece, segment, &spill, Some(&mut tee)).await {
        tee.abort().await;
        upload.abort();
        let _ = tokio::fs::remove_file(&spill).await;
        return Err(e);
    }
    tee.finish().await;
    let uploaded = upload.await.map_err(|e| Error::Persist(e.to_string()))?;
    let etag = match uploaded {
        Ok(etag) if etag == want => etag,
        // Refused (422: the bytes differ from the source's), failed, or answered oddly: check the
        // spill file ourselves, then upload from it or fetch the piece again.
        _ => {
            let md5 = hash_file_region(&spill, 0, piece.len).await?;
            if md5 != want {
                ctx.done.fetch_sub(piece.len, Ordering::Relaxed);
                let _ = tokio::fs::remove_file(&spill).await;
                return Err(Error::Integrity {
                    what: format!("piece {} (streamed)", piece.index),
                    found: md5,
                    expected: want.to_string(),
                });
            }
            ctx.dest
                .store
                .put_file_region(&ctx.dest.container, &piece.dest, &spill, 0, piece.len, &md5)
                .await?
        }
    };
    if etag != want {
        return Err(Error::Integrity {
            what: format!("upload of {}", piece.dest),
            found: etag,
            expected: want.to_string(),
        });
    }
    let md5 = want.to_string();
    Ok(Ready {
        index: piece.index,
        path: spill,
        offset: 0,
        spill: true,
        md5,
        uploaded: Some(etag),
    })
}

/// Gets a piece's bytes: from the local file, or streamed into a spill file while hashed.
/// Returns (path, offset in path, is spill, md5).
async fn fetch(
    ctx: &Ctx,
    piece: &super::Piece,
    segment: &SrcSegment,
) -> Result<(PathBuf, u64, bool, String), Error> {
    match &ctx.source {
        SourceAccess::File(path) => {
            let md5 = hash_file_region(path, piece.offset, piece.len).await?;
            ctx.done.fetch_add(piece.len, Ordering::Relaxed);
            (ctx.events)(Event::Progress {
                done: ctx.done.load(Ordering::Relaxed),
                total: ctx.total,
            });
            Ok((path.clone(), piece.offset, false, md5))
        }
        SourceAccess::Store(store) => {
            let spill = ctx
                .opts
                .work_dir
                .join(format!("piece-{:06}.spill", piece.index));
            let mut tries = 0u32;
            loop {
                tries += 1;
                match download(ctx, store, piece, segment, &spill, None).await {
                    Ok(md5) => return Ok((spill, 0, true, md5)),
                    Err(e) if tries <= 5 && matches!(e, Error::Short { .. } | Error::Io { .. }) => {
                        let delay = Duration::from_millis(200 * u64::from(tries));
                        tracing::info!(piece = piece.index, error = %e, tries, "download broke off; starting the piece again");
                        (ctx.events)(Event::Retry {
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

/// GETs a piece into its spill file, hashing it as it passes, or, when `tee` is given, sending the
/// same bytes on to a streamed upload whose destination verifies them instead. Returns the md5
/// (meaningless with a tee). On failure the progress it counted is taken back.
async fn download(
    ctx: &Ctx,
    store: &ObjectStore,
    piece: &super::Piece,
    segment: &SrcSegment,
    spill: &Path,
    mut tee: Option<&mut Tee>,
) -> Result<String, Error> {
    let io = |what, source| Error::Io {
        what,
        path: spill.display().to_string(),
        source,
    };
    let short = |got| Error::Short {
        index: piece.index,
        got,
        want: piece.len,
    };
    let resp = store
        .get_range(&segment.container, &segment.name, piece.offset, piece.len)
        .await?;
    // Buffered: tokio's File hands every write to the blocking pool, so small network chunks are
    // gathered into 1 MiB writes first.
    let mut out = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::create(spill)
            .await
            .map_err(|e| io("cannot create the spill file", e))?,
    );
    let mut md5 = Md5::new();
    let mut got = 0u64;
    let mut stream = resp.bytes_stream();
    let mut since_event = 0u64;
    let failed = loop {
        let Some(chunk) = stream.next().await else {
            break None;
        };
        let Ok(chunk) = chunk else {
            break Some(short(got));
        };
        // A server sending more than the range asked for is not trusted with the disk either.
        if got + chunk.len() as u64 > piece.len {
            break Some(Error::Integrity {
                what: format!("piece {} (ranged GET)", piece.index),
                found: format!("more than {} bytes", piece.len),
                expected: format!("{} bytes", piece.len),
            });
        }
        if tee.is_none() {
            md5.update(&chunk);
        }
        if let Err(e) = out.write_all(&chunk).await {
            break Some(io("cannot write the spill file (disk full?)", e));
        }
        if let Some(t) = tee.as_deref_mut() {
            t.push(&chunk).await;
        }
        got += chunk.len() as u64;
        since_event += chunk.len() as u64;
        ctx.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if since_event >= 4 << 20 {
            since_event = 0;
            (ctx.events)(Event::Progress {
                done: ctx.done.load(Ordering::Relaxed),
                total: ctx.total,
            });
        }
    };
    let failed = match failed {
        Some(e) => Some(e),
        None if got != piece.len => Some(short(got)),
        None => out
            .flush()
            .await
            .err()
            .map(|e| io("cannot write the spill file (disk full?)", e)),
    };
    if let Some(e) = failed {
        ctx.done.fetch_sub(got, Ordering::Relaxed);
        return Err(e);
    }
    (ctx.events)(Event::Progress {
        done: ctx.done.load(Ordering::Relaxed),
        total: ctx.total,
    });
    Ok(hex::encode(md5.finalize()))
}

/// Reads `len` bytes of `path` from `offset` in 1 MiB chunks, handing each to `f`. Blocking.
fn for_each_chunk(
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

async fn hash_file_region(path: &Path, offset: u64, len: u64) -> Result<String, Error> {
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
    .map_err(|e| Error::Persist(e.to_string()))?
    .map_err(|source| Error::Io {
        what: "cannot read",
        path: path.display().to_string(),
        source,
    })
}

/// PUTs the SLO manifest and verifies it: the returned ETag must be the md5 of the segment md5s,
/// and a HEAD must show the full size. A plain source object's own md5 must equal the whole-image md5.
async fn commit(
    ctx: &Ctx,
    state: &mut TransferState,
    persist: &mut (dyn FnMut(&TransferState) -> Result<(), String> + Send),
) -> Result<Outcome, Error> {
    let (sha256, md5) = Digests::restore(&state.digest)?.finish();
    if state.source.kind == super::source::Kind::Object
        && let Some(etag) = &state.source.etag
        && *etag != md5
    {
        return Err(Error::Integrity {
            what: "the whole object".into(),
            found: md5,
            expected: etag.clone(),
        });
    }
    let mut md5s = Vec::with_capacity(state.pieces.len());
    let mut manifest = Vec::with_capacity(state.pieces.len());
    for p in &state.pieces {
        let m = p
            .md5
            .clone()
            .ok_or_else(|| Error::Persist(format!("piece {} has no md5 at commit", p.index)))?;
        manifest.push(serde_json::json!({
            "path": format!("/{}/{}", ctx.dest.container, p.dest), "etag": m, "size_bytes": p.len,
        }));
        md5s.push(m);
    }
    let expected = etag_of_etags(md5s.iter().map(String::as_str));
    let etag = ctx
        .dest
        .store
        .put_slo(
            &ctx.dest.container,
            &ctx.dest.name,
            &serde_json::Value::Array(manifest),
        )
        .await?;
    if etag != expected {
        return Err(Error::Integrity {
            what: "the SLO manifest".into(),
            found: etag,
            expected,
        });
    }
    let meta = ctx
        .dest
        .store
        .head(&ctx.dest.container, &ctx.dest.name)
        .await?;
    let len = meta.as_ref().map_or(0, |m| m.len);
    if len != state.source.len {
        return Err(Error::Integrity {
            what: format!("the size of {}/{}", ctx.dest.container, ctx.dest.name),
            found: len.to_string(),
            expected: state.source.len.to_string(),
        });
    }
    state.manifest_etag = Some(etag.clone());
    state.sha256 = Some(sha256.clone());
    state.md5 = Some(md5.clone());
    persist(state).map_err(Error::Persist)?;
    (ctx.events)(Event::Committed {
        etag: etag.clone(),
        sha256: sha256.clone(),
        md5: md5.clone(),
    });
    Ok(Outcome {
        bytes: state.source.len,
        segments: state.pieces.len(),
        manifest_etag: etag,
        sha256,
        md5,
    })
}
