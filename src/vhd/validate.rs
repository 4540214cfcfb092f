//! The validator: reads the few regions of a VHD that matter, runs every check, and predicts the
//! import verdict.
//!
//! Reads, in order and only as far as they make sense: the end-of-file footer, the footer copy at
//! offset 0, the dynamic header, the BAT and (for blktap images) the batmap. What is read is bounded
//! by constants and by the object's length, never by a size field alone, so a hostile or corrupt
//! file cannot make validation allocate or read much. A 40 GiB dynamic image costs about 80 KiB of
//! reads (its BAT); a fixed one, one footer.

use std::time::{SystemTime, UNIX_EPOCH};

use super::dynamic::{self, BatmapHeader, BlockLayout, Header};
use super::findings::{Findings, ImportCode, Verdict};
use super::footer::{self, DiskType, Footer, Placement};
use super::geometry;
use super::report::{
    BatSummary, Creator, Limits, Parent, ReadStats, Report, Timestamp, VirtualSize,
};
use super::source::{ByteSource, Counting};
use super::{Error, GIB};

/// The most BAT entries examined: 2^20 entries (a 4 MiB table) covers 2 TiB at 2 MiB blocks, more
/// than the 2040 GiB the VHD format can hold, so only a broken or hostile header exceeds it.
pub const MAX_BAT_ENTRIES: u32 = 1 << 20;

/// Rackspace's import limit, virtual and physical: 160 GB since March 2019
/// (rackerlabs/rackspace-how-to PRs #3219 and #3344: "the image import limit has been raised from
/// 40GB to 160GB"), read as GiB like the 40 GB before it (171,798,691,840 bytes).
pub const IMPORT_LIMIT: u64 = 160 * GIB;

/// Limits and the clock the checks use.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest accepted virtual size in bytes, inclusive (default [`IMPORT_LIMIT`]).
    pub max_virtual_size: u64,
    /// Largest accepted physical size in bytes, inclusive (default [`IMPORT_LIMIT`]).
    pub max_physical_size: u64,
    /// "Now", for the future-timestamp warning; injectable for tests.
    pub now: SystemTime,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_virtual_size: IMPORT_LIMIT,
            max_physical_size: IMPORT_LIMIT,
            now: SystemTime::now(),
        }
    }
}

impl Policy {
    fn now_vhd(&self) -> u64 {
        let unix = self
            .now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        unix.saturating_sub(footer::EPOCH_OFFSET)
    }
}

/// Validates the VHD behind `source` and predicts the import verdict.
///
/// Every defect found is listed in the report. An `Err` means the source itself failed (an I/O or
/// network error), not that the VHD is bad.
pub async fn validate<S: ByteSource>(source: &S, policy: &Policy) -> Result<Report, Error> {
    let src = Counting::new(source);
    let mut run = Run {
        src: &src,
        policy,
        findings: Findings::default(),
        report: empty_report(source.len(), policy),
    };
    run.all().await?;
    let (reads, bytes_read) = src.totals();
    let Run {
        findings,
        mut report,
        ..
    } = run;
    let (problems, warnings) = findings.close();
    report.verdict = Verdict::from_problems(&problems);
    report.problems = problems;
    report.warnings = warnings;
    report.io = ReadStats { reads, bytes_read };
    Ok(report)
}

fn empty_report(file_size: u64, policy: &Policy) -> Report {
    Report {
        verdict: Verdict::from_problems(&[]),
        disk_type: None,
        disk_type_raw: None,
        virtual_size: None,
        physical_size: None,
        file_size,
        creator: None,
        unique_id: None,
        timestamp: None,
        geometry: None,
        original_size: None,
        short_footer: false,
        block_size: None,
        bat: None,
        parent: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        limits: Limits {
            max_virtual_size: policy.max_virtual_size,
            max_physical_size: policy.max_physical_size,
        },
        io: ReadStats::default(),
    }
}

/// One validation in progress.
struct Run<'a, S> {
    src: &'a Counting<'a, S>,
    policy: &'a Policy,
    findings: Findings,
    report: Report,
}

