//! The dynamic disk header ("cxsparse"), the block allocation table (BAT) and blktap's batmap.
//!
//! Layout and rules: the VHD specification (Microsoft, "Virtual Hard Disk Image Format Specification" 1.0) and xapi-project/blktap
//! `vhd/lib/vhd-util-check.c` (its header, differencing-header, BAT and batmap checks). Functions here check bytes they are handed; reading them, and
//! bounding how much is read, is [`super::validate`]'s job.

use super::findings::{Findings, ImportCode};
use super::footer::{DiskType, be_u32, be_u64, checksum, fourcc};

/// Size of the dynamic header in bytes.
pub const LEN: usize = 1024;
pub const COOKIE: &[u8; 8] = b"cxsparse";
pub const VERSION: u32 = 0x0001_0000;
/// The largest block size XenServer's libvhd accepts.
pub const MAX_BLOCK_SIZE: u32 = 2 << 20;
/// A BAT entry that marks an unallocated block.
pub const UNUSED: u32 = u32::MAX;

/// blktap's batmap header cookie and newest supported version (1.2).
pub const BATMAP_COOKIE: &[u8; 8] = b"tdbatmap";
pub const BATMAP_MAX_VERSION: u32 = 0x0001_0002;

/// Byte offsets of the dynamic header fields (the VHD specification, "Dynamic Disk Header Format").
pub mod off {
    pub const COOKIE: usize = 0;
    pub const DATA_OFFSET: usize = 8;
    pub const TABLE_OFFSET: usize = 16;
    pub const VERSION: usize = 24;
    pub const MAX_ENTRIES: usize = 28;
    pub const BLOCK_SIZE: usize = 32;
    pub const CHECKSUM: usize = 36;
    pub const PARENT_UUID: usize = 40;
    pub const PARENT_TIMESTAMP: usize = 56;
    pub const RESERVED1: usize = 60;
    pub const PARENT_NAME: usize = 64;
    pub const LOCATORS: usize = 576;
    pub const RESERVED2: usize = 768;
}

/// A decoded dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub raw: [u8; LEN],
}

impl Header {
    pub fn new(raw: [u8; LEN]) -> Self {
        Self { raw }
    }
    pub fn cookie(&self) -> &[u8] {
        &self.raw[..8]
    }
    pub fn data_offset(&self) -> u64 {
        be_u64(&self.raw, off::DATA_OFFSET)
    }
    pub fn table_offset(&self) -> u64 {
        be_u64(&self.raw, off::TABLE_OFFSET)
    }
    pub fn version(&self) -> u32 {
        be_u32(&self.raw, off::VERSION)
    }
    pub fn max_entries(&self) -> u32 {
        be_u32(&self.raw, off::MAX_ENTRIES)
    }
    pub fn block_size(&self) -> u32 {
        be_u32(&self.raw, off::BLOCK_SIZE)
    }
    pub fn stored_checksum(&self) -> u32 {
        be_u32(&self.raw, off::CHECKSUM)
    }
    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.raw, off::CHECKSUM)
    }
    pub fn fix_checksum(&mut self) {
        let sum = self.computed_checksum();
        self.raw[off::CHECKSUM..off::CHECKSUM + 4].copy_from_slice(&sum.to_be_bytes());
    }
    /// Whether the block size is one XenServer can use: a power of two from 512 bytes to 2 MiB.
    pub fn block_size_ok(&self) -> bool {
        let b = self.block_size();
        b.is_power_of_two() && (512..=MAX_BLOCK_SIZE).contains(&b)
    }
    /// Bytes of the per-block sector bitmap: one bit per sector, rounded up to whole sectors.
    pub fn bitmap_bytes(&self) -> u64 {
        (u64::from(self.block_size()) / 512)
            .div_ceil(8)
            .div_ceil(512)
            * 512
    }
    /// Bytes the BAT occupies on disk, padded to a sector.
    pub fn bat_bytes_padded(&self) -> u64 {
        (u64::from(self.max_entries()) * 4).div_ceil(512) * 512
    }
}

