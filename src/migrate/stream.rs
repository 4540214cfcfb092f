//! Reading a migration's source forward, in order, and turning it into the bytes an OpenStack
//! cloud stores (`--to-cloud`).
//!
//! The source is a VHD (a local file, or an export read from Cloud Files) or an image of another
//! OpenStack cloud. It is read in pieces of [`PIECE`] bytes, several ranged reads in flight and
//! delivered in order; each export segment is checked against the md5 its listing gives, and an
//! OpenStack image against its own sha512 and md5 before the last piece is passed on. A dynamic
//! VHD is converted to qcow2 as it streams ([`crate::convert`]), a fixed one becomes raw (its
//! footer dropped), anything else passes unchanged. Memory stays bounded whatever the image's
//! size: a few pieces are in flight, never the image.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use md5::Md5;
use sha2::{Digest, Sha512};

use super::cloud;
use super::state::{CloudImage, DiskFormat, Entry, Migration};
use super::{Ctx, Error, Event};
use crate::api::glance::Glance;
use crate::api::object_store::ObjectStore;
use crate::convert::VhdToQcow2;
use crate::convert::raw::VhdToRaw;
use crate::transfer;
use crate::vhd::{dynamic, footer};

/// Bytes read at a time. `concurrency` reads are in flight and two pieces wait in the upload's
/// channel, so memory holds about `concurrency + 2` pieces whatever the image's size.
pub const PIECE: u64 = 4 << 20;
/// The largest block allocation table read: 16 Mi entries (32 TiB of 2 MiB blocks).
const MAX_BAT: u64 = 64 << 20;

/// A channel of output pieces, the body of an upload.
pub type Out = futures::channel::mpsc::Sender<std::io::Result<bytes::Bytes>>;

/// Running digests (sha512 and md5) of bytes read or sent, in order.
#[derive(Default, Clone)]
pub struct Digests {
    pub sha512: Sha512,
    pub md5: Md5,
}

impl Digests {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha512.update(bytes);
        self.md5.update(bytes);
    }

    /// `(sha512, md5)` in hex.
    pub fn finish(self) -> (String, String) {
        (
            hex::encode(self.sha512.finalize()),
            hex::encode(self.md5.finalize()),
        )
    }

    /// Whether the digests of all of `image`'s bytes match the image's own; `Err` names the one
    /// that does not.
    pub fn check(self, image: &CloudImage, cloud: &str) -> Result<(), Error> {
        let (sha512, md5) = self.finish();
        let differs = |what: &str, theirs: &str, ours: &str| {
            Err(Error::Final(format!(
                "image {} in {cloud} read back with {what} {ours}, but the image says {theirs}: \
                 the data changed or was damaged on the way; resume to read it again",
                image.id
            )))
        };
        if let Some(want) = &image.sha512
            && *want != sha512
        {
            return differs("sha512", want, &sha512);
        }
        if let Some(want) = &image.md5
            && *want != md5
        {
            return differs("md5", want, &md5);
        }
        Ok(())
    }
}

/// Where the source is read from.
#[derive(Clone)]
pub struct Reader {
    from: From,
    /// A fleet's shared connections: each read holds one while it is on the wire.
    budget: Option<transfer::Budget>,
}

/// The kinds of source.
#[derive(Clone)]
enum From {
    File(PathBuf),
    Object {
        files: ObjectStore,
        container: String,
        object: String,
    },
    /// An image of the source OpenStack cloud.
    Glance {
        glance: Glance,
        id: String,
    },
}

impl Reader {
    pub fn of(ctx: &Ctx, m: &Migration) -> Result<Self, Error> {
        let from = if m.plan.from_cloud.is_some() {
            From::Glance {
                glance: cloud::source_glance(ctx)?.clone(),
                id: cloud::source_image(m)?.id.clone(),
            }
        } else {
            match (&m.plan.entry, &m.facts.export) {
                (Entry::Vhd { path }, _) => From::File(path.into()),
                (_, Some(export)) => From::Object {
                    files: ctx.src()?.files.clone(),
                    container: export.container.clone(),
                    object: export.object.clone(),
                },
                (_, None) => return Err(Error::Invariant("an upload without an export")),
            }
        };
        Ok(Self {
            from,
            budget: ctx.budget.clone(),
        })
    }

