//! The pipeline: bounded parallel piece tasks (see [`super::piece`]), the in-order hasher that
//! consumes their spill files, and the persisted per-piece table. Invariant: pieces are launched
//! only within `hashed + concurrency + 1` and each holds a spill place until it is hashed, so
//! spill files never exceed `(concurrency + 1) × segment size` (`(concurrency + parallel) ×
//! segment size` across a fleet sharing one [`Budget`]). A piece holds a connection only while it
//! uses one, and the hasher is a job of its own beside the piece tasks, so the connections stay
//! busy while a backlog of finished pieces is hashed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::context::{Ctx, Permits, Ready};
use super::digest::Digests;
use super::read_back::for_each_chunk;
use super::{
    Budget, Destination, Endpoint, Error, Event, Events, Options, Outcome, Persist, SegmentStart,
    SourceAccess, TransferState,
};

/// Saves a snapshot of `state` through the caller's `persist`.
async fn save(persist: &mut Persist<'_>, state: &TransferState) -> Result<(), Error> {
    persist(state.clone()).await.map_err(Error::Persist)
}

/// Runs (or resumes) the transfer described by `state`, calling `persist` after every change.
pub async fn run(
    source: SourceAccess,
    dest: impl Into<Destination>,
    state: &mut TransferState,
    opts: Options,
    events: Events,
    mut persist: Persist<'_>,
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
    let ctx = prepare(source, dest.into(), state, opts, events, &mut persist, true).await?;
    ctx.emit(Event::Started {
        total: ctx.total,
        pieces: state.pieces.len(),
        already_done: state.uploaded_bytes(),
        segment_size: state.segment_size,
    });
    pipeline(&ctx, state, &mut persist).await?;
    match &ctx.dest {
        Destination::Store(e) => super::commit::commit(&ctx, e, state, &mut persist).await,
        Destination::File(path) => super::file_dest::commit(&ctx, path, state, &mut persist).await,
    }
}

/// Copies and hashes every piece of `state` not hashed yet, without committing: for a source
/// whose segments are still being written (an export in progress), called again as more are
/// listed. `confirm` checks recorded uploads against the destination first (once per run).
pub async fn copy_pieces(
    source: SourceAccess,
    dest: impl Into<Destination>,
    state: &mut TransferState,
    opts: Options,
    events: Events,
    mut persist: Persist<'_>,
    confirm: bool,
) -> Result<(), Error> {
    let ctx = prepare(
        source,
        dest.into(),
        state,
        opts,
        events,
        &mut persist,
        confirm,
    )
    .await?;
    pipeline(&ctx, state, &mut persist).await
}