/// Where the header sits and what surrounds it.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Absolute offset of the header (the footer's data offset).
    pub base: u64,
    /// First byte of the end-of-file footer: nothing but the footer may live at or after it.
    pub data_end: u64,
    pub disk_type: DiskType,
    pub current_size: u64,
}

/// Checks that decide whether this is a dynamic header at all (code 396). Returns false when the
/// rest of the header is not worth reading.
pub fn check_integrity(h: &Header, cx: Context, findings: &mut Findings) -> bool {
    let at = |o: usize| cx.base + o as u64;
    if h.cookie() != COOKIE {
        findings.problem(
            ImportCode::NotVhd,
            "header.cookie",
            at(off::COOKIE),
            format!("\"{}\"", fourcc(h.cookie())),
            "\"cxsparse\"",
            "no dynamic disk header where the footer's data offset points",
        );
        return false;
    }
    if h.stored_checksum() != h.computed_checksum() {
        findings.problem(
            ImportCode::NotVhd,
            "header.checksum",
            at(off::CHECKSUM),
            format!("{:#010x}", h.stored_checksum()),
            format!("{:#010x}", h.computed_checksum()),
            "dynamic header checksum does not match its contents",
        );
    }
    if h.version() != VERSION {
        findings.problem(
            ImportCode::NotVhd,
            "header.version",
            at(off::VERSION),
            format!("{:#010x}", h.version()),
            format!("{VERSION:#010x}"),
            "unknown dynamic header version",
        );
    }
    if h.data_offset() != u64::MAX {
        findings.problem(
            ImportCode::NotVhd,
            "header.data_offset",
            at(off::DATA_OFFSET),
            format!("{:#x}", h.data_offset()),
            format!("{:#x}", u64::MAX),
            "the dynamic header's unused data offset must have all 64 bits set",
        );
    }
    true
}

/// Field and layout checks of the header (blktap `vhd_util_check_validate_header` and the
/// differencing-header checks). Returns whether the BAT can be located and examined.
pub fn check_fields(h: &Header, cx: Context, findings: &mut Findings) -> bool {
    let at = |o: usize| cx.base + o as u64;
    let mut bat_usable = true;
    if !h.block_size_ok() {
        findings.problem(
            ImportCode::Other,
            "header.block_size",
            at(off::BLOCK_SIZE),
            h.block_size().to_string(),
            format!("a power of two from 512 to {MAX_BLOCK_SIZE} (2 MiB is the default)"),
            "block size is not one XenServer supports",
        );
        bat_usable = false;
    }
    let table = h.table_offset();
    let table_end = table.saturating_add(u64::from(h.max_entries()) * 4);
    let header_end = cx.base + LEN as u64;
    let overlaps_header = table < header_end && table_end > cx.base;
    if table == 0
        || !table.is_multiple_of(512)
        || table < 512
        || table_end > cx.data_end
        || overlaps_header
    {
        findings.problem(
            ImportCode::Other,
            "header.table_offset",
            at(off::TABLE_OFFSET),
            format!(
                "{table} (BAT of {} entries ending at {table_end})",
                h.max_entries()
            ),
            format!(
                "a sector-aligned offset after the header whose BAT ends by {}",
                cx.data_end
            ),
            "the BAT is misplaced: unaligned, overlapping the header or running past the end of the data",
        );
        bat_usable = false;
    }
    let block = u64::from(h.block_size());
    if block > 0 && u64::from(h.max_entries()) * block < cx.current_size {
        findings.problem(
            ImportCode::Other,
            "header.max_table_entries",
            at(off::MAX_ENTRIES),
            h.max_entries().to_string(),
            format!(
                "at least {} to cover the {} byte disk",
                cx.current_size.div_ceil(block),
                cx.current_size
            ),
            "the BAT is too small for the disk size",
        );
    }
    for (name, range) in [
        ("reserved1", off::RESERVED1..off::PARENT_NAME),
        ("reserved2", off::RESERVED2..LEN),
    ] {
        if let Some(pos) = h.raw[range.clone()].iter().position(|&b| b != 0) {
            findings.problem(
                ImportCode::Other,
                format!("header.{name}"),
                at(range.start + pos),
                format!("{:#04x}", h.raw[range.start + pos]),
                "zero",
                "reserved header bytes are not zero",
            );
        }
    }
    if cx.disk_type == DiskType::Dynamic {
        check_no_parent(h, cx, findings);
    }
    bat_usable
}

