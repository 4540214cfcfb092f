//! The pipeline: bounded parallel piece tasks (see [`super::piece`]), the in-order hasher that
//! consumes their spill files, and the persisted per-piece table. Invariant: pieces are launched
//! only within `hashed + concurrency + 1`, so spill files never exceed `(concurrency + 1) ×
//! segment size`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::context::{Ctx, Ready};
use super::digest::Digests;
use super::read_back::for_each_chunk;
use super::{
    Destination, Endpoint, Error, Event, Events, Options, Outcome, Persist, SegmentStart,
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
    /// The connection budget (shared with other transfers in a fleet).
    budget: Arc<Semaphore>,
    /// A permit won while waiting, for the next piece to launch.
    spare: Option<OwnedSemaphorePermit>,
}

async fn pipeline(
    ctx: &Arc<Ctx>,
    state: &mut TransferState,
    persist: &mut Persist<'_>,
) -> Result<(), Error> {
    let mut digests = Digests::restore(&state.digest)?;
    let budget = ctx
        .opts
        .budget
        .clone()
        .unwrap_or_else(|| Arc::new(Semaphore::new(ctx.opts.concurrency.max(1))));
    let mut flight = Flight {
        launched: vec![false; state.pieces.len()],
        ready: BTreeMap::new(),
        set: JoinSet::new(),
        budget,
        spare: None,
    };
    let mut redo_budget = ctx.opts.integrity_retries;
    loop {
        launch(ctx, state, &mut flight);
        if state.hashed >= state.pieces.len() && flight.set.is_empty() {
            return Ok(());
        }
        let wants = next_to_launch(ctx, state, &flight).is_some();
        let budget = Arc::clone(&flight.budget);
        let joined = tokio::select! {
            joined = flight.set.join_next(), if !flight.set.is_empty() => joined,
            permit = budget.acquire_owned(), if wants => {
                flight.spare = permit.ok();
                continue;
            }
            else => return Err(Error::Invariant("no piece in flight and none to launch".into())),
        };
        let Some(joined) = joined else { continue };
        let r = match joined {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                flight.set.abort_all();
                remove_spills(flight.ready.values()).await;
                save(persist, state).await?;
                return Err(e);
            }
            Err(join) => {
                flight.set.abort_all();
                return Err(Error::Task(join));
            }
        };
        record(ctx, state, &r);
        save(persist, state).await?;
        flight.ready.insert(r.index, r);
        while let Some(r) = flight.ready.remove(&state.hashed) {
            match hash_in_order(state, &mut digests, r).await? {
                Hashed::Done => save(persist, state).await?,
                Hashed::SegmentMismatch(redo) => {
                    if redo_budget == 0 {
                        return Err(redo);
                    }
                    redo_budget -= 1;
                    tracing::warn!(error = %redo, "a split source segment failed its md5 check; transferring it again");
                    digests = restart_segment(state, &mut flight).ok_or(redo)??;
                    save(persist, state).await?;
                    break;
                }
            }
        }
    }
}

/// The next piece to start, if the concurrency and the window after the last hashed piece allow
/// one (the window bounds spill files even when permits are plentiful).
fn next_to_launch(ctx: &Ctx, state: &TransferState, flight: &Flight) -> Option<usize> {
    if flight.set.len() >= ctx.opts.concurrency.max(1) {
        return None;
    }
    let window = ctx.opts.concurrency.max(1) + 1;
    let end = state.pieces.len().min(state.hashed + window);
    (state.hashed..end).find(|i| !flight.launched[*i])
}

/// Starts piece tasks, in order, while permits are free. Permits are taken here, in piece order,
/// never inside the tasks: a later piece holding a permit while an earlier one waits for one
/// could otherwise leave every permit with pieces the hasher cannot reach.
fn launch(ctx: &Arc<Ctx>, state: &TransferState, flight: &mut Flight) {
    while let Some(i) = next_to_launch(ctx, state, flight) {
        let permit = match flight.spare.take() {
            Some(p) => p,
            None => match Arc::clone(&flight.budget).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        flight.launched[i] = true;
        let piece = state.pieces[i].clone();
        let segment = state.source.segments[piece.segment].clone();
        flight.set.spawn(super::piece::piece_task(
            Arc::clone(ctx),
            piece,
            segment,
            permit,
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
/// the hasher as it was there. `None` when no segment start was recorded.
fn restart_segment(
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

/// Feeds one piece, in order, to the whole-image hashers; checks split source segments when their
/// last piece passes. An error is fatal; a mismatch asks for the segment to be redone.
async fn hash_in_order(
    state: &mut TransferState,
    digests: &mut Digests,
    r: Ready,
) -> Result<Hashed, Error> {
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
    .map_err(Error::Task)?
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
            return Ok(Hashed::SegmentMismatch(Error::Integrity {
                what: format!("source segment {}", segment.name),
                found: seg_md5,
                expected: want.clone(),
            }));
        }
    }
    state.hashed += 1;
    state.digest = digests.save();
    Ok(Hashed::Done)
}