/// The work directory, confirmed uploads (when `confirm`), a saved state, and the shared context.
async fn prepare(
    source: SourceAccess,
    dest: Destination,
    state: &mut TransferState,
    opts: Options,
    events: Events,
    persist: &mut Persist<'_>,
    confirm: bool,
) -> Result<Arc<Ctx>, Error> {
    let dir = opts.work_dir.clone();
    tokio::task::spawn_blocking(move || crate::fsutil::private_dir(&dir))
        .await
        .map_err(Error::Task)?
        .map_err(|source| Error::Io {
            what: "cannot create the work directory",
            path: opts.work_dir.display().to_string(),
            source,
        })?;
    if confirm {
        match &dest {
            Destination::Store(e) => confirm_uploads(e, state, opts.concurrency).await?,
            Destination::File(path) => super::file_dest::prepare(path, state).await?,
        }
        save(persist, state).await?;
    }
    let hashed_bytes: u64 = state.pieces[..state.hashed].iter().map(|p| p.len).sum();
    Ok(Arc::new(Ctx {
        source,
        starts: super::file_dest::piece_starts(state),
        dest,
        opts,
        events,
        done: AtomicU64::new(hashed_bytes),
        total: state.source.len,
    }))
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

/// What the piece tasks share with the loop that launches and collects them.
struct Flight {
    launched: Vec<bool>,
    ready: BTreeMap<usize, Ready>,
    set: JoinSet<Result<Ready, Error>>,
    /// Connections and spill places (shared with other transfers in a fleet).
    budget: Budget,
    /// Permits won while waiting, for the next piece to launch.
    spare_connection: Option<OwnedSemaphorePermit>,
    spare_spill: Option<OwnedSemaphorePermit>,
    /// The piece the in-order hasher is reading. It runs beside the piece tasks, so pieces keep
    /// being launched while a backlog of finished ones is hashed.
    hashing: Option<HashJob>,
}

/// The in-order hasher reading one piece, off the async workers.
struct HashJob {
    ready: Ready,
    handle: tokio::task::JoinHandle<std::io::Result<Digests>>,
}

/// What woke the pipeline loop.
enum Woke {
    Piece(Option<Result<Result<Ready, Error>, tokio::task::JoinError>>),
    Hashed(Result<std::io::Result<Digests>, tokio::task::JoinError>),
}

async fn pipeline(
    ctx: &Arc<Ctx>,
    state: &mut TransferState,
    persist: &mut Persist<'_>,
) -> Result<(), Error> {
    let mut digests = Digests::restore(&state.digest)?;
    let budget =
        (ctx.opts.budget.clone()).unwrap_or_else(|| Budget::new(ctx.opts.concurrency.max(1), 1));
    let mut flight = Flight {
        launched: vec![false; state.pieces.len()],
        ready: BTreeMap::new(),
        set: JoinSet::new(),
        budget,
        spare_connection: None,
        spare_spill: None,
        hashing: None,
    };
    let mut redo_budget = ctx.opts.integrity_retries;
    loop {
        launch(ctx, state, &mut flight);
        start_hash(state, &digests, &mut flight);
        if state.hashed >= state.pieces.len() && flight.set.is_empty() && flight.hashing.is_none() {
            return Ok(());
        }
        let wants = next_to_launch(ctx, state, &flight).is_some();
        let (connections, spill) = (
            Arc::clone(&flight.budget.connections),
            Arc::clone(&flight.budget.spill),
        );
        let is_hashing = flight.hashing.is_some();
        let hashing = flight.hashing.as_mut().map(|job| &mut job.handle);
        let woke = tokio::select! {
            joined = flight.set.join_next(), if !flight.set.is_empty() => Woke::Piece(joined),
            hashed = async { hashing.expect("guarded").await }, if is_hashing => {
                Woke::Hashed(hashed)
            }
            permit = spill.acquire_owned(), if wants && flight.spare_spill.is_none() => {
                flight.spare_spill = permit.ok();
                continue;
            }
            permit = connections.acquire_owned(),
                if wants && flight.spare_spill.is_some() && flight.spare_connection.is_none() => {
                flight.spare_connection = permit.ok();
                continue;
            }
            else => return Err(Error::Invariant("no piece in flight and none to launch".into())),
        };
        match woke {
            Woke::Piece(None) => {}
            Woke::Piece(Some(joined)) => {
                let r = match joined.map_err(Error::Task).and_then(|r| r) {
                    Ok(r) => r,
                    Err(e) => return Err(give_up(&mut flight, state, persist, e).await),
                };
                record(ctx, state, &r);
                save(persist, state).await?;
                flight.ready.insert(r.index, r);
            }
            Woke::Hashed(read) => {
                digests = on_hashed(state, &mut flight, persist, read, &mut redo_budget).await?;
            }
        }
    }
}

/// Takes the hasher's result for the next piece: saves the advanced table, or, when a split
/// source segment failed its md5, rewinds to transfer the segment again (while `redo_budget`
/// lasts). Returns the hashers' state.
async fn on_hashed(
    state: &mut TransferState,
    flight: &mut Flight,
    persist: &mut Persist<'_>,
    read: Result<std::io::Result<Digests>, tokio::task::JoinError>,
    redo_budget: &mut u32,
) -> Result<Digests, Error> {
    let job = flight.hashing.take().expect("a hash job woke the loop");
    let read = read.map_err(Error::Task).and_then(|r| {
        r.map_err(|source| Error::Io {
            what: "cannot read back",
            path: job.ready.path.display().to_string(),
            source,
        })
    });
    let mut digests = match read {
        Ok(read) => read,
        Err(e) => {
            flight.ready.insert(job.ready.index, job.ready);
            return Err(give_up(flight, state, persist, e).await);
        }
    };
    match finish_hash(state, &mut digests, job.ready).await {
        Hashed::Done => save(persist, state).await?,
        Hashed::SegmentMismatch(redo) => {
            if *redo_budget == 0 {
                return Err(give_up(flight, state, persist, redo).await);
            }
            *redo_budget -= 1;
            tracing::warn!(error = %redo, "a split source segment failed its md5 check; transferring it again");
            digests = restart_segment(state, flight).await.ok_or(redo)??;
            save(persist, state).await?;
        }
    }
    Ok(digests)
}

/// Stops every piece task, removes the spill files still waiting for the hasher, saves the table
/// and hands `e` back.
async fn give_up(
    flight: &mut Flight,
    state: &TransferState,
    persist: &mut Persist<'_>,
    e: Error,
) -> Error {
    flight.set.abort_all();
    if let Some(job) = flight.hashing.take() {
        flight.ready.insert(job.ready.index, job.ready);
    }
    remove_spills(flight.ready.values()).await;
    match save(persist, state).await {
        Ok(()) => e,
        Err(saving) => {
            tracing::warn!(error = %saving, "cannot save the transfer table after a failure");
            e
        }
    }
}

/// The next piece to start, if the concurrency and the window after the last hashed piece allow
/// one (the window bounds this transfer's spill files even when the shared budget has room).
fn next_to_launch(ctx: &Ctx, state: &TransferState, flight: &Flight) -> Option<usize> {
    if flight.set.len() >= ctx.opts.concurrency.max(1) {
        return None;
    }
    let window = ctx.opts.concurrency.max(1) + 1;
    let end = state.pieces.len().min(state.hashed + window);
    (state.hashed..end).find(|i| !flight.launched[*i])
}

/// Starts piece tasks, in order, while permits are free. Permits are taken here, in piece order,
/// never inside the tasks: a later piece holding a spill place while an earlier one waits for
/// one could otherwise leave every place with pieces the hasher cannot reach.
fn launch(ctx: &Arc<Ctx>, state: &TransferState, flight: &mut Flight) {
    while let Some(i) = next_to_launch(ctx, state, flight) {
        let spill = match flight.spare_spill.take() {
            Some(p) => p,
            None => match Arc::clone(&flight.budget.spill).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let connection = match flight.spare_connection.take() {
            Some(p) => p,
            None => match Arc::clone(&flight.budget.connections).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    flight.spare_spill = Some(spill);
                    return;
                }
            },
        };
        flight.launched[i] = true;
        let piece = state.pieces[i].clone();
        let segment = state.source.segments[piece.segment].clone();
        flight.set.spawn(super::piece::piece_task(
            Arc::clone(ctx),
            piece,
            segment,
            Permits { connection, spill },
        ));
    }
}