    /// `len` bytes at `offset`, whole.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        // A local file takes no connection; a remote read holds one of the fleet's.
        let _connection = match (&self.from, &self.budget) {
            (From::File(_), _) | (_, None) => None,
            (_, Some(b)) => Arc::clone(&b.connections).acquire_owned().await.ok(),
        };
        match &self.from {
            From::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                    std::fs::File::open(&path)?.read_exact_at(&mut buf, offset)?;
                    Ok(buf)
                })
                .await
                .map_err(|_| Error::Invariant("a file read stopped"))?
                .map_err(|source| Error::File {
                    what: "cannot read the VHD",
                    path: self.shown(),
                    source,
                })
            }
            From::Object {
                files,
                container,
                object,
            } => Ok(files.fetch_range(container, object, offset, len).await?),
            From::Glance { glance, id } => Ok(glance.fetch_range(id, offset, len).await?),
        }
    }

    pub fn shown(&self) -> String {
        match &self.from {
            From::File(p) => p.display().to_string(),
            From::Object {
                container, object, ..
            } => format!("{container}/{object}"),
            From::Glance { id, .. } => format!("image {id}"),
        }
    }
}

/// How the source becomes the uploaded bytes.
pub enum Conversion {
    /// A dynamic VHD to qcow2.
    Qcow2(Box<VhdToQcow2>),
    /// A fixed VHD to raw: its bytes without the 512-byte footer.
    FixedRaw,
    /// A dynamic VHD to raw, block by block in guest order ([`produce_blocks`]).
    DynamicRaw(Box<VhdToRaw>),
    /// The bytes as they are (a VHD declared `vhd`, or an OpenStack image moved unchanged).
    AsIs,
}

/// What will be uploaded: the conversion, the format Glance is told, and the length.
pub struct Shape {
    pub conversion: Conversion,
    pub disk_format: &'static str,
    pub len: u64,
}

/// Reads the VHD's footer (and a dynamic one's header and block table) and decides how it is
/// uploaded under `--disk-format`.
pub async fn shape_of(ctx: &Ctx, m: &Migration) -> Result<Shape, Error> {
    let reader = Reader::of(ctx, m)?;
    let len = source_len(m)?;
    let wanted = m.plan.disk_format;
    let cannot = |why: String| Error::Final(format!("{}: {why}", reader.shown()));
    if let Some(image) = m
        .facts
        .source_cloud_image
        .as_ref()
        .filter(|i| i.disk_format != "vhd")
    {
        return unchanged(image, wanted, len).map_err(cannot);
    }
    if len < 512 {
        return Err(cannot("shorter than a VHD footer".into()));
    }
    let tail = reader.read(len - 512, 512).await?;
    let f = footer::Footer::new(tail.try_into().unwrap_or([0; 512]));
    let kind = f.disk_type();
    match (kind, wanted) {
        (footer::DiskType::Fixed, DiskFormat::Auto | DiskFormat::Raw) => Ok(Shape {
            conversion: Conversion::FixedRaw,
            disk_format: "raw",
            len: len - 512,
        }),
        (footer::DiskType::Dynamic, DiskFormat::Vhd) => Ok(Shape {
            conversion: Conversion::AsIs,
            disk_format: "vhd",
            len,
        }),
        (footer::DiskType::Dynamic, DiskFormat::Auto | DiskFormat::Qcow2) => {
            let (f, h, bat) = dynamic_parts(&reader, f).await?;
            let c = VhdToQcow2::new(&f, &h, &bat)
                .map_err(|e| cannot(format!("cannot be converted to qcow2: {e}")))?;
            Ok(Shape {
                len: c.output_len(),
                conversion: Conversion::Qcow2(Box::new(c)),
                disk_format: "qcow2",
            })
        }
        (footer::DiskType::Fixed, DiskFormat::Qcow2) => Err(cannot(
            "a fixed VHD is uploaded as raw (its data is a raw disk already): use --disk-format \
             raw or auto"
                .into(),
        )),
        (footer::DiskType::Fixed, DiskFormat::Vhd) => Err(cannot(
            "Glance's format inspection refuses a fixed VHD declared vhd (HTTP 415): use \
             --disk-format raw or auto"
                .into(),
        )),
        (footer::DiskType::Dynamic, DiskFormat::Raw) if m.facts.source_cloud_image.is_some() => {
            Err(cannot(
                "is read block by block out of order to become raw, so its own sha512 and md5 \
                 could not be checked on the way: use --disk-format qcow2 or auto"
                    .into(),
            ))
        }
        (footer::DiskType::Dynamic, DiskFormat::Raw) => {
            let (f, h, bat) = dynamic_parts(&reader, f).await?;
            let r = VhdToRaw::new(&f, &h, &bat)
                .map_err(|e| cannot(format!("cannot be converted to raw: {e}")))?;
            Ok(Shape {
                len: r.output_len(),
                conversion: Conversion::DynamicRaw(Box::new(r)),
                disk_format: "raw",
            })
        }
        (other, _) => Err(cannot(format!(
            "a {} VHD cannot be converted (only fixed and dynamic ones)",
            other.name()
        ))),
    }
}