/// A dynamic (type 3) disk must carry no parent: blktap rejects any parent field that is set.
fn check_no_parent(h: &Header, cx: Context, findings: &mut Findings) {
    for (name, range) in [
        ("parent_uuid", off::PARENT_UUID..off::PARENT_TIMESTAMP),
        ("parent_timestamp", off::PARENT_TIMESTAMP..off::RESERVED1),
        ("parent_name", off::PARENT_NAME..off::LOCATORS),
        ("parent_locators", off::LOCATORS..off::RESERVED2),
    ] {
        if let Some(pos) = h.raw[range.clone()].iter().position(|&b| b != 0) {
            findings.problem(
                ImportCode::Other,
                format!("header.{name}"),
                cx.base + (range.start + pos) as u64,
                format!(
                    "{:#04x} at header byte {}",
                    h.raw[range.start + pos],
                    range.start + pos
                ),
                "zero on a dynamic disk",
                "a dynamic disk carries parent information; XenServer rejects this",
            );
        }
    }
}

/// blktap's batmap header, which `tap` images of creator version 1.2 and later carry right after
/// the BAT (as qemu and blktap write them).
#[derive(Debug, Clone)]
pub struct BatmapHeader {
    pub raw: [u8; 512],
}

impl BatmapHeader {
    pub fn has_cookie(&self) -> bool {
        &self.raw[..8] == BATMAP_COOKIE
    }
    pub fn map_offset(&self) -> u64 {
        be_u64(&self.raw, 8)
    }
    /// Size of the map in sectors.
    pub fn map_sectors(&self) -> u32 {
        be_u32(&self.raw, 16)
    }
    pub fn version(&self) -> u32 {
        be_u32(&self.raw, 20)
    }
    pub fn checksum(&self) -> u32 {
        be_u32(&self.raw, 24)
    }
}

/// The one's complement of the byte sum of the map (blktap `vhd_checksum_batmap`).
pub fn batmap_checksum(map: &[u8]) -> u32 {
    !map.iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
}

/// Checks the batmap header found at `base`. Returns the map's byte range when it can be read.
pub fn check_batmap_header(
    b: &BatmapHeader,
    base: u64,
    max_entries: u32,
    data_end: u64,
    findings: &mut Findings,
) -> Option<(u64, u64)> {
    let mut ok = true;
    let mut bad = |field: &str, offset: u64, found: String, expected: String, detail: &str| {
        findings.problem(
            ImportCode::Other,
            format!("batmap.{field}"),
            base + offset,
            found,
            expected,
            detail,
        );
        ok = false;
    };
    if b.version() > BATMAP_MAX_VERSION {
        bad(
            "version",
            20,
            format!("{:#010x}", b.version()),
            format!("at most {BATMAP_MAX_VERSION:#010x}"),
            "unsupported batmap version",
        );
    }
    let sectors = u64::from(b.map_sectors());
    if sectors == 0 || sectors * 4096 < u64::from(max_entries) {
        bad(
            "batmap_size",
            16,
            sectors.to_string(),
            format!(
                "at least {} sectors for {max_entries} blocks",
                u64::from(max_entries).div_ceil(4096).max(1)
            ),
            "the batmap is too small for the BAT",
        );
    }
    let start = b.map_offset();
    let end = start.saturating_add(sectors * 512);
    if start == 0 || !start.is_multiple_of(512) || end > data_end {
        bad(
            "batmap_offset",
            8,
            start.to_string(),
            format!("a sector-aligned offset whose map ends by {data_end}"),
            "the batmap is misplaced",
        );
    }
    ok.then_some((start, end))
}

