//! Planning the destination segments.
//!
//! One destination segment per source segment, split when a source segment is larger than the
//! segment size. A plain object or a local file is cut into `segment_size` ranges: default 128 MiB
//! (Rackspace's advice), at least 1 MiB, and grown so no plan has more than 1000 segments (the SLO
//! limit). Destination names are deterministic, `<object>.segments/<nnnnnn>`, so a resumed run finds
//! what an earlier run uploaded.

use serde::{Deserialize, Serialize};

use super::source::Source;

pub const MIN_SEGMENT: u64 = 1 << 20;
pub const DEFAULT_SEGMENT: u64 = 128 << 20;
pub const MAX_SEGMENTS: usize = 1000;

/// One destination segment and what is known about it. The per-segment table is part of the
/// persisted transfer state. Its `md5` is the local md5 of the piece's bytes, checked against the
/// source segment's; SHA-256 is kept for the whole image (see [`super::digest`]), where it is
/// useful, rather than per piece, which would cost another pass over every byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub index: usize,
    /// Index of the source segment this piece comes from.
    pub segment: usize,
    /// Offset within that source segment.
    pub offset: u64,
    pub len: u64,
    /// Whether this piece is its whole source segment (then its md5 is checked at download).
    pub whole: bool,
    pub dest: String,
    #[serde(default)]
    pub md5: Option<String>,
    /// The ETag the destination answered; set once the upload is confirmed.
    #[serde(default)]
    pub uploaded: Option<String>,
}

/// Why no plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the source has {0} segments but a static large object holds at most {MAX_SEGMENTS}; \
         use a larger export segment size"
    )]
    TooManySegments(usize),
    #[error("the source is empty: there is nothing to transfer")]
    Empty,
    #[error(
        "the source claims {0} bytes, more than {MAX_SEGMENTS} segments of at most 5 GiB (Cloud Files' \
         object limit) can hold; an image for import is at most 160 GiB"
    )]
    TooLarge(u64),
}

/// The largest piece: Cloud Files refuses single objects over 5 GiB.
pub const MAX_PIECE: u64 = 5 << 30;

/// The segment size actually used: at least 1 MiB, and large enough for ≤ 1000 pieces.
pub fn effective_segment_size(requested: u64, source: &Source) -> Result<u64, Error> {
    let mut size = requested.max(MIN_SEGMENT);
    loop {
        let n = count(source, size);
        if n <= MAX_SEGMENTS {
            return Ok(size);
        }
        if source.segments.len() > MAX_SEGMENTS {
            return Err(Error::TooManySegments(source.segments.len()));
        }
        if size >= MAX_PIECE {
            return Err(Error::TooLarge(source.len));
        }
        // Grow to the size that would fit a plain object, rounded up to whole MiB (never past
        // the object limit, so the loop ends and nothing overflows).
        size = (size.saturating_mul(2)).max(
            source
                .len
                .div_ceil(MAX_SEGMENTS as u64)
                .div_ceil(MIN_SEGMENT)
                .saturating_mul(MIN_SEGMENT),
        );
        size = size.min(MAX_PIECE);
    }
}

fn count(source: &Source, size: u64) -> usize {
    source
        .segments
        .iter()
        .map(|s| s.bytes.div_ceil(size).max(1) as usize)
        .sum()
}

/// Plans the pieces for copying `source` to `dest_object`.
pub fn plan(source: &Source, dest_object: &str, segment_size: u64) -> Result<Vec<Piece>, Error> {
    if source.len == 0 {
        return Err(Error::Empty);
    }
    let size = effective_segment_size(segment_size, source)?;
    let mut pieces = Vec::new();
    for (segment, s) in source.segments.iter().enumerate() {
        let more = plan_segment(segment, s.bytes, pieces.len(), dest_object, size);
        pieces.extend(more);
    }
    Ok(pieces)
}

/// The pieces of source segment number `segment` (`bytes` long), numbered from `first_index`:
/// one piece when it fits in `size`, else `size` ranges. Used for a whole plan and for segments
/// appended while an export is still writing them.
pub fn plan_segment(
    segment: usize,
    bytes: u64,
    first_index: usize,
    dest_object: &str,
    size: u64,
) -> Vec<Piece> {
    let size = size.max(MIN_SEGMENT);
    let n = bytes.div_ceil(size).max(1);
    let mut pieces = Vec::new();
    for k in 0..n {
        let offset = k * size;
        let len = size.min(bytes - offset);
        if len == 0 {
            continue;
        }
        let index = first_index + pieces.len();
        pieces.push(Piece {
            index,
            segment,
            offset,
            len,
            whole: n == 1,
            dest: format!("{dest_object}.segments/{index:06}"),
            md5: None,
            uploaded: None,
        });
    }
    pieces
}