/// A dynamic VHD's footer (read from its end), header and block allocation table.
async fn dynamic_parts(
    reader: &Reader,
    f: footer::Footer,
) -> Result<(footer::Footer, dynamic::Header, Vec<u8>), Error> {
    let head = reader.read(f.data_offset(), 1024).await?;
    let h = dynamic::Header::new(head.try_into().unwrap_or([0; 1024]));
    let bat_len = (u64::from(h.max_entries()) * 4).min(MAX_BAT);
    let bat = reader.read(h.table_offset(), bat_len).await?;
    Ok((f, h, bat))
}

/// An OpenStack image that is not a VHD moves as it is: a format is only changed where the bytes
/// allow it in one forward pass (a VHD). `Err` says why not, for the caller to prefix.
fn unchanged(image: &CloudImage, wanted: DiskFormat, len: u64) -> Result<Shape, String> {
    let format = DiskFormat::from_name(&image.disk_format);
    if wanted != DiskFormat::Auto && Some(wanted) != format {
        return Err(format!(
            "is {}; converting it to {} is not supported (only a VHD is converted on the way): \
             use --disk-format auto",
            image.disk_format,
            wanted.name()
        ));
    }
    let Some(format) = format else {
        return Err(format!(
            "is {}, a disk format imgferry does not move (qcow2, raw and vhd)",
            image.disk_format
        ));
    };
    Ok(Shape {
        conversion: Conversion::AsIs,
        disk_format: format.name(),
        len,
    })
}

fn source_len(m: &Migration) -> Result<u64, Error> {
    if let Some(image) = &m.facts.source_cloud_image {
        return Ok(image.size);
    }
    m.facts
        .transfer
        .as_ref()
        .map(|t| t.source.len)
        .ok_or(Error::Invariant("an upload without an inspected source"))
}

/// What was produced: the uploaded length and its digests.
pub struct Produced {
    pub bytes: u64,
    pub sha512: String,
    pub md5: String,
}

/// The conversion state carried from piece to piece (moved into a blocking task and back).
struct Work {
    conversion: Conversion,
    /// Digests of everything produced.
    digests: Digests,
    /// Bytes produced so far.
    produced: u64,
    /// An OpenStack image's own digests over what is read, checked before the last piece is
    /// sent (so a damaged read never completes an upload).
    input: Option<Digests>,
    /// Where the source's current segment started and its md5 so far.
    segment: usize,
    segment_md5: Md5,
    segment_start: u64,
}