/// Checks a batmap's checksum and that it marks no unallocated block as allocated.
pub fn check_batmap(b: &BatmapHeader, base: u64, map: &[u8], bat: &[u32], findings: &mut Findings) {
    let sum = batmap_checksum(map);
    if sum != b.checksum() {
        findings.problem(
            ImportCode::Other,
            "batmap.checksum",
            base + 24,
            format!("{:#010x}", b.checksum()),
            format!("{sum:#010x}"),
            "batmap checksum does not match the map",
        );
    }
    for (i, &entry) in bat.iter().enumerate() {
        let bit = map
            .get(i / 8)
            .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0);
        if bit && entry == UNUSED {
            findings.problem(
                ImportCode::Other,
                format!("batmap[{i}]"),
                b.map_offset() + (i / 8) as u64,
                "set",
                "clear (the block is unallocated)",
                "the batmap marks an unallocated block as fully allocated",
            );
        }
    }
}

/// Where the BAT lives and what may not be overwritten by blocks.
#[derive(Debug, Clone, Copy)]
pub struct BlockLayout {
    pub table_offset: u64,
    pub block_size: u64,
    pub bitmap_bytes: u64,
    /// The end of all metadata (header, BAT, batmap): blocks must start at or after it.
    pub metadata_end: u64,
    /// The first byte of the end-of-file footer: blocks must end by it.
    pub data_end: u64,
}

/// Statistics about the BAT, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatStats {
    pub allocated: u64,
    /// One past the last byte used by any allocated block, or 0 when none is allocated.
    pub last_block_end: u64,
}

/// Checks every allocated BAT entry: inside the data area, clear of metadata, and not overlapping
/// another block (blktap `vhd_util_check_bat`). Gaps and out-of-order blocks are legal.
pub fn check_blocks(bat: &[u32], l: BlockLayout, findings: &mut Findings) -> BatStats {
    let span = l.bitmap_bytes + l.block_size;
    let mut used: Vec<(u64, usize)> = Vec::new();
    let mut stats = BatStats::default();
    for (i, &entry) in bat.iter().enumerate() {
        if entry == UNUSED {
            continue;
        }
        stats.allocated += 1;
        let start = u64::from(entry) * 512;
        let end = start + span;
        let field = format!("bat[{i}]");
        let at = l.table_offset + 4 * i as u64;
        if start < l.metadata_end {
            findings.problem(
                ImportCode::Other,
                field,
                at,
                format!("sector {entry:#x} (byte {start})"),
                format!(
                    "a sector at or after byte {} (end of metadata)",
                    l.metadata_end
                ),
                "block overwrites the VHD's own metadata",
            );
        } else if end > l.data_end {
            findings.problem(
                ImportCode::Other,
                field,
                at,
                format!("sector {entry:#x} (block ends at byte {end})"),
                format!(
                    "a block ending by byte {} (start of the footer)",
                    l.data_end
                ),
                "block lies beyond the end of the file",
            );
        } else {
            stats.last_block_end = stats.last_block_end.max(end);
            used.push((start, i));
        }
    }
    used.sort_unstable();
    for pair in used.windows(2) {
        let [(a_start, a), (b_start, b)] = [pair[0], pair[1]];
        if b_start < a_start + span {
            findings.problem(
                ImportCode::Other,
                format!("bat[{b}]"),
                l.table_offset + 4 * b as u64,
                format!("sector {:#x}", b_start / 512),
                format!(
                    "a block clear of block {a} (sector {:#x}..{:#x})",
                    a_start / 512,
                    (a_start + span) / 512
                ),
                "two blocks overlap",
            );
        }
    }
    stats
}
