//! The export pipelined into the transfer (docs/state-machine.md, "Pipelining").
//!
//! An export writes its VHD into the receiving container as numbered DLO segments
//! (`<image>.vhd-00001`, …) and the manifest last. Swift lists an object only once its PUT has
//! completed, so a listed segment is a complete object: while the export task is still
//! processing, each newly listed segment (in number order, with the md5 the listing gives) is
//! copied to the destination and fed to the in-order hasher, with the transfer state saved after
//! every piece, exactly as in the transfer step.
//!
//! No source promises that an export never rewrites a segment it has written, so nothing copied
//! early is trusted: when the task succeeds, the object is inspected as usual (two agreeing
//! listings, sizes and the ETag of ETags) and [`reconcile`] keeps a copied piece only when its
//! source segment still has the name, size and md5 it was copied with; a changed one is copied
//! again, a vanished one deleted from the destination, and if a change falls inside what was
//! already hashed, the whole-image digests are computed again from the start. Then the remote
//! VHD pre-flight and the commit run as without pipelining; a predicted rejection deletes what was
//! staged in the destination.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{Migration, ObjectRef};
use super::wait::{Poll, pause};
use super::{Ctx, Error, Event};
use crate::api::images::Task;
use crate::transfer::source::{Kind, Source, SrcSegment};
use crate::transfer::{self, TransferState};

/// The transfer options, events and persistence of migration `m`'s copy: shared by the transfer
/// step and the pipelined copy.
pub(super) struct Copy {
    pub opts: transfer::Options,
    pub events: transfer::Events,
    pub persist: Box<
        dyn FnMut(
                TransferState,
            )
                -> futures::future::BoxFuture<'static, Result<(), transfer::PersistError>>
            + Send,
    >,
}

/// How migration `m` copies: its spill directory, the fleet's connection budget, transfer events
/// as migration events, and every change of the transfer table saved inside the whole record
/// (written off the runtime's workers).
pub(super) fn copy_setup(ctx: &Ctx, m: &Migration) -> Copy {
    let sink = Arc::clone(&ctx.events);
    let events: transfer::Events = Arc::new(move |e| sink(Event::Transfer { detail: e }));
    let base = m.clone();
    let store = ctx.store.clone();
    let persist = move |t: TransferState| -> futures::future::BoxFuture<
        'static,
        Result<(), transfer::PersistError>,
    > {
        let mut snapshot = base.clone();
        snapshot.facts.transfer = Some(t);
        snapshot.updated = super::state::unix_now();
        let store = store.clone();
        Box::pin(async move { Ok(store.persist(&snapshot).await?) })
    };
    Copy {
        opts: transfer::Options {
            concurrency: m.plan.concurrency.max(1),
            work_dir: ctx.store.work_dir(&m.id),
            integrity_retries: 3,
            budget: ctx.budget.clone(),
        },
        events,
        persist: Box::new(persist),
    }
}

/// Waits for export task `id` like [`super::wait::wait_task`], copying each segment as soon as it
/// is listed. Returns the finished task, or its failure message.
pub(super) async fn export_and_copy(
    ctx: &Ctx,
    m: &mut Migration,
    id: &str,
) -> Result<Result<Task, String>, Error> {
    let src = ctx.src()?;
    let image = m
        .facts
        .source_image
        .clone()
        .ok_or(Error::Invariant("Exporting without an image"))?;
    let prefix = format!("{image}.vhd-");
    ctx.dst()?
        .files
        .put_container(&m.plan.dst_container)
        .await?;
    if m.facts.transfer.is_none() {
        m.facts.transfer = Some(growing_state(m));
        m.facts.upload = Some(ObjectRef {
            container: m.plan.dst_container.clone(),
            object: m.upload_object(),
        });
        m.facts.pipelined = true;
        ctx.save(m).await?;
    }
    let p = m.plan.polling;
    let what = format!("export task {id} in {}", src.name);
    let started = Instant::now();
    let mut task_checked: Option<Instant> = None;
    let mut last_status = String::new();
    let mut confirm = true;
    loop {
        if task_checked.is_none_or(|t| t.elapsed().as_secs_f64() >= p.task_secs) {
            task_checked = Some(Instant::now());
            match super::wait::check_task(src, &what, id).await? {
                Poll::Ready(r) => return Ok(ended(m, r)),
                Poll::Pending(status) if status != last_status => {
                    ctx.emit(Event::Waiting {
                        what: what.clone(),
                        status: format!("{status} (copying segments as they are listed)"),
                    });
                    last_status = status;
                }
                Poll::Pending(_) => {}
            }
        }
        let listed = src.files.list(&m.plan.src_container, &prefix).await?;
        // Alone, a listed segment is copied over every connection, so each round ends soon after
        // its segment is listed and the task is polled again (whole, one segment kept one
        // connection busy for a segment's time while the export wrote the next, and the copy
        // ended up to that long after the export). In a fleet the other members keep the
        // connections busy, and whole segments cost less to check.
        if append_listed(m, &listed, &prefix, split_ways(ctx, m)) > 0 {
            let seen = copy_round(ctx, m, confirm, &what, id).await?;
            confirm = false;
            if let Some(r) = seen {
                return Ok(ended(m, r));
            }
        }
        if started.elapsed().as_secs_f64() > p.deadline_secs {
            return Err(Error::Timeout {
                what,
                seconds: p.deadline_secs,
                status: last_status,
            });
        }
        pause(ctx, p.server_secs.min(p.task_secs)).await?;
    }
}