/// Reads, checks and converts the VHD in order, sending each piece of output to `out` (when there
/// is one). Returns the digests of everything produced.
pub async fn produce(
    ctx: &Ctx,
    m: &Migration,
    shape: Shape,
    mut out: Option<Out>,
) -> Result<Produced, Error> {
    let reader = Reader::of(ctx, m)?;
    let len = source_len(m)?;
    let segments: std::sync::Arc<[transfer::source::SrcSegment]> = m
        .facts
        .transfer
        .as_ref()
        .map(|t| t.source.segments.clone())
        .unwrap_or_default()
        .into();
    let total = shape.len;
    let conversion = match shape.conversion {
        Conversion::DynamicRaw(r) => return produce_blocks(ctx, m, &reader, *r, out).await,
        other => other,
    };
    let mut w = Work::new(conversion, m.facts.source_cloud_image.is_some());
    if let Conversion::Qcow2(c) = &w.conversion {
        let head = c.metadata();
        w.digests.update(&head);

        w.produced = head.len() as u64;
        send(&mut out, head).await?;
    }
    ctx.emit(Event::Transfer {
        detail: transfer::Event::Started {
            total,
            pieces: len.div_ceil(PIECE) as usize,
            already_done: 0,
            segment_size: PIECE,
        },
    });
    let offsets = (0..len).step_by(PIECE as usize);
    let concurrency = m.plan.concurrency.max(1);
    let mut pieces = futures::stream::iter(offsets)
        .map(|at| {
            let reader = reader.clone();
            async move { Ok::<_, Error>((at, reader.read(at, PIECE.min(len - at)).await?)) }
        })
        .buffered(concurrency);
    while let Some(piece) = pieces.next().await {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let (at, bytes) = piece?;
        let segments = std::sync::Arc::clone(&segments);
        let (back, made) = tokio::task::spawn_blocking(move || {
            let made = w.take(at, &bytes, &segments, len);
            (w, made)
        })
        .await
        .map_err(|_| Error::Invariant("the converter stopped"))?;
        w = back;
        let made = made.map_err(|why| Error::Final(format!("{}: {why}", reader.shown())))?;
        if w.produced >= total
            && let (Some(input), Some(image)) = (w.input.take(), &m.facts.source_cloud_image)
        {
            // The last piece: the source's digests are checked before it is sent.
            input.check(image, &cloud_name(ctx))?;
        }
        send(&mut out, made).await?;
        ctx.emit(Event::Transfer {
            detail: transfer::Event::Progress {
                done: w.produced,
                total,
            },
        });
    }
    w.finish(total)
        .map_err(|why| Error::Final(format!("{}: {why}", reader.shown())))
}

/// A dynamic VHD to raw: block by block in guest order, each allocated block one ranged read
/// (`concurrency` in flight, delivered in order), an unallocated one zeros. The reads are out of
/// file order, so an export's segment md5s cannot be checked on the way; what is sent is still
/// checked against the digests Glance computes.
async fn produce_blocks(
    ctx: &Ctx,
    m: &Migration,
    reader: &Reader,
    r: VhdToRaw,
    mut out: Option<Out>,
) -> Result<Produced, Error> {
    let total = r.output_len();
    let r = std::sync::Arc::new(r);
    ctx.emit(Event::Transfer {
        detail: transfer::Event::Started {
            total,
            pieces: r.blocks(),
            already_done: 0,
            segment_size: total.div_ceil(r.blocks().max(1) as u64),
        },
    });
    let mut blocks = futures::stream::iter(0..r.blocks())
        .map(|i| {
            let (reader, r) = (reader.clone(), std::sync::Arc::clone(&r));
            async move {
                let read = match r.source_of(i) {
                    Some((at, len)) => Some(reader.read(at, len).await?),
                    None => None,
                };
                tokio::task::spawn_blocking(move || r.render(i, read.as_deref()))
                    .await
                    .map_err(|_| Error::Invariant("the converter stopped"))?
                    .map_err(|e| Error::Final(format!("{}: {e}", reader.shown())))
            }
        })
        .buffered(m.plan.concurrency.max(1));
    let (mut digests, mut produced) = (Digests::default(), 0u64);
    while let Some(block) = blocks.next().await {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let bytes = block?;
        digests.update(&bytes);
        produced += bytes.len() as u64;
        send(&mut out, bytes).await?;
        ctx.emit(Event::Transfer {
            detail: transfer::Event::Progress {
                done: produced,
                total,
            },
        });
    }
    if produced != total {
        return Err(Error::Final(format!(
            "{}: the conversion made {produced} bytes where {total} were planned",
            reader.shown()
        )));
    }
    let (sha512, md5) = digests.finish();
    Ok(Produced {
        bytes: produced,
        sha512,
        md5,
    })
}

