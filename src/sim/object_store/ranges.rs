//! Range headers (one range; anything else is answered whole, as HTTP allows) and streaming the
//! pieces of an object as a body.

use super::*;

pub(super) enum RangeAnswer {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range against an object of `total` bytes. Multiple ranges and
/// malformed headers are answered with the whole object, as HTTP permits.
pub(super) fn parse_range(header: &str, total: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (None, Some(suffix)) if a.is_empty() => {
            if suffix == 0 || total == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                let len = suffix.min(total);
                RangeAnswer::Part(total - len, len)
            }
        }
        (Some(start), end) if b.is_empty() || end.is_some() => {
            if start >= total {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.unwrap_or(total - 1).min(total - 1);
            if end < start {
                return RangeAnswer::Whole;
            }
            RangeAnswer::Part(start, end - start + 1)
        }
        _ => RangeAnswer::Whole,
    }
}

/// Restricts a list of pieces to the byte range `start..start + len` of their concatenation.
pub(super) fn clip(pieces: Vec<Piece>, start: u64, len: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let (mut pos, end) = (0u64, start + len);
    for p in pieces {
        let (p_start, p_end) = (pos, pos + p.len);
        pos = p_end;
        let (s, e) = (p_start.max(start), p_end.min(end));
        if s < e {
            out.push(Piece {
                file: p.file,
                start: p.start + (s - p_start),
                len: e - s,
            });
        }
    }
    out
}

/// Streams the pieces' bytes in order, reading each file region as it is reached.
pub(super) fn content_stream(
    pieces: Vec<Piece>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::iter(pieces)
        .map(|p| {
            futures::stream::once(async move {
                let mut file = tokio::fs::File::open(&p.file).await?;
                file.seek(SeekFrom::Start(p.start)).await?;
                Ok::<_, std::io::Error>(ReaderStream::with_capacity(file.take(p.len), 64 * 1024))
            })
            .try_flatten()
        })
        .flatten()
}