/// How the export task ended. What was copied from a failed export is dropped: a new one
/// starts afresh.
fn ended(m: &mut Migration, r: Result<Task, String>) -> Result<Task, String> {
    if r.is_err() {
        m.facts.transfer = None;
        m.facts.pipelined = false;
    }
    r
}

/// One copy round, with the export task polled beside it: a round of whole segments in a fleet
/// lasts a segment's time over one connection (4 s for 64 MiB at 16 MiB/s) or longer, and a
/// fleet member should give its `--parallel` place back when the export is complete
/// ([`Event::ExportDone`]), not when the round ends. Returns how the task ended, if it did.
async fn copy_round(
    ctx: &Ctx,
    m: &mut Migration,
    confirm: bool,
    what: &str,
    id: &str,
) -> Result<Option<Result<Task, String>>, Error> {
    let src = ctx.src()?;
    let every = Duration::from_secs_f64(m.plan.polling.task_secs.max(0.01));
    let copy = copy_listed(ctx, m, confirm);
    tokio::pin!(copy);
    let mut seen = None;
    loop {
        tokio::select! {
            r = &mut copy => return r.map(|()| seen),
            () = tokio::time::sleep(every), if seen.is_none() => {
                // A poll that fails here is left to the loop's own poll after the round: the
                // round must not be dropped half-way (it holds the transfer state).
                match super::wait::check_task(src, what, id).await {
                    Ok(Poll::Ready(r)) => {
                        if r.is_ok() {
                            ctx.emit(Event::ExportDone { task: id.to_string() });
                        }
                        seen = Some(r);
                    }
                    Ok(Poll::Pending(_)) => {}
                    Err(e) => tracing::debug!(error = %e, "export task poll during a copy round"),
                }
            }
        }
    }
}

/// An empty transfer of a DLO whose segments are not known yet.
fn growing_state(m: &Migration) -> TransferState {
    TransferState {
        source: Source {
            kind: Kind::Dlo,
            len: 0,
            etag: None,
            segments: Vec::new(),
        },
        dest_container: m.plan.dst_container.clone(),
        dest_name: m.upload_object(),
        segment_size: m.plan.segment_size,
        pieces: Vec::new(),
        hashed: 0,
        digest: transfer::digest::Digests::default().save(),
        segment_start: None,
        manifest_etag: None,
        sha256: None,
        md5: None,
    }
}

/// Into how many pieces the pipelined copy cuts each listed segment: alone, one per connection;
/// in a fleet, `None` (whole segments: the other members keep the connections busy).
fn split_ways(ctx: &Ctx, m: &Migration) -> Option<usize> {
    ctx.budget.is_none().then_some(m.plan.concurrency.max(1))
}

