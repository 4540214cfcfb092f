//! Images made by the real `qemu-img`, validated from files on disk: fixed, dynamic, `convert -O vpc`
//! of a raw file with data, and the surprising sizes (docs/vhd.md).
//! Each test skips with a printed reason when qemu-img is absent outside CI.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use imgferry::vhd::footer::off;

use crate::support::{check_file, code, explain, qemu_img, run_qemu};

use crate::support::MIB;

/// D20 as the reference makes it: a 20 MiB raw file with data in blocks 0 and 4, converted.
fn make_d20(dir: &Path) -> PathBuf {
    let raw = dir.join("d20.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    f.set_len(20 * MIB).unwrap();
    f.write_all(&[0x5A; 4096]).unwrap();
    f.seek(SeekFrom::Start(8 * MIB + 12345)).unwrap();
    f.write_all(b"block four has data").unwrap();
    drop(f);
    run_qemu(
        dir,
        &["convert", "-f", "raw", "-O", "vpc", "d20.raw", "d20.vhd"],
    );
    dir.join("d20.vhd")
}

fn expect(path: &Path, want: Option<u16>) {
    let report = check_file(path);
    assert_eq!(
        code(&report),
        want,
        "{}: {}",
        path.display(),
        explain(&report)
    );
}

#[test]
fn qemu_made_images_get_the_reference_verdicts() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, file, want) in [
        (
            &[
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                "subformat=fixed",
                "f10.vhd",
                "10M",
            ][..],
            "f10.vhd",
            None,
        ),
        (
            &["create", "-q", "-f", "vpc", "d100.vhd", "100M"][..],
            "d100.vhd",
            None,
        ),
        (
            &["create", "-q", "-f", "vpc", "x50.vhd", "50G"][..],
            "x50.vhd",
            Some(413),
        ),
        (
            &["create", "-q", "-f", "vpc", "y40.vhd", "40G"][..],
            "y40.vhd",
            Some(413),
        ),
        (
            &[
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                "force_size=on",
                "q2.vhd",
                "10M",
            ][..],
            "q2.vhd",
            Some(111),
        ),
        (
            &["create", "-q", "-f", "vhdx", "v.vhdx", "10M"][..],
            "v.vhdx",
            Some(396),
        ),
        (
            &[
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                "subformat=fixed",
                "z41.vhd",
                "41G",
            ][..],
            "z41.vhd",
            Some(413),
        ),
    ] {
        run_qemu(d, args);
        expect(&d.join(file), want);
    }
    let report = check_file(&d.join("f10.vhd"));
    assert_eq!(
        report.virtual_size.as_ref().map(|v| v.bytes),
        Some(10_514_432)
    );
    let report = check_file(&d.join("y40.vhd"));
    assert_eq!(
        report.virtual_size.as_ref().map(|v| v.bytes),
        Some(42_951_106_560)
    );
    let report = check_file(&d.join("z41.vhd"));
    assert!(
        report.problems.iter().any(|p| p.code.number() == 609),
        "41G fixed is also 609"
    );
}

#[test]
fn qemu_converted_dynamic_passes_and_matches_the_builder_layout() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d20 = make_d20(dir.path());
    let report = check_file(&d20);
    assert_eq!(code(&report), None, "{}", explain(&report));
    assert_eq!(report.file_size, 4_197_888);
    assert_eq!(
        report.bat.as_ref().map(|b| (b.allocated, b.entries)),
        Some((2, 11))
    );
    assert_eq!(
        report.virtual_size.as_ref().map(|v| v.bytes),
        Some(20_994_048)
    );
    // The fixed flavour of the same data.
    run_qemu(
        dir.path(),
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=fixed",
            "d20.raw",
            "f20.vhd",
        ],
    );
    expect(&dir.path().join("f20.vhd"), None);
}

/// Copies `src` to `dst`, then overwrites bytes at `at` (negative counts from the end).
fn corrupt(src: &Path, dst: &Path, at: i64, bytes: &[u8]) -> PathBuf {
    std::fs::copy(src, dst).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(dst).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    f.seek(SeekFrom::Start((if at < 0 { len + at } else { at }) as u64))
        .unwrap();
    f.write_all(bytes).unwrap();
    dst.to_path_buf()
}

#[test]
fn defects_in_qemu_made_files_are_caught() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let d20 = make_d20(d);
    // #11: end footer byte flipped (qemu itself would accept this file).
    expect(
        &corrupt(&d20, &d.join("c11.vhd"), -512 + 100, &[0xFF]),
        Some(396),
    );
    // #12: the copy at offset 0 flipped.
    expect(&corrupt(&d20, &d.join("c12.vhd"), 100, &[0xFF]), Some(396));
    // #19: BAT[4] = BAT[0].
    expect(
        &corrupt(&d20, &d.join("c19.vhd"), 1536 + 16, &0x4u32.to_be_bytes()),
        Some(111),
    );
    // #22: header checksum wrong (qemu and libvhdi accept this).
    expect(
        &corrupt(&d20, &d.join("c22.vhd"), 512 + 36, &[0]),
        Some(396),
    );
    // #14: end footer removed.
    let cut = d.join("c14.vhd");
    std::fs::copy(&d20, &cut).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(4_197_888 - 512).unwrap();
    expect(&cut, Some(396));
    // #31: null UUID in both copies, with checksums recomputed.
    let nulled = d.join("c31.vhd");
    std::fs::copy(&d20, &nulled).unwrap();
    let mut bytes = std::fs::read(&nulled).unwrap();
    let len = bytes.len();
    for base in [0, len - 512] {
        let mut footer =
            imgferry::vhd::footer::Footer::new(bytes[base..base + 512].try_into().unwrap());
        footer.raw[off::UNIQUE_ID..off::UNIQUE_ID + 16].fill(0);
        footer.fix_checksum();
        bytes[base..base + 512].copy_from_slice(&footer.raw);
    }
    std::fs::write(&nulled, bytes).unwrap();
    expect(&nulled, Some(614));
}