/// Re-plans the trailing source segments of which nothing is copied yet (from the first such
/// segment on) into pieces of about `tail bytes / ways`, at least [`MIN_SEGMENT`], when they would
/// otherwise be fewer than `ways` pieces: the last wave of a transfer then keeps every connection
/// busy instead of one. Pieces before the tail are untouched; the plan is kept as it was if the
/// split would exceed [`MAX_SEGMENTS`]. Returns whether it changed anything.
pub fn split_tail(pieces: &mut Vec<Piece>, segment_bytes: &[u64], dest: &str, ways: usize) -> bool {
    let untouched = |p: &Piece| p.uploaded.is_none() && p.md5.is_none();
    let run = pieces.iter().rev().take_while(|p| untouched(p)).count();
    // The tail starts at a segment boundary: a segment partly copied keeps its plan.
    let Some(first_segment) = pieces[pieces.len() - run..]
        .iter()
        .find(|p| p.offset == 0)
        .map(|p| p.segment)
    else {
        return false;
    };
    let start = pieces
        .iter()
        .position(|p| p.segment == first_segment)
        .unwrap_or(pieces.len());
    let tail = pieces.len() - start;
    if tail == 0 || tail >= ways {
        return false;
    }
    let bytes: u64 = segment_bytes[first_segment..].iter().sum();
    let size = bytes
        .div_ceil(ways.max(1) as u64)
        .div_ceil(MIN_SEGMENT)
        .saturating_mul(MIN_SEGMENT)
        .max(MIN_SEGMENT);
    let mut split = pieces[..start].to_vec();
    for (segment, &b) in segment_bytes.iter().enumerate().skip(first_segment) {
        let more = plan_segment(segment, b, split.len(), dest, size);
        split.extend(more);
    }
    if split.len() > MAX_SEGMENTS || split.len() <= pieces.len() {
        return false;
    }
    *pieces = split;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::source::{Kind, SrcSegment};

    fn src(sizes: &[u64]) -> Source {
        Source {
            kind: Kind::Dlo,
            len: sizes.iter().sum(),
            etag: None,
            segments: sizes
                .iter()
                .enumerate()
                .map(|(i, &b)| SrcSegment {
                    container: "c".into(),
                    name: format!("s{i}"),
                    bytes: b,
                    md5: None,
                })
                .collect(),
        }
    }

    #[test]
    fn one_piece_per_source_segment_split_when_larger() {
        let mib = 1 << 20;
        let p = plan(&src(&[64 * mib, 64 * mib, 10]), "img.vhd", 128 * mib).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|x| x.whole && x.offset == 0));
        assert_eq!(p[1].dest, "img.vhd.segments/000001");
        let p = plan(&src(&[300 * mib, 5]), "x", 128 * mib).unwrap();
        assert_eq!(
            p.iter()
                .map(|x| (x.segment, x.offset, x.len))
                .collect::<Vec<_>>(),
            [
                (0, 0, 128 * mib),
                (0, 128 * mib, 128 * mib),
                (0, 256 * mib, 44 * mib),
                (1, 0, 5)
            ]
        );
        assert!(!p[0].whole && p[3].whole);
    }

    #[test]
    fn plain_objects_are_cut_and_sizes_grow_to_fit_1000() {
        let mib: u64 = 1 << 20;
        let p = plan(&src(&[10 * mib]), "x", 1).unwrap();
        assert_eq!(p.len(), 10, "segment size is at least 1 MiB");
        let big = src(&[40 << 30]);
        let size = effective_segment_size(mib, &big).unwrap();
        assert!(count(&big, size) <= MAX_SEGMENTS);
        assert_eq!(size % mib, 0);
        assert_eq!(plan(&big, "x", mib).unwrap().len(), count(&big, size));
        assert!(matches!(
            plan(&src(&[1; 1001]), "x", mib),
            Err(Error::TooManySegments(1001))
        ));
        assert!(matches!(plan(&src(&[0]), "x", mib), Err(Error::Empty)));
    }

    #[test]
    fn an_untouched_tail_is_split_for_every_connection() {
        let mib = 1 << 20;
        let sizes = [64 * mib, 64 * mib, 64 * mib, mib / 2];
        let mut p = plan(&src(&sizes), "x", 128 * mib).unwrap();
        // The first two segments were copied during the export.
        for q in &mut p[..2] {
            q.md5 = Some("m".into());
            q.uploaded = Some("m".into());
        }
        let copied = p[..2].to_vec();
        assert!(split_tail(&mut p, &sizes, "x", 8));
        assert_eq!(p[..2], copied[..], "what was copied keeps its plan");
        // 64.5 MiB left over 8 ways: 9 MiB pieces, so segment 2 is 8 pieces and the last one whole.
        let tail: Vec<_> = p[2..]
            .iter()
            .map(|q| (q.segment, q.offset, q.len))
            .collect();
        assert_eq!(tail.len(), 9, "{tail:?}");
        assert!(p[2..10].iter().all(|q| q.segment == 2 && !q.whole));
        assert_eq!(p[10].segment, 3);
        assert!(p[10].whole);
        assert_eq!(
            p.iter().map(|q| q.len).sum::<u64>(),
            sizes.iter().sum::<u64>()
        );
        assert!(
            p.iter()
                .enumerate()
                .all(|(i, q)| q.index == i && q.dest == format!("x.segments/{i:06}"))
        );
        // Enough pieces already, or nothing untouched: no change.
        assert!(!split_tail(&mut p, &sizes, "x", 8));
        let mut done = plan(&src(&sizes), "x", 128 * mib).unwrap();
        done.iter_mut().for_each(|q| q.uploaded = Some("m".into()));
        assert!(!split_tail(&mut done, &sizes, "x", 8));
    }
}