/// Records a finished piece in the table.
fn record(ctx: &Ctx, state: &mut TransferState, r: &Ready) {
    let p = &mut state.pieces[r.index];
    p.md5 = Some(r.md5.clone());
    if r.uploaded.is_some() {
        p.uploaded = r.uploaded.clone();
    }
    ctx.emit(Event::PieceDone {
        index: r.index,
        bytes: p.len,
        uploaded: r.uploaded.is_some(),
    });
}

/// Rewinds to the first piece of the current source segment so it is transferred again; returns
/// the hasher as it was there. `None` when no segment start was recorded. Later pieces waiting for
/// the hasher give their spill places back (they are fetched again; their uploads stand), so the
/// rewound pieces can always be launched, whatever else shares the budget.
async fn restart_segment(
    state: &mut TransferState,
    flight: &mut Flight,
) -> Option<Result<Digests, Error>> {
    let start = state.segment_start.clone()?;
    let segment = state.pieces[start.piece].segment;
    for p in state.pieces.iter_mut().filter(|p| p.segment == segment) {
        p.uploaded = None;
        p.md5 = None;
        flight.launched[p.index] = false;
    }
    let waiting = std::mem::take(&mut flight.ready);
    remove_spills(waiting.values()).await;
    for index in waiting.into_keys() {
        flight.launched[index] = false;
    }
    state.hashed = start.piece;
    state.digest = start.digest.clone();
    Some(Digests::restore(&start.digest).map_err(Error::from))
}

/// What feeding a piece to the in-order hasher found.
enum Hashed {
    Done,
    /// A split source segment's md5 does not match the listing: transfer the segment again.
    SegmentMismatch(Error),
}

async fn remove_spills<'a>(ready: impl Iterator<Item = &'a Ready>) {
    for r in ready.filter(|r| r.spill) {
        let _ = tokio::fs::remove_file(&r.path).await;
    }
}

/// Starts the in-order hasher on the next piece, when it is idle and that piece is ready: the
/// piece is fed to a copy of the whole-image hashers on a blocking thread, and
/// [`finish_hash`] takes the result.
fn start_hash(state: &mut TransferState, digests: &Digests, flight: &mut Flight) {
    if flight.hashing.is_some() {
        return;
    }
    let Some(ready) = flight.ready.remove(&state.hashed) else {
        return;
    };
    let piece = &state.pieces[ready.index];
    if piece.offset == 0 {
        state.segment_start = Some(SegmentStart {
            piece: piece.index,
            digest: digests.save(),
        });
    }
    let (path, offset, len) = (ready.path.clone(), ready.offset, piece.len);
    // Only a source segment split into several pieces needs its own md5 here; a whole one was
    // checked when it was downloaded.
    let split = !piece.whole;
    let d = digests.clone();
    let handle = tokio::task::spawn_blocking(move || -> std::io::Result<Digests> {
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
    });
    flight.hashing = Some(HashJob { ready, handle });
}

/// Takes a hashed piece off the disk and out of the window (`digests` already holds it); checks a
/// split source segment when its last piece passes. A mismatch asks for the segment to be redone.
async fn finish_hash(state: &mut TransferState, digests: &mut Digests, r: Ready) -> Hashed {
    if r.spill {
        let _ = tokio::fs::remove_file(&r.path).await;
    }
    let piece = &state.pieces[r.index];
    let segment = &state.source.segments[piece.segment];
    if piece.offset + piece.len == segment.bytes {
        let seg_md5 = digests.finish_segment();
        if let Some(want) = segment.md5.as_ref().filter(|_| !piece.whole)
            && *want != seg_md5
        {
            return Hashed::SegmentMismatch(Error::Integrity {
                what: format!("source segment {}", segment.name),
                found: seg_md5,
                expected: want.clone(),
            });
        }
    }
    state.hashed += 1;
    state.digest = digests.save();
    Hashed::Done
}
