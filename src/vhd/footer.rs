//! The 512-byte hard disk footer: decoding, the checksum, and the field checks XenServer applies.
//!
//! Layout and rules: the VHD specification (Microsoft, "Virtual Hard Disk Image Format Specification" 1.0), "Hard Disk Footer Format",
//! and xapi-project/blktap `vhd/lib/vhd-util-check.c` (`vhd_util_check_validate_footer`). Every multi-byte field is big-endian. This module only looks at
//! the bytes it is given; where the footer sits in the file and how the two copies compare is the
//! business of [`super::validate`].

use super::findings::{Findings, ImportCode};
use super::geometry::Geometry;

/// Size of the footer in bytes.
pub const LEN: usize = 512;
/// The footer cookie.
pub const COOKIE: &[u8; 8] = b"conectix";
/// The only file format version defined (1.0).
pub const VERSION: u32 = 0x0001_0000;
/// Data offset of a fixed disk: "none", written by every tool as all 64 bits set.
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// Features bit 0: the disk is temporary.
pub const FEATURE_TEMPORARY: u32 = 0x1;
/// Features bit 1: reserved, must always be set.
pub const FEATURE_RESERVED: u32 = 0x2;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01T00:00:00Z).
pub const EPOCH_OFFSET: u64 = 946_684_800;
/// blktap's current creator version (1.3); newer `tap` versions are refused by XenServer.
pub const TAP_MAX_VERSION: u32 = 0x0001_0003;

/// Byte offsets of the footer fields (the VHD specification, "Hard Disk Footer Format").
pub mod off {
    pub const COOKIE: usize = 0;
    pub const FEATURES: usize = 8;
    pub const VERSION: usize = 12;
    pub const DATA_OFFSET: usize = 16;
    pub const TIMESTAMP: usize = 24;
    pub const CREATOR_APP: usize = 28;
    pub const CREATOR_VERSION: usize = 32;
    pub const CREATOR_OS: usize = 36;
    pub const ORIGINAL_SIZE: usize = 40;
    pub const CURRENT_SIZE: usize = 48;
    pub const GEOMETRY: usize = 56;
    pub const DISK_TYPE: usize = 60;
    pub const CHECKSUM: usize = 64;
    pub const UNIQUE_ID: usize = 68;
    pub const SAVED_STATE: usize = 84;
    /// blktap's "hidden" flag; reserved in the spec.
    pub const HIDDEN: usize = 85;
    pub const RESERVED: usize = 86;
}

/// The disk type field (offset 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
    /// 0, 1, 5, 6 or anything else: not importable (code 523).
    Other(u32),
}

impl DiskType {
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            2 => Self::Fixed,
            3 => Self::Dynamic,
            4 => Self::Differencing,
            other => Self::Other(other),
        }
    }

    pub fn raw(self) -> u32 {
        match self {
            Self::Fixed => 2,
            Self::Dynamic => 3,
            Self::Differencing => 4,
            Self::Other(raw) => raw,
        }
    }

    /// Whether the file carries a dynamic header, a BAT and a footer copy at offset 0.
    pub fn is_sparse(self) -> bool {
        matches!(self, Self::Dynamic | Self::Differencing)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Dynamic => "dynamic",
            Self::Differencing => "differencing",
            Self::Other(0) => "none",
            Self::Other(1 | 5 | 6) => "reserved (deprecated)",
            Self::Other(_) => "unknown",
        }
    }
}

/// A decoded footer. The raw bytes are kept because XenServer compares the two copies byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub raw: [u8; LEN],
}

/// Reads a big-endian u32 at a fixed field offset of a fixed-size structure.
pub(crate) fn be_u32(raw: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&raw[at..at + 4]);
    u32::from_be_bytes(b)
}

/// Reads a big-endian u64 at a fixed field offset of a fixed-size structure.
pub(crate) fn be_u64(raw: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&raw[at..at + 8]);
    u64::from_be_bytes(b)
}

/// The VHD checksum: the one's complement of the byte sum, with the checksum field counted as zero.
/// The footer and the dynamic header use the same rule (the VHD specification; qemu `vpc_checksum`).
pub fn checksum(raw: &[u8], checksum_at: usize) -> u32 {
    let sum = raw
        .iter()
        .enumerate()
        .filter(|(i, _)| !(checksum_at..checksum_at + 4).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(u32::from(*b)));
    !sum
}

impl Footer {
    pub fn new(raw: [u8; LEN]) -> Self {
        Self { raw }
    }

