//! Property tests of the validator.
//!
//! 1. Any single-byte change to either footer copy or to the dynamic header is reported. With the
//!    checksum left alone this holds for every byte, because the checksums cover them all.
//! 2. The same change with the checksum recomputed (so only field rules can catch it) is reported
//!    unless it lands in a field the policy deliberately leaves unconstrained; those are named in
//!    [`footer_field_is_ignored`] and [`header_field_is_ignored`], with the reason.
//! 3. Arbitrary input, and valid images with arbitrary bytes overwritten anywhere, never make the
//!    validator panic, hang, read outside the object or read more than a small multiple of it.

use std::sync::LazyLock;

use imgferry::vhd::build::{Builder, Image, Kind, Style};
use imgferry::vhd::footer::off;
use proptest::prelude::*;

use crate::support::{check, explain};

use crate::support::MIB;

/// A qemu-style dynamic disk, a XenServer-style one and a fixed one, built once.
static IMAGES: LazyLock<[Image; 3]> = LazyLock::new(|| {
    [
        Builder::new(Kind::Dynamic, Style::Qemu, 20 * MIB)
            .block(0, 1)
            .block(4, 2)
            .build(),
        Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
            .block(0, 3)
            .block(1, 4)
            .build(),
        Builder::new(Kind::Fixed, Style::Qemu, 4 * MIB)
            .block(0, 5)
            .build(),
    ]
});

fn images() -> &'static [Image; 3] {
    &IMAGES
}

/// Footer fields whose values XenServer's checker and imgferry's policy deliberately do not pin down,
/// so a re-checksummed change there can be legal:
/// - timestamp (24..28): any past time is fine (a future one only warns);
/// - creator application, version and host OS (28..40): informational (an unknown creator warns;
///   `qemu` → `qem2` is another known creator);
/// - original size (40..48): informational; XenServer and imgferry use the current size;
/// - current size (48..56): a larger size that the BAT still covers, or a smaller one whose geometry
///   still fits, is a different but valid disk (fixed disks: always caught by the length check);
/// - geometry (56..60): a smaller geometry is legal (only "too large" is rejected);
/// - unique id (68..84): any non-zero value is a valid id;
/// - saved state and hidden (84, 85): 0 and 1 are both legal.
fn footer_field_is_ignored(i: usize) -> bool {
    matches!(i, 24..=59 | 68..=85)
}

/// Header fields the policy leaves open: max_table_entries (28..32) may grow as long as the larger
/// table still fits in the padding before the first block. The checksum (36..40) is not a field
/// change here: recomputing it undoes the edit.
fn header_field_is_ignored(i: usize) -> bool {
    matches!(i, 28..=31 | 36..=39)
}

#[derive(Debug, Clone, Copy)]
enum Region {
    EndFooter,
    CopyFooter,
    Header,
}

fn region() -> impl Strategy<Value = Region> {
    prop_oneof![
        Just(Region::EndFooter),
        Just(Region::CopyFooter),
        Just(Region::Header)
    ]
}

fn flip(img: &mut Image, region: Region, at: usize, mask: u8, fix: bool) -> bool {
    match (region, img.kind) {
        (Region::EndFooter, _) => {
            img.edit_end_footer(fix, |f| f[at % 512] ^= mask);
        }
        (Region::CopyFooter, Kind::Dynamic) => {
            img.edit_copy_footer(fix, |f| f[at % 512] ^= mask);
        }
        (Region::Header, Kind::Dynamic) => {
            img.edit_header(fix, |h| h[at % 1024] ^= mask);
        }
        _ => return false,
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_single_byte_change_is_reported(which in 0usize..3, region in region(), at in 0usize..1024, mask in 1u8..) {
        let mut img = images()[which].clone();
        prop_assume!(flip(&mut img, region, at, mask, false));
        let report = check(&img.bytes);
        prop_assert!(!report.verdict.accepted, "{region:?} byte {at} ^ {mask:#x} not reported:\n{}", explain(&report));
    }

    #[test]
    fn field_changes_are_reported_unless_deliberately_ignored(
        which in 0usize..3, in_header in any::<bool>(), at in 0usize..1024, mask in 1u8..,
    ) {
        let mut img = images()[which].clone();
        let (ignored, applied) = if in_header {
            (header_field_is_ignored(at), flip(&mut img, Region::Header, at, mask, true))
        } else {
            // The same edit to both footer copies, so only the field rules can notice it.
            let at = at % 512;
            img.edit_footers(true, |f| f[at] ^= mask);
            (footer_field_is_ignored(at) || (off::CHECKSUM..off::CHECKSUM + 4).contains(&at), true)
        };
        prop_assume!(applied && !ignored);
        let report = check(&img.bytes);
        let reported = !report.problems.is_empty() || !report.warnings.is_empty();
        prop_assert!(reported, "header={in_header} byte {at} ^ {mask:#x} not reported:\n{}", explain(&report));
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overread(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        let report = check(&bytes);
        prop_assert!(report.io.bytes_read <= 4 * bytes.len() as u64 + 4096);
    }

    #[test]
    fn corrupted_images_never_panic_or_overread(
        which in 0usize..3,
        edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16),
        from_end in any::<bool>(),
    ) {
        let mut img = images()[which].clone();
        let len = img.bytes.len();
        for (at, value) in edits {
            // Half the edits land in the metadata at the start, half in the footer region at the end.
            let i = if from_end { len - 1 - at % 512 } else { at % len };
            img.bytes[i] = value;
        }
        let report = check(&img.bytes);
        prop_assert!(report.io.bytes_read <= 4 * len as u64 + 4096);
    }
}

/// Found by `cargo fuzz`: a 511-byte file without a footer made the validator read a 512-byte first
/// sector beyond the end.
#[test]
fn a_511_byte_non_vhd_is_rejected_not_overread() {
    let report = check(&[0x42; 511]);
    assert_eq!(report.verdict.code.map(|c| c.number()), Some(396));
}

/// Headers that claim absurd sizes must not make the validator read or allocate by the claim.
#[test]
fn absurd_size_fields_are_bounded() {
    use imgferry::vhd::build::{put_u32, put_u64};
    use imgferry::vhd::dynamic::off as h;
    let base = Builder::new(Kind::Dynamic, Style::Qemu, 20 * MIB).build();
    let mut cases = Vec::new();
    let mut big_bat = base.clone();
    big_bat.edit_header(true, |raw| put_u32(raw, h::MAX_ENTRIES, u32::MAX));
    cases.push(big_bat);
    let mut far_table = base.clone();
    far_table.edit_header(true, |raw| put_u64(raw, h::TABLE_OFFSET, u64::MAX - 511));
    cases.push(far_table);
    let mut huge_disk = base.clone();
    huge_disk.edit_footers(true, |f| put_u64(f, off::CURRENT_SIZE, 1 << 63));
    cases.push(huge_disk);
    let mut far_header = base;
    far_header.edit_footers(true, |f| put_u64(f, off::DATA_OFFSET, u64::MAX - 511));
    cases.push(far_header);
    for img in cases {
        let report = check(&img.bytes);
        assert!(!report.verdict.accepted, "{}", explain(&report));
        assert!(
            report.io.bytes_read < 8192,
            "read {} bytes:\n{}",
            report.io.bytes_read,
            explain(&report)
        );
    }
}