impl<S: ByteSource> Run<'_, S> {
    async fn read(&self, what: &'static str, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let bytes = self
            .src
            .read_at(offset, len)
            .await
            .map_err(|source| Error::Read {
                object: self.src.describe(),
                what,
                offset,
                len,
                source,
            })?;
        if bytes.len() != len {
            return Err(Error::ShortRead {
                object: self.src.describe(),
                what,
                offset,
                len,
                got: bytes.len(),
            });
        }
        Ok(bytes)
    }

    async fn all(&mut self) -> Result<(), Error> {
        let Some((primary, footer_len)) = self.locate_footer().await? else {
            return Ok(());
        };
        let len = self.src.len();
        let data_end = len - footer_len;
        let at_end = Placement {
            base: data_end,
            name: "footer",
        };
        footer::check_integrity(&primary, at_end, &mut self.findings);
        footer::check_fields(&primary, at_end, self.policy.now_vhd(), &mut self.findings);
        self.describe_footer(&primary, data_end);
        self.check_sizes();
        match primary.disk_type() {
            DiskType::Fixed => self.check_fixed(&primary, data_end),
            DiskType::Dynamic | DiskType::Differencing => {
                self.check_sparse(&primary, data_end).await?
            }
            DiskType::Other(_) => {}
        }
        Ok(())
    }

    /// Finds the primary footer at the end of the file: the last 512 bytes, or the legacy 511-byte
    /// form. Returns the footer and its length, or `None` (with a 396 problem) when there is none.
    async fn locate_footer(&mut self) -> Result<Option<(Footer, u64)>, Error> {
        let len = self.src.len();
        if len < 511 {
            self.findings.problem(
                ImportCode::NotVhd,
                "file",
                0,
                format!("{len} bytes"),
                "at least 512 bytes (one footer)",
                "file is too small to be a VHD",
            );
            return Ok(None);
        }
        let footer_len: u64 = if len % 512 == 511 { 511 } else { 512 };
        let at = len - footer_len;
        let mut raw = [0u8; footer::LEN];
        raw[..footer_len as usize]
            .copy_from_slice(&self.read("footer", at, footer_len as usize).await?);
        let found = Footer::new(raw);
        if found.has_cookie() && (len.is_multiple_of(512) || footer_len == 511) {
            if footer_len == 511 {
                self.report.short_footer = true;
                self.findings.warning(
                    "footer",
                    at,
                    "511-byte footer",
                    "legacy footer written by products older than Virtual PC 2004; XenServer accepts it",
                );
            }
            return Ok(Some((found, footer_len)));
        }
        self.explain_missing_footer(&found, at).await?;
        Ok(None)
    }

    /// Says as precisely as possible why there is no footer at the end.
    async fn explain_missing_footer(&mut self, found: &Footer, at: u64) -> Result<(), Error> {
        let len = self.src.len();
        // A 511-byte file has no full first sector: read what there is.
        let head = self.read("first sector", 0, len.min(512) as usize).await?;
        let detail = if head.starts_with(b"vhdxfile") {
            "this is a VHDX file (a different format); convert it with `qemu-img convert -O vpc`"
                .to_string()
        } else if !len.is_multiple_of(512) && found.has_cookie() {
            format!("the file length {len} is not a multiple of 512: bytes follow the footer")
        } else if head.starts_with(footer::COOKIE) {
            "there is a footer copy at offset 0 but none at the end: the file looks truncated or has \
             trailing bytes (an incomplete download?)"
                .to_string()
        } else {
            "no VHD footer at the end of the file: this is not a VHD (a raw image?)".to_string()
        };
        self.findings.problem(
            ImportCode::NotVhd,
            "footer.cookie",
            at,
            format!("\"{}\"", footer::fourcc(found.cookie())),
            "\"conectix\"",
            detail,
        );
        Ok(())
    }

    fn describe_footer(&mut self, f: &Footer, data_end: u64) {
        let r = &mut self.report;
        let kind = f.disk_type();
        r.disk_type = Some(kind.name());
        r.disk_type_raw = Some(kind.raw());
        r.physical_size = Some(data_end);
        let version = f.creator_version();
        r.creator = Some(Creator {
            application: footer::fourcc(&f.creator_app()),
            version: format!("{}.{}", version >> 16, version & 0xffff),
            version_raw: version,
            host_os: footer::host_os_name(f.creator_os()),
        });
        r.unique_id = Some(footer::format_uuid(f.unique_id()));
        r.timestamp = Some(Timestamp {
            raw: f.timestamp(),
            rfc3339: footer::vhd_time_rfc3339(f.timestamp()),
        });
        r.geometry = Some(f.geometry());
        r.original_size = Some(f.original_size());
        r.virtual_size = Some(virtual_size(f));
    }

    /// The 413 and 609 checks. Both limits are inclusive.
    fn check_sizes(&mut self) {
        if let Some(v) = &self.report.virtual_size
            && v.bytes > self.policy.max_virtual_size
        {
            self.findings.problem(
                ImportCode::VirtualSize,
                "footer.current_size",
                self.report.physical_size.unwrap_or(0) + footer::off::CURRENT_SIZE as u64,
                format!("{} bytes ({})", v.bytes, v.derived_from),
                format!("at most {} bytes", self.policy.max_virtual_size),
                "virtual size exceeds the import limit",
            );
        }
        if let Some(p) = self.report.physical_size
            && p > self.policy.max_physical_size
        {
            self.findings.problem(
                ImportCode::PhysicalSize,
                "file",
                0,
                format!("{p} bytes (file length without the footer)"),
                format!("at most {} bytes", self.policy.max_physical_size),
                "physical size exceeds the import limit",
            );
        }
    }

    /// A fixed disk is its data followed by the footer: the data must be exactly the disk size.
    fn check_fixed(&mut self, f: &Footer, data_end: u64) {
        if data_end != f.current_size() {
            self.findings.problem(
                ImportCode::Other,
                "footer.current_size",
                data_end + footer::off::CURRENT_SIZE as u64,
                f.current_size().to_string(),
                format!("{data_end} (the bytes before the footer)"),
                "a fixed disk's data length differs from its declared size",
            );
        }
    }

    async fn check_sparse(&mut self, primary: &Footer, data_end: u64) -> Result<(), Error> {
        // A bad data offset was reported by the footer checks; the header cannot be found then.
        let header_at = primary.data_offset();
        if header_at == footer::NO_DATA_OFFSET || !header_at.is_multiple_of(512) || header_at < 512
        {
            return Ok(());
        }
        if data_end < 512 || header_at.saturating_add(dynamic::LEN as u64) > data_end {
            self.findings.problem(
                ImportCode::NotVhd,
                "footer.data_offset",
                data_end + footer::off::DATA_OFFSET as u64,
                header_at.to_string(),
                format!("a dynamic header that ends by byte {data_end}"),
                "the dynamic header lies beyond the end of the file",
            );
            return Ok(());
        }
        self.check_footer_copy(primary).await?;
        let mut raw = [0u8; dynamic::LEN];
        raw.copy_from_slice(&self.read("dynamic header", header_at, dynamic::LEN).await?);
        let header = Header::new(raw);
        let cx = dynamic::Context {
            base: header_at,
            data_end,
            disk_type: primary.disk_type(),
            current_size: primary.current_size(),
        };
        if !dynamic::check_integrity(&header, cx, &mut self.findings) {
            return Ok(());
        }
        self.report.block_size = Some(header.block_size());
        if primary.disk_type() == DiskType::Differencing {
            self.report.parent = Some(parent_of(&header));
        }
        if dynamic::check_fields(&header, cx, &mut self.findings) {
            self.check_bat(primary, &header, data_end).await?;
        }
        Ok(())
    }

    /// Dynamic disks keep a copy of the footer at offset 0; XenServer requires it valid and
    /// identical to the end copy, except for blktap's hidden-byte quirk.
    async fn check_footer_copy(&mut self, primary: &Footer) -> Result<(), Error> {
        let mut raw = [0u8; footer::LEN];
        raw.copy_from_slice(&self.read("footer copy", 0, footer::LEN).await?);
        let copy = Footer::new(raw);
        let at_start = Placement {
            base: 0,
            name: "footer_copy",
        };
        if copy.raw == primary.raw || !footer::check_integrity(&copy, at_start, &mut self.findings)
        {
            return Ok(());
        }
        let quirk = primary.has_hidden_quirk();
        let ignored = |i: &usize| {
            quirk
                && ((footer::off::CHECKSUM..footer::off::CHECKSUM + 4).contains(i)
                    || *i == footer::off::HIDDEN)
        };
        let Some(first) = (0..footer::LEN).find(|i| !ignored(i) && copy.raw[*i] != primary.raw[*i])
        else {
            return Ok(());
        };
        self.findings.problem(
            ImportCode::Other,
            "footer_copy",
            first as u64,
            format!("{:#04x} at footer byte {first}", copy.raw[first]),
            format!("{:#04x}, as in the end-of-file footer", primary.raw[first]),
            "the footer copy at offset 0 differs from the footer at the end of the file",
        );
        // Field defects that only the copy has are worth naming too.
        let mut own = Findings::default();
        footer::check_fields(&copy, at_start, self.policy.now_vhd(), &mut own);
        let (problems, _) = own.close();
        for p in problems {
            let suffix = p.finding.field.trim_start_matches("footer_copy");
            let also_in_primary = self.findings.problems.iter().any(|q| {
                q.finding.field == format!("footer{suffix}") && q.finding.found == p.finding.found
            });
            if !also_in_primary {
                let f = p.finding;
                self.findings
                    .problem(p.code, f.field, f.offset, f.found, f.expected, f.detail);
            }
        }
        Ok(())
    }

    async fn check_bat(
        &mut self,
        primary: &Footer,
        header: &Header,
        data_end: u64,
    ) -> Result<(), Error> {
        let entries = header.max_entries();
        let examined = entries.min(MAX_BAT_ENTRIES);
        if entries > MAX_BAT_ENTRIES {
            self.findings.problem(
                ImportCode::Other,
                "header.max_table_entries",
                primary.data_offset() + dynamic::off::MAX_ENTRIES as u64,
                entries.to_string(),
                format!("at most {MAX_BAT_ENTRIES}"),
                "the BAT is larger than any importable disk needs; only its start was examined",
            );
        }
        let table = header.table_offset();
        let bytes = self.read("BAT", table, examined as usize * 4).await?;
        let bat: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut metadata_end =
            (primary.data_offset() + dynamic::LEN as u64).max(table + header.bat_bytes_padded());
        if let Some(batmap_end) = self.check_batmap(primary, header, &bat, data_end).await? {
            metadata_end = metadata_end.max(batmap_end);
        }
        let layout = BlockLayout {
            table_offset: table,
            block_size: u64::from(header.block_size()),
            bitmap_bytes: header.bitmap_bytes(),
            metadata_end,
            data_end,
        };
        let stats = dynamic::check_blocks(&bat, layout, &mut self.findings);
        self.report.bat = Some(BatSummary {
            entries,
            allocated: stats.allocated,
            examined: u64::from(examined),
        });
        Ok(())
    }

    /// blktap images of creator version 1.2 or later carry a batmap after the BAT; 1.1 may. Returns
    /// the end of the batmap when there is one, so blocks can be checked against it.
    async fn check_batmap(
        &mut self,
        primary: &Footer,
        header: &Header,
        bat: &[u32],
        data_end: u64,
    ) -> Result<Option<u64>, Error> {
        let version = primary.creator_version();
        let expected = primary.creator_app() == *b"tap\0" && version >= 0x0001_0002;
        let probed = primary.creator_app() == *b"tap\0" && version == 0x0001_0001;
        if !expected && !probed {
            return Ok(None);
        }
        let at = header.table_offset() + header.bat_bytes_padded();
        let raw = if at + 512 <= data_end {
            let mut raw = [0u8; 512];
            raw.copy_from_slice(&self.read("batmap header", at, 512).await?);
            Some(BatmapHeader { raw })
        } else {
            None
        };
        let Some(b) = raw.filter(BatmapHeader::has_cookie) else {
            if expected {
                self.findings.problem(
                    ImportCode::Other,
                    "batmap.cookie",
                    at,
                    "no batmap header",
                    "\"tdbatmap\" (blktap 1.2+ images carry a batmap after the BAT)",
                    "XenServer cannot find the end of this image's metadata",
                );
            }
            return Ok(None);
        };
        let Some((start, end)) = dynamic::check_batmap_header(
            &b,
            at,
            header.max_entries(),
            data_end,
            &mut self.findings,
        ) else {
            return Ok(Some(at + 512));
        };
        // The map needs one bit per examined entry; anything beyond that is capped, not trusted.
        let cap = (u64::from(MAX_BAT_ENTRIES) / 8).max(512);
        let map = self
            .read("batmap", start, (end - start).min(cap) as usize)
            .await?;
        dynamic::check_batmap(&b, at, &map, bat, &mut self.findings);
        Ok(Some(end.max(at + 512)))
    }
}