impl Work {
    /// The state before the first piece; `check_input` for an OpenStack image (its own digests).
    fn new(conversion: Conversion, check_input: bool) -> Self {
        Self {
            conversion,
            digests: Digests::default(),

            produced: 0,
            input: check_input.then(Digests::default),
            segment: 0,
            segment_md5: Md5::new(),
            segment_start: 0,
        }
    }

    /// What was produced, once every piece is in: all of it, and a conversion that saw every
    /// block it planned.
    fn finish(self, total: u64) -> Result<Produced, String> {
        if let Conversion::Qcow2(c) = &self.conversion {
            c.finish().map_err(|e| e.to_string())?;
        }
        if self.produced != total {
            return Err(format!(
                "the conversion made {} bytes where {total} were planned",
                self.produced
            ));
        }
        let (sha512, md5) = self.digests.finish();
        Ok(Produced {
            bytes: self.produced,
            sha512,
            md5,
        })
    }

    /// Checks the source piece at `at` against its segment's md5 and converts it.
    fn take(
        &mut self,
        at: u64,
        bytes: &[u8],
        segments: &[transfer::source::SrcSegment],
        len: u64,
    ) -> Result<Vec<u8>, String> {
        self.check_segments(at, bytes, segments)?;
        if let Some(input) = &mut self.input {
            input.update(bytes);
        }
        let mut made = Vec::with_capacity(bytes.len());
        match &mut self.conversion {
            Conversion::Qcow2(c) => c
                .push(at, bytes, &mut made)
                .map_err(|e| format!("cannot be converted to qcow2: {e}"))?,
            // Rendered block by block by `produce_blocks`, never in file order.
            Conversion::DynamicRaw(_) => {
                return Err("a dynamic VHD to raw is not converted in file order".into());
            }
            Conversion::AsIs => made.extend_from_slice(bytes),
            Conversion::FixedRaw => {
                let end = (len - 512).saturating_sub(at).min(bytes.len() as u64);
                made.extend_from_slice(&bytes[..end as usize]);
            }
        }
        self.digests.update(&made);

        self.produced += made.len() as u64;
        Ok(made)
    }

    /// Feeds the source bytes to the md5 of the segments they belong to, comparing each finished
    /// segment with the md5 its listing gave (an export's segments; a local file has none).
    fn check_segments(
        &mut self,
        mut at: u64,
        mut bytes: &[u8],
        segments: &[transfer::source::SrcSegment],
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            let Some(seg) = segments.get(self.segment) else {
                return Ok(());
            };
            let end = self.segment_start + seg.bytes;
            let n = (end - at).min(bytes.len() as u64) as usize;
            self.segment_md5.update(&bytes[..n]);
            at += n as u64;
            bytes = &bytes[n..];
            if at == end {
                let got = hex::encode(std::mem::take(&mut self.segment_md5).finalize());
                if let Some(want) = seg.md5.as_deref()
                    && !want.eq_ignore_ascii_case(&got)
                {
                    return Err(format!(
                        "segment {}/{} read back with md5 {got}, but its listing says {want}; \
                         resume to read it again",
                        seg.container, seg.name
                    ));
                }
                self.segment += 1;
                self.segment_start = end;
            }
        }
        Ok(())
    }
}

async fn send(out: &mut Option<Out>, bytes: Vec<u8>) -> Result<(), Error> {
    if let Some(tx) = out {
        // A closed channel means the upload ended (refused, cut); its own error is reported.
        tx.send(Ok(bytes.into()))
            .await
            .map_err(|_| Error::Interrupted)?;
    }
    Ok(())
}

/// The source cloud's name, for messages.
fn cloud_name(ctx: &Ctx) -> String {
    ctx.src_cloud
        .as_ref()
        .map_or_else(String::new, |c| c.name.clone())
}