    pub fn cookie(&self) -> &[u8] {
        &self.raw[off::COOKIE..off::COOKIE + 8]
    }
    pub fn has_cookie(&self) -> bool {
        self.cookie() == COOKIE
    }
    pub fn features(&self) -> u32 {
        be_u32(&self.raw, off::FEATURES)
    }
    pub fn version(&self) -> u32 {
        be_u32(&self.raw, off::VERSION)
    }
    pub fn data_offset(&self) -> u64 {
        be_u64(&self.raw, off::DATA_OFFSET)
    }
    pub fn timestamp(&self) -> u32 {
        be_u32(&self.raw, off::TIMESTAMP)
    }
    pub fn creator_app(&self) -> [u8; 4] {
        let mut b = [0; 4];
        b.copy_from_slice(&self.raw[off::CREATOR_APP..off::CREATOR_APP + 4]);
        b
    }
    pub fn creator_version(&self) -> u32 {
        be_u32(&self.raw, off::CREATOR_VERSION)
    }
    pub fn creator_os(&self) -> u32 {
        be_u32(&self.raw, off::CREATOR_OS)
    }
    pub fn original_size(&self) -> u64 {
        be_u64(&self.raw, off::ORIGINAL_SIZE)
    }
    pub fn current_size(&self) -> u64 {
        be_u64(&self.raw, off::CURRENT_SIZE)
    }
    pub fn geometry(&self) -> Geometry {
        let mut b = [0; 4];
        b.copy_from_slice(&self.raw[off::GEOMETRY..off::GEOMETRY + 4]);
        Geometry::from_be_bytes(b)
    }
    pub fn disk_type(&self) -> DiskType {
        DiskType::from_raw(be_u32(&self.raw, off::DISK_TYPE))
    }
    pub fn stored_checksum(&self) -> u32 {
        be_u32(&self.raw, off::CHECKSUM)
    }
    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.raw, off::CHECKSUM)
    }
    pub fn unique_id(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b.copy_from_slice(&self.raw[off::UNIQUE_ID..off::UNIQUE_ID + 16]);
        b
    }
    pub fn saved_state(&self) -> u8 {
        self.raw[off::SAVED_STATE]
    }
    pub fn hidden(&self) -> u8 {
        self.raw[off::HIDDEN]
    }

    /// Whether this is a blktap creator whose early versions (0.1 and 1.1) set `hidden` without
    /// recomputing the checksum; XenServer then also accepts the checksum taken with hidden = 0.
    pub fn has_hidden_quirk(&self) -> bool {
        self.creator_app() == *b"tap\0"
            && matches!(self.creator_version(), 0x0000_0001 | 0x0001_0001)
    }

    /// Whether the stored checksum is right, allowing blktap's hidden-byte quirk.
    pub fn checksum_ok(&self) -> bool {
        if self.stored_checksum() == self.computed_checksum() {
            return true;
        }
        if self.has_hidden_quirk() {
            let mut unhidden = self.raw;
            unhidden[off::HIDDEN] = 0;
            return self.stored_checksum() == checksum(&unhidden, off::CHECKSUM);
        }
        false
    }

    /// Whether the creator is one that qemu trusts the CHS product for (qemu ≥ 10: `vpc ` and `qemu`).
    pub fn creator_trusts_chs(&self) -> bool {
        matches!(&self.creator_app(), b"vpc " | b"qemu")
    }

    /// Rewrites the checksum field to match the other bytes. Used by builders and tests.
    pub fn fix_checksum(&mut self) {
        let sum = self.computed_checksum();
        self.raw[off::CHECKSUM..off::CHECKSUM + 4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Creator applications seen in the wild (the VHD specification; qemu `block/vpc.c`; libyal/libvhdi's format documentation).
const KNOWN_CREATORS: [&[u8; 4]; 10] = [
    b"vpc ", b"vs  ", b"win ", b"d2v ", b"d2v\0", b"qemu", b"qem2", b"tap\0", b"CTXS", b"wa\0\0",
];

/// Renders four raw creator or platform bytes readably: printable ASCII as is, others as `\xNN`.
pub fn fourcc(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x20..=0x7e => (b as char).to_string(),
            0 => "\\0".to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Where a footer copy sits, for naming fields and offsets in findings.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Absolute offset of the copy in the file.
    pub base: u64,
    /// "footer" for the end-of-file copy, "footer copy" for the one at offset 0.
    pub name: &'static str,
}

impl Placement {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.name)
    }
    fn at(&self, off: usize) -> u64 {
        self.base + off as u64
    }
}

/// Checks that decide whether this is a VHD footer at all: cookie and checksum (code 396).
/// Returns false when the rest of the footer is not worth reading.
pub fn check_integrity(f: &Footer, at: Placement, findings: &mut Findings) -> bool {
    if !f.has_cookie() {
        findings.problem(
            ImportCode::NotVhd,
            at.field("cookie"),
            at.at(off::COOKIE),
            format!("\"{}\"", fourcc(f.cookie())),
            "\"conectix\"",
            "no VHD footer here",
        );
        return false;
    }
    if !f.checksum_ok() {
        findings.problem(
            ImportCode::NotVhd,
            at.field("checksum"),
            at.at(off::CHECKSUM),
            format!("{:#010x}", f.stored_checksum()),
            format!("{:#010x}", f.computed_checksum()),
            "footer checksum does not match its contents (corrupt or edited footer)",
        );
    }
    true
}

/// The field checks of blktap's footer validation, plus the policy's own (xapi-project/blktap
/// `vhd/lib/vhd-util-check.c`, `vhd_util_check_validate_footer`, and docs/vhd.md). `now_vhd` is the current time in VHD-epoch seconds.
pub fn check_fields(f: &Footer, at: Placement, now_vhd: u64, findings: &mut Findings) {
    if f.version() != VERSION {
        findings.problem(
            ImportCode::NotVhd,
            at.field("version"),
            at.at(off::VERSION),
            format!("{:#010x}", f.version()),
            format!("{VERSION:#010x}"),
            "unknown file format version",
        );
    }
    check_data_offset(f, at, findings);
    check_features(f, at, findings);
    check_disk_type(f, at, findings);
    check_creator(f, at, findings);
    if u64::from(f.timestamp()) > now_vhd + 1800 {
        findings.warning(
            at.field("timestamp"),
            at.at(off::TIMESTAMP),
            format!("{} ({})", f.timestamp(), vhd_time_rfc3339(f.timestamp())),
            "creation time is in the future; XenServer's checker rejects this unless told to ignore timestamps",
        );
    }
    if !f.current_size().is_multiple_of(512) {
        findings.problem(
            ImportCode::Other,
            at.field("current_size"),
            at.at(off::CURRENT_SIZE),
            f.current_size().to_string(),
            "a multiple of 512",
            "the disk size is not a whole number of sectors",
        );
    }
    let computed = Geometry::for_size(f.current_size());
    if f.geometry().packed() > computed.packed() {
        findings.problem(
            ImportCode::Other,
            at.field("geometry"),
            at.at(off::GEOMETRY),
            f.geometry().to_string(),
            format!("at most {computed} (the spec's geometry for the current size)"),
            "geometry too large for the disk size (typical of qemu-img force_size=on); XenServer rejects it",
        );
    }
    check_flags(f, at, findings);
    if f.unique_id() == [0; 16] {
        findings.problem(
            ImportCode::NullUuid,
            at.field("unique_id"),
            at.at(off::UNIQUE_ID),
            "00000000-0000-0000-0000-000000000000",
            "a non-zero UUID",
            "the VHD's unique id is all zeros",
        );
    }
}

fn check_data_offset(f: &Footer, at: Placement, findings: &mut Findings) {
    let found = f.data_offset();
    match f.disk_type() {
        DiskType::Fixed if found != NO_DATA_OFFSET => findings.problem(
            ImportCode::NotVhd,
            at.field("data_offset"),
            at.at(off::DATA_OFFSET),
            format!("{found:#x}"),
            format!("{NO_DATA_OFFSET:#x} (a fixed disk has no dynamic header)"),
            "data offset is wrong for a fixed disk",
        ),
        DiskType::Dynamic | DiskType::Differencing
            if found == NO_DATA_OFFSET || !found.is_multiple_of(512) || found < 512 =>
        {
            findings.problem(
                ImportCode::NotVhd,
                at.field("data_offset"),
                at.at(off::DATA_OFFSET),
                format!("{found:#x}"),
                "a sector-aligned offset of the dynamic header (normally 0x200)",
                "data offset does not point at a dynamic header",
            )
        }
        _ => {}
    }
}

fn check_features(f: &Footer, at: Placement, findings: &mut Findings) {
    let features = f.features();
    if features & FEATURE_RESERVED == 0 {
        findings.problem(
            ImportCode::Other,
            at.field("features"),
            at.at(off::FEATURES),
            format!("{features:#010x}"),
            "bit 0x2 set",
            "the reserved feature bit must always be set",
        );
    }
    if features & !(FEATURE_RESERVED | FEATURE_TEMPORARY) != 0 {
        findings.problem(
            ImportCode::Other,
            at.field("features"),
            at.at(off::FEATURES),
            format!("{features:#010x}"),
            "only bits 0x1 and 0x2",
            "unknown feature bits are set",
        );
    }
    if features & FEATURE_TEMPORARY != 0 {
        findings.warning(
            at.field("features"),
            at.at(off::FEATURES),
            format!("{features:#010x}"),
            "the temporary-disk bit is set: the disk is marked as a candidate for deletion on shutdown",
        );
    }
}

fn check_disk_type(f: &Footer, at: Placement, findings: &mut Findings) {
    match f.disk_type() {
        DiskType::Fixed | DiskType::Dynamic => {}
        DiskType::Differencing => findings.problem(
            ImportCode::HasParent,
            at.field("disk_type"),
            at.at(off::DISK_TYPE),
            "4 (differencing)",
            "2 (fixed) or 3 (dynamic)",
            "this is a differencing disk: its data depends on a parent VHD",
        ),
        DiskType::Other(raw) => findings.problem(
            ImportCode::DiskType,
            at.field("disk_type"),
            at.at(off::DISK_TYPE),
            format!("{raw} ({})", f.disk_type().name()),
            "2 (fixed) or 3 (dynamic)",
            "disk type is neither fixed nor dynamic",
        ),
    }
}

fn check_creator(f: &Footer, at: Placement, findings: &mut Findings) {
    let app = f.creator_app();
    if app == *b"tap\0" && f.creator_version() > TAP_MAX_VERSION {
        findings.problem(
            ImportCode::Other,
            at.field("creator_version"),
            at.at(off::CREATOR_VERSION),
            format!("{:#010x}", f.creator_version()),
            format!("at most {TAP_MAX_VERSION:#010x} for creator \"tap\""),
            "unsupported blktap creator version",
        );
    }
    if !KNOWN_CREATORS.contains(&&app) {
        findings.warning(
            at.field("creator_app"),
            at.at(off::CREATOR_APP),
            format!("\"{}\"", fourcc(&app)),
            "unknown creator application; the image was made by a tool imgferry does not know",
        );
    }
}

fn check_flags(f: &Footer, at: Placement, findings: &mut Findings) {
    for (name, offset, value) in [
        ("saved_state", off::SAVED_STATE, f.saved_state()),
        ("hidden", off::HIDDEN, f.hidden()),
    ] {
        if value > 1 {
            findings.problem(
                ImportCode::Other,
                at.field(name),
                at.at(offset),
                value.to_string(),
                "0 or 1",
                format!("invalid '{name}' flag"),
            );
        }
    }
    if let Some(pos) = f.raw[off::RESERVED..].iter().position(|&b| b != 0) {
        let offset = off::RESERVED + pos;
        findings.problem(
            ImportCode::Other,
            at.field("reserved"),
            at.at(offset),
            format!("{:#04x} at footer byte {offset}", f.raw[offset]),
            "zero (bytes 86..511)",
            "reserved footer bytes are not zero",
        );
    }
}

/// Formats a VHD timestamp (seconds since 2000-01-01 UTC) as RFC 3339.
pub fn vhd_time_rfc3339(ts: u32) -> String {
    let unix = std::time::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH_OFFSET + u64::from(ts));
    humantime::format_rfc3339_seconds(unix).to_string()
}

/// Formats a UUID stored big-endian.
pub fn format_uuid(id: [u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Renders the creator host OS field.
pub fn host_os_name(raw: u32) -> String {
    match &raw.to_be_bytes() {
        b"Wi2k" => "Wi2k (Windows)".into(),
        b"Mac " => "Mac (Macintosh)".into(),
        [0, 0, 0, 0] => "0 (none; XenServer writes this)".into(),
        other => format!("\"{}\"", fourcc(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_skips_its_own_field() {
        let mut raw = [0u8; LEN];
        raw[..8].copy_from_slice(COOKIE);
        raw[64..68].copy_from_slice(&[0xff; 4]);
        let sum: u32 = COOKIE.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(checksum(&raw, 64), !sum);
    }

    #[test]
    fn uuid_and_time_render() {
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(format_uuid(id), "00000000-0000-0000-0000-000000000001");
        assert_eq!(vhd_time_rfc3339(0), "2000-01-01T00:00:00Z");
    }
}