/// The virtual size: the current size, or for creators qemu trusts the CHS product of, the larger
/// of the two (qemu `block/vpc.c`, docs/vhd.md).
fn virtual_size(f: &Footer) -> VirtualSize {
    let current = f.current_size();
    let chs = f.geometry().product_bytes();
    let use_chs = f.creator_trusts_chs() && f.geometry() != geometry::MAX && chs > current;
    let app = footer::fourcc(&f.creator_app());
    let (bytes, derived_from, explanation) = if use_chs {
        (
            chs,
            "chs",
            format!(
                "creator \"{app}\": qemu sizes the disk by its geometry {}, larger than current size",
                f.geometry()
            ),
        )
    } else if f.creator_trusts_chs() {
        (
            current,
            "current_size",
            format!("creator \"{app}\": the larger of current size and geometry"),
        )
    } else {
        (
            current,
            "current_size",
            "footer current size (offset 48), as XenServer uses".to_string(),
        )
    };
    VirtualSize {
        bytes,
        derived_from,
        current_size: current,
        chs_product: chs,
        explanation,
    }
}

/// The parent fields of a differencing disk's header, for the report.
fn parent_of(h: &Header) -> Parent {
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.raw[dynamic::off::PARENT_UUID..dynamic::off::PARENT_UUID + 16]);
    let units: Vec<u16> = h.raw[dynamic::off::PARENT_NAME..dynamic::off::LOCATORS]
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Parent {
        unique_id: footer::format_uuid(id),
        name: String::from_utf16_lossy(&units),
    }
}
