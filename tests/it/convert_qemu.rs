//! The streaming VHD → qcow2 converter checked by the real qemu-img: its output passes
//! `qemu-img check` and `qemu-img compare` finds it identical to the VHD it came from, for images
//! made by qemu-img and by the XenServer-style builder (blocks out of order, a batmap, gaps).
//! Each test skips with a printed reason when qemu-img is absent outside CI.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use imgferry::vhd::build::{Builder, Kind, Style};

use crate::support::{MIB, qcow2_of, qemu_img, run_qemu};

/// Converts the file `vhd` into the file `qcow2` ([`qcow2_of`]), returning its length.
fn convert(vhd: &Path, qcow2: &Path) -> u64 {
    let out = qcow2_of(&std::fs::read(vhd).unwrap());
    std::fs::write(qcow2, &out).unwrap();
    out.len() as u64
}

fn qemu(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-img {args:?}: {text}");
    text
}

fn check_and_compare(dir: &Path, vhd: &str) {
    let qcow2 = format!("{vhd}.qcow2");
    let len = convert(&dir.join(vhd), &dir.join(&qcow2));
    let check = qemu(dir, &["check", "-f", "qcow2", &qcow2]);
    assert!(check.contains("No errors were found"), "{check}");
    let same = qemu(dir, &["compare", "-f", "vpc", "-F", "qcow2", vhd, &qcow2]);
    assert!(same.contains("Images are identical"), "{same}");
    let vhd_len = std::fs::metadata(dir.join(vhd)).unwrap().len();
    eprintln!("{vhd}: VHD {vhd_len} bytes, qcow2 {len} bytes");
}

#[test]
fn qemu_made_vhds_convert_to_identical_clean_qcow2() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Data at the start, in the middle of a block, across a block boundary and at the very end.
    let raw = d.join("disk.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    f.set_len(100 * MIB).unwrap();
    for (at, fill) in [
        (0, 1u8),
        (8 * MIB + 12345, 2),
        (20 * MIB - 700, 3),
        (100 * MIB - 4096, 4),
    ] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&vec![fill; 4096]).unwrap();
    }
    drop(f);
    run_qemu(
        d,
        &["convert", "-f", "raw", "-O", "vpc", "disk.raw", "disk.vhd"],
    );
    check_and_compare(d, "disk.vhd");
    // An empty dynamic disk: no data cluster at all.
    run_qemu(d, &["create", "-q", "-f", "vpc", "empty.vhd", "64M"]);
    check_and_compare(d, "empty.vhd");
}

#[test]
fn the_convert_command_writes_what_the_library_writes() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = Builder::new(Kind::Dynamic, Style::XenServer, 40 * MIB)
        .random_block(7, 1)
        .random_block(2, 2)
        .build();
    std::fs::write(d.join("in.vhd"), &image.bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["convert", "in.vhd", "out.qcow2"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["vhd_bytes"], image.bytes.len() as u64);
    convert(&d.join("in.vhd"), &d.join("lib.qcow2"));
    assert_eq!(
        std::fs::read(d.join("out.qcow2")).unwrap(),
        std::fs::read(d.join("lib.qcow2")).unwrap()
    );
    let same = qemu(
        d,
        &["compare", "-f", "vpc", "-F", "qcow2", "in.vhd", "out.qcow2"],
    );
    assert!(same.contains("Images are identical"), "{same}");
    // A fixed VHD is refused with the converter's reason, exit 3.
    let fixed = Builder::new(Kind::Fixed, Style::Qemu, 4 * MIB)
        .build()
        .bytes;
    std::fs::write(d.join("fixed.vhd"), fixed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgferry"))
        .args(["convert", "fixed.vhd", "x.qcow2"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not dynamic"));
}

#[test]
fn xenserver_style_vhds_with_blocks_out_of_order_convert_identically() {
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1100 MiB: three L2 tables (512 MiB each); blocks written in the file in the order given.
    let image = Builder::new(Kind::Dynamic, Style::XenServer, 1100 * MIB)
        .random_block(549, 1)
        .random_block(0, 2)
        .random_block(300, 3)
        .random_block(256, 4)
        .block(17, 0xEE)
        .build();
    std::fs::write(d.join("tap.vhd"), &image.bytes).unwrap();
    check_and_compare(d, "tap.vhd");
}

/// qcow2 images as qemu-img writes them (version 2 and 3, clusters of 512 bytes to 2 MiB,
/// compressed, metadata preallocated) become dynamic VHDs (`--from-cloud` into a legacy region)
/// that `qemu-img compare` finds identical to the qcow2 and that imgferry's validator accepts.
#[test]
fn qcow2_images_become_vhds_identical_per_qemu_img() {
    use imgferry::convert::qcow2_read::Qcow2Reader;
    use imgferry::convert::vhd_write::{self, DynamicVhd};
    if qemu_img().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = d.join("disk.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    f.set_len(37 * MIB + 1024).unwrap();
    for (at, fill) in [
        (0, 1u8),
        (6 * MIB - 300, 2),
        (30 * MIB, 3),
        (37 * MIB - 3072, 4),
    ] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&vec![fill; 4096]).unwrap();
    }
    drop(f);
    for (name, opts) in [
        ("v2", vec!["-o", "compat=0.10"]),
        ("small", vec!["-o", "cluster_size=512"]),
        ("large", vec!["-o", "cluster_size=2M"]),
        ("compressed", vec!["-c"]),
        ("prealloc", vec!["-o", "preallocation=metadata"]),
    ] {
        let qcow2 = format!("{name}.qcow2");
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend(opts);
        args.extend(["disk.raw", &qcow2]);
        run_qemu(d, &args);
        let bytes = std::fs::read(d.join(&qcow2)).unwrap();
        let mut reader = Qcow2Reader::open(bytes.as_slice()).unwrap();
        let layout = DynamicVhd::new(reader.virtual_size(), [9; 16], 800_000_000);
        let mut out = Vec::new();
        vhd_write::write(
            &mut reader,
            layout,
            &mut |at, piece| {
                let end = at as usize + piece.len();
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[at as usize..end].copy_from_slice(piece);
                Ok(())
            },
            &|| false,
        )
        .unwrap()
        .unwrap();
        let vhd = format!("{name}.vhd");
        std::fs::write(d.join(&vhd), &out).unwrap();
        let report = crate::support::check(&out);
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
        let same = qemu(d, &["compare", "-f", "vpc", "-F", "qcow2", &vhd, &qcow2]);
        assert!(same.contains("Images are identical"), "{name}: {same}");
        // Four 4 KiB runs of data, one across a block boundary, touch five 2 MiB blocks; nothing
        // else is allocated (not even preallocated clusters, which read as zeros).
        assert_eq!(report.bat.map(|b| b.allocated), Some(5), "{name}");
    }
}