/// The piece size for a listed segment of `bytes` after `pieces_before` pieces: about a `ways`-th
/// of it (whole MiB, at most `segment_size`) while the split pieces stay within half the SLO's
/// segment limit, so the rest of the export can still follow one piece per segment; then
/// `segment_size`. The same inputs always give the same plan, which is what lets [`reconcile`]
/// recognise what was copied.
fn listed_piece_size(
    ways: Option<usize>,
    segment_size: u64,
    bytes: u64,
    pieces_before: usize,
) -> u64 {
    match ways {
        Some(w) if w > 1 && pieces_before + w <= transfer::plan::MAX_SEGMENTS / 2 => {
            let unit = transfer::plan::MIN_SEGMENT;
            let share = bytes.div_ceil(w as u64).div_ceil(unit).saturating_mul(unit);
            segment_size.min(share)
        }
        _ => segment_size,
    }
}

/// Appends the listed segments that continue the numbering (`prefix` + the next number) to the
/// growing transfer, with their pieces (each segment in about `ways` pieces when given); returns
/// how many were added.
fn append_listed(
    m: &mut Migration,
    listed: &[crate::api::object_store::Listed],
    prefix: &str,
    ways: Option<usize>,
) -> usize {
    let container = m.plan.src_container.clone();
    let Some(t) = m.facts.transfer.as_mut() else {
        return 0;
    };
    let mut numbered: Vec<(u64, &crate::api::object_store::Listed)> = listed
        .iter()
        .filter_map(|l| Some((l.name.strip_prefix(prefix)?.parse().ok()?, l)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let mut added = 0;
    for (n, l) in numbered {
        let next = t.source.segments.len() as u64 + 1;
        if n < next {
            continue;
        }
        if n > next {
            break; // a gap: that segment is not listed yet
        }
        let index = t.source.segments.len();
        t.source.segments.push(SrcSegment {
            container: container.clone(),
            name: l.name.clone(),
            bytes: l.bytes,
            md5: Some(l.hash.clone()),
        });
        t.source.len += l.bytes;
        let size = listed_piece_size(ways, t.segment_size, l.bytes, t.pieces.len());
        let pieces =
            transfer::plan::plan_segment(index, l.bytes, t.pieces.len(), &t.dest_name, size);
        t.pieces.extend(pieces);
        added += 1;
    }
    added
}

/// Copies and hashes every piece not done yet.
async fn copy_listed(ctx: &Ctx, m: &mut Migration, confirm: bool) -> Result<(), Error> {
    // A copy: an early return leaves the migration's own state in place.
    let mut state = m
        .facts
        .transfer
        .clone()
        .ok_or(Error::Invariant("a pipelined copy without its transfer"))?;
    let Copy {
        opts,
        events,
        mut persist,
    } = copy_setup(ctx, m);
    let work_dir = opts.work_dir.clone();
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    let dest = transfer::Endpoint {
        store: ctx.dst()?.files.clone(),
        container: state.dest_container.clone(),
        name: state.dest_name.clone(),
    };
    let access = transfer::SourceAccess::Store(ctx.src()?.files.clone());
    let outcome = tokio::select! {
        r = transfer::copy_pieces(access, dest, &mut state, opts, events, &mut *persist, confirm) => Some(r),
        () = ctx.cancel.cancelled() => None,
    };
    m.facts.transfer = Some(state);
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    match outcome {
        None => Err(Error::Interrupted),
        Some(r) => Ok(r?),
    }
}

/// The transfer of the finished export `source`, keeping what the pipelined copy did where it
/// still holds (see the module doc). Returns the destination objects to delete (pieces whose
/// source segment vanished).
pub(super) fn reconcile(
    ctx: &Ctx,
    m: &mut Migration,
    source: Source,
) -> Result<Vec<String>, Error> {
    // A copy: if planning the fresh transfer fails, the early one is still the migration's.
    let early = m
        .facts
        .transfer
        .clone()
        .ok_or(Error::Invariant("reconciling without a pipelined copy"))?;
    let mut fresh = TransferState::new(
        source,
        &early.dest_container,
        &early.dest_name,
        m.plan.segment_size,
    )
    .map_err(transfer::Error::from)?;
    replan_as_listed(ctx, m, &mut fresh, &early);
    let mut intact_prefix = 0;
    let mut prefix_holds = true;
    for p in &mut fresh.pieces {
        let old = early.pieces.get(p.index).filter(|o| {
            o.dest == p.dest
                && o.offset == p.offset
                && o.len == p.len
                && early.source.segments.get(o.segment) == fresh.source.segments.get(p.segment)
        });
        match old {
            Some(o) => {
                p.md5.clone_from(&o.md5);
                p.uploaded.clone_from(&o.uploaded);
                if prefix_holds && p.index < early.hashed {
                    intact_prefix = p.index + 1;
                }
            }
            None => {
                if let Some(o) = early.pieces.get(p.index).filter(|o| o.uploaded.is_some()) {
                    let seg = &early.source.segments[o.segment];
                    ctx.emit(Event::Warning {
                        message: format!(
                            "export segment {} changed after it was copied (md5 {} then {}); \
                             copying it again",
                            seg.name,
                            seg.md5.as_deref().unwrap_or("?"),
                            fresh.source.segments[p.segment]
                                .md5
                                .as_deref()
                                .unwrap_or("?")
                        ),
                    });
                }
                prefix_holds = false;
            }
        }
    }
    if intact_prefix == early.hashed {
        fresh.hashed = early.hashed;
        fresh.digest = early.digest.clone();
        fresh.segment_start = early.segment_start.clone();
    } else if early.hashed > 0 {
        // A change inside the hashed part: the digests are made again from the first byte; the
        // unchanged uploads are kept, so those pieces are only read, not sent.
        tracing::info!(
            hashed = early.hashed,
            intact_prefix,
            "re-hashing the image after an export rewrite"
        );
    }
    split_last_segments(ctx, m, &mut fresh);
    let vanished = early
        .pieces
        .iter()
        .skip(fresh.pieces.len())
        .filter(|p| p.uploaded.is_some())
        .map(|p| p.dest.clone())
        .collect();
    m.facts.transfer = Some(fresh);
    Ok(vanished)
}

/// Plans `fresh` the way the segments were cut while they were listed (so the copied pieces are
/// found again by name, offset and length): as `early` cut them, even under another
/// `--concurrency` since, and the rest as [`append_listed`] would. Unless that would exceed the
/// SLO's segment limit; then the plain plan stands and what was copied is copied again.
fn replan_as_listed(ctx: &Ctx, m: &Migration, fresh: &mut TransferState, early: &TransferState) {
    let ways = split_ways(ctx, m);
    let segment_size = early.segment_size;
    let mut pieces = Vec::new();
    for (index, s) in fresh.source.segments.iter().enumerate() {
        let cut = early
            .pieces
            .iter()
            .find(|p| p.segment == index && p.offset == 0);
        let size = match cut {
            Some(p) if !p.whole => p.len,
            Some(_) => segment_size,
            None => listed_piece_size(ways, segment_size, s.bytes, pieces.len()),
        };
        let more =
            transfer::plan::plan_segment(index, s.bytes, pieces.len(), &fresh.dest_name, size);
        pieces.extend(more);
    }
    if pieces.len() <= transfer::plan::MAX_SEGMENTS {
        fresh.pieces = pieces;
    } else {
        tracing::warn!(
            pieces = pieces.len(),
            "the export has too many segments to keep the pieces copied during it; copying them again"
        );
    }
}

/// What the export wrote last was listed after the final copy round: split it so the transfer
/// step copies it over every connection, not one. Not in a fleet: there the other members keep
/// the connections busy, and more pieces would only mean more requests.
fn split_last_segments(ctx: &Ctx, m: &Migration, fresh: &mut TransferState) {
    if ctx.budget.is_some() {
        return;
    }
    let sizes: Vec<u64> = fresh.source.segments.iter().map(|s| s.bytes).collect();
    if transfer::plan::split_tail(
        &mut fresh.pieces,
        &sizes,
        &fresh.dest_name,
        m.plan.concurrency,
    ) {
        tracing::info!(
            pieces = fresh.pieces.len(),
            "split the export's last segments"
        );
    }
}

/// Deletes what the pipelined copy staged in the destination (after a predicted rejection).
pub(super) async fn delete_staged(ctx: &Ctx, m: &Migration, names: &[String]) {
    for name in names {
        let Ok(dst) = ctx.dst() else { return };
        if let Err(e) = dst.files.delete(&m.plan.dst_container, name).await {
            ctx.emit(Event::Warning {
                message: format!(
                    "could not delete the staged segment {}/{name}: {}",
                    m.plan.dst_container,
                    crate::error_chain(&e)
                ),
            });
        }
    }
}
