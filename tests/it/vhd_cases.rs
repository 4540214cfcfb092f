//! The validation cases of docs/vhd.md, built in code with the builder and mutators,
//! each asserting the exact predicted verdict and code (policy: docs/vhd.md).

use std::io::{Seek, SeekFrom, Write};

use imgferry::vhd::build::{Builder, Image, Kind, Style, put_u32, put_u64};
use imgferry::vhd::dynamic::off as hoff;
use imgferry::vhd::footer::off;
use imgferry::vhd::geometry::{self, Geometry};
use imgferry::vhd::{GIB, ImportCode};

use crate::support::{check, check_file, code, explain};

use crate::support::MIB;

/// D20: what `qemu-img convert -O vpc` makes of a 20 MiB raw file with data in blocks 0 and 4.
fn d20() -> Image {
    Builder::new(Kind::Dynamic, Style::Qemu, 20 * MIB)
        .block(0, 0xA1)
        .block(4, 0xB2)
        .build()
}

/// F20: the fixed version of D20.
fn f20() -> Image {
    Builder::new(Kind::Fixed, Style::Qemu, 20 * MIB)
        .block(0, 0xA1)
        .block(4, 0xB2)
        .build()
}

/// T22: what XenServer's `vhd-util create -s 21` makes, with two blocks written (4 KiB-aligned data,
/// gaps between blocks, a batmap, host OS 0, CHS product below the size).
fn t22() -> Image {
    Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
        .block(0, 0x11)
        .block(1, 0x22)
        .build()
}

fn edited(mut img: Image, edit: impl FnOnce(&mut Image)) -> Vec<u8> {
    edit(&mut img);
    img.bytes
}

type Case = (&'static str, Box<dyn Fn() -> Vec<u8>>, Option<u16>);

fn case(id: &'static str, make: impl Fn() -> Vec<u8> + 'static, expect: Option<u16>) -> Case {
    (id, Box::new(make), expect)
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = vec![
        case(
            "#1 fixed 10M (qemu style)",
            || {
                Builder::new(Kind::Fixed, Style::Qemu, 10 * MIB)
                    .build()
                    .bytes
            },
            None,
        ),
        case(
            "#2 empty dynamic 100M",
            || {
                Builder::new(Kind::Dynamic, Style::Qemu, 100 * MIB)
                    .build()
                    .bytes
            },
            None,
        ),
        case("#3 D20", || d20().bytes, None),
        case(
            "#4 T22 XenServer dynamic with batmap and gaps",
            || t22().bytes,
            None,
        ),
        case(
            "#5 XenServer fixed",
            || {
                Builder::new(Kind::Fixed, Style::XenServer, 21 * MIB)
                    .build()
                    .bytes
            },
            None,
        ),
        case(
            "#6 XenServer 4 MiB, every block filled",
            || {
                Builder::new(Kind::Dynamic, Style::XenServer, 4 * MIB)
                    .block(0, 1)
                    .block(1, 2)
                    .build()
                    .bytes
            },
            None,
        ),
        case(
            "#7 F20 with the legacy 511-byte footer",
            || {
                let mut b = f20().bytes;
                b.pop();
                b
            },
            None,
        ),
        case("#8 empty file", Vec::new, Some(396)),
        case("#8 100-byte file", || vec![0x55; 100], Some(396)),
        case("#9 raw 20 MiB", || vec![0; 20 * MIB as usize], Some(396)),
        case(
            "#10 F20 footer byte 100 flipped",
            || {
                edited(f20(), |i| {
                    i.edit_end_footer(false, |f| f[100] ^= 0xFF);
                })
            },
            Some(396),
        ),
        case(
            "#11 D20 end footer byte 100 flipped",
            || {
                edited(d20(), |i| {
                    i.edit_end_footer(false, |f| f[100] ^= 0xFF);
                })
            },
            Some(396),
        ),
        case(
            "#12 D20 footer copy byte flipped",
            || {
                edited(d20(), |i| {
                    i.edit_copy_footer(false, |f| f[100] ^= 0xFF);
                })
            },
            Some(396),
        ),
        case(
            "#13 D20 footer copy cookie destroyed",
            || {
                edited(d20(), |i| {
                    i.edit_copy_footer(false, |f| f[..8].copy_from_slice(b"xxxxxxxx"));
                })
            },
            Some(396),
        ),
        case(
            "#14 D20 end footer removed",
            || {
                let mut b = d20().bytes;
                b.truncate(b.len() - 512);
                b
            },
            Some(396),
        ),
        case(
            "#15 D20 copies differ in one creator byte (re-checksummed)",
            || {
                edited(d20(), |i| {
                    i.edit_end_footer(true, |f| f[off::CREATOR_APP + 3] = b'2');
                })
            },
            Some(111),
        ),
        case(
            "#16 F20 footer removed",
            || {
                let mut b = f20().bytes;
                b.truncate(b.len() - 512);
                b
            },
            Some(396),
        ),
        case(
            "#17 D20 truncated by 1 MiB",
            || {
                let mut b = d20().bytes;
                b.truncate(b.len() - MIB as usize);
                b
            },
            Some(396),
        ),
        case(
            "#18 D20 BAT[1] beyond EOF",
            || {
                edited(d20(), |i| {
                    i.set_bat(1, 0x0010_0000);
                })
            },
            Some(111),
        ),
        case(
            "#19 D20 BAT[4] = BAT[0]",
            || {
                edited(d20(), |i| {
                    let b0 = i.bat(0);
                    i.set_bat(4, b0);
                })
            },
            Some(111),
        ),
        case(
            "#20 D20 BAT[4] partially overlaps block 0",
            || {
                edited(d20(), |i| {
                    i.set_bat(4, 0x100);
                })
            },
            Some(111),
        ),
        case(
            "#21 D20 BAT[4] points into the header",
            || {
                edited(d20(), |i| {
                    i.set_bat(4, 1);
                })
            },
            Some(111),
        ),
        case(
            "#22 D20 header checksum wrong",
            || {
                edited(d20(), |i| {
                    i.edit_header(false, |h| h[hoff::CHECKSUM] ^= 1);
                })
            },
            Some(396),
        ),
        case(
            "#23 D20 header cookie xxsparse",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| h[..2].copy_from_slice(b"xx"));
                })
            },
            Some(396),
        ),
        case(
            "#24 D20 block size 3 MiB",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| put_u32(h, hoff::BLOCK_SIZE, 0x30_0000));
                })
            },
            Some(111),
        ),
        case(
            "#25 empty dynamic 10M with 4 MiB blocks",
            || {
                edited(
                    Builder::new(Kind::Dynamic, Style::Qemu, 10 * MIB).build(),
                    |i| {
                        i.edit_header(true, |h| put_u32(h, hoff::BLOCK_SIZE, 0x40_0000));
                    },
                )
            },
            Some(111),
        ),
        case(
            "#26 D20 max_table_entries 5",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| put_u32(h, hoff::MAX_ENTRIES, 5));
                })
            },
            Some(111),
        ),
        case(
            "#27 D20 table offset 1537",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| put_u64(h, hoff::TABLE_OFFSET, 1537));
                })
            },
            Some(111),
        ),
        case(
            "#28 D20 header data offset 0xFFFFFFFF",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| put_u64(h, hoff::DATA_OFFSET, 0xFFFF_FFFF));
                })
            },
            Some(396),
        ),
        case(
            "#29 D20 footer version 2.0",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::VERSION, 0x0002_0000));
                })
            },
            Some(396),
        ),
        case(
            "#30 D20 features 0",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::FEATURES, 0));
                })
            },
            Some(111),
        ),
        case(
            "#31 D20 saved state 2",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| f[off::SAVED_STATE] = 2);
                })
            },
            Some(111),
        ),
        case(
            "#31 D20 hidden byte 2",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| f[off::HIDDEN] = 2);
                })
            },
            Some(111),
        ),
        case(
            "#31 D20 reserved byte 300 = 1",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| f[300] = 1);
                })
            },
            Some(111),
        ),
        case(
            "#31 D20 null UUID",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| f[off::UNIQUE_ID..off::UNIQUE_ID + 16].fill(0));
                })
            },
            Some(614),
        ),
        case(
            "#32 F20 data offset 512",
            || {
                edited(f20(), |i| {
                    i.edit_footers(true, |f| put_u64(f, off::DATA_OFFSET, 512));
                })
            },
            Some(396),
        ),
        case(
            "#33 F20 + 512 trailing zero bytes",
            || {
                let mut b = f20().bytes;
                b.extend([0; 512]);
                b
            },
            Some(396),
        ),
        case(
            "#34 F20 current size doubled",
            || {
                edited(f20(), |i| {
                    i.edit_footers(true, |f| put_u64(f, off::CURRENT_SIZE, 2 * 20_994_048));
                })
            },
            Some(111),
        ),
        case(
            "#35 dynamic layout with type 2",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, 2));
                })
            },
            Some(396),
        ),
        case(
            "#36 force_size image (qem2, maximum geometry)",
            || {
                edited(
                    Builder::new(Kind::Dynamic, Style::Qemu, 10 * MIB).build(),
                    |i| {
                        i.edit_footers(true, |f| {
                            f[off::CREATOR_APP..off::CREATOR_APP + 4].copy_from_slice(b"qem2");
                            f[off::GEOMETRY..off::GEOMETRY + 4]
                                .copy_from_slice(&geometry::MAX.to_be_bytes());
                        });
                    },
                )
            },
            Some(111),
        ),
        case(
            "#37 D20 geometry 4095/16/255",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::GEOMETRY, 0x0FFF_10FF));
                })
            },
            Some(111),
        ),
        case(
            "#38 D20 type 0",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, 0));
                })
            },
            Some(523),
        ),
        case(
            "#40 F20 type 1",
            || {
                edited(f20(), |i| {
                    i.edit_end_footer(true, |f| put_u32(f, off::DISK_TYPE, 1));
                })
            },
            Some(523),
        ),
        case(
            "#42 hand-made differencing child",
            differencing_child,
            Some(721),
        ),
        case(
            "#43 D20 type 4 with empty parent fields",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, 4));
                })
            },
            Some(721),
        ),
        case(
            "#44 D20 dynamic with a parent UUID",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| h[hoff::PARENT_UUID] = 7);
                })
            },
            Some(111),
        ),
        case(
            "#44 D20 dynamic with a parent name",
            || {
                edited(d20(), |i| {
                    i.edit_header(true, |h| h[hoff::PARENT_NAME + 1] = b'p');
                })
            },
            Some(111),
        ),
        case(
            "#45 qemu-style 50G",
            || {
                Builder::new(Kind::Dynamic, Style::Qemu, 50 * GIB)
                    .build()
                    .bytes
            },
            Some(413),
        ),
        case(
            "#46 XenServer 50 GiB",
            || {
                Builder::new(Kind::Dynamic, Style::XenServer, 50 * GIB)
                    .build()
                    .bytes
            },
            Some(413),
        ),
        case(
            "#47 XenServer exactly 40 GiB",
            || {
                Builder::new(Kind::Dynamic, Style::XenServer, 40 * GIB)
                    .build()
                    .bytes
            },
            None,
        ),
        case(
            "#48 XenServer 40962 MiB",
            || {
                Builder::new(Kind::Dynamic, Style::XenServer, 40_962 * MIB)
                    .build()
                    .bytes
            },
            Some(413),
        ),
        case(
            "#49 qemu-style 40G rounds over 40 GiB",
            || {
                Builder::new(Kind::Dynamic, Style::Qemu, 40 * GIB)
                    .build()
                    .bytes
            },
            Some(413),
        ),
        case(
            "#50 creator vpc, current size 40 GiB + 512 KiB",
            || vpc_40g(40 * GIB + 512 * 1024, Geometry::for_size(40 * GIB)),
            Some(413),
        ),
        case(
            "#50 creator vpc, CHS product over 40 GiB",
            || vpc_40g(40 * GIB - MIB, Geometry::qemu_rounded(40 * GIB).0),
            Some(413),
        ),
        case(
            "#54 D20 current size 3 TiB",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u64(f, off::CURRENT_SIZE, 3 << 40));
                })
            },
            Some(413),
        ),
        case(
            "#56 VHDX file",
            || {
                let mut b = vec![0u8; MIB as usize];
                b[..8].copy_from_slice(b"vhdxfile");
                b
            },
            Some(396),
        ),
        case(
            "#57 D20 timestamp far in the future (warning only)",
            || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::TIMESTAMP, 0xF000_0000));
                })
            },
            None,
        ),
        case(
            "#58 tap 1.1 hidden = 1, checksum taken with hidden = 0",
            tap_hidden_quirk,
            None,
        ),
    ];
    for disk_type in [5u32, 6, 7, 0xFFFF_FFFF] {
        v.push(case(
            "#39 D20 reserved or unknown type",
            move || {
                edited(d20(), |i| {
                    i.edit_footers(true, |f| put_u32(f, off::DISK_TYPE, disk_type));
                })
            },
            Some(523),
        ));
    }
    v
}

/// A creator-`vpc ` dynamic disk near 40 GiB with the given current size and geometry.
fn vpc_40g(current: u64, chs: Geometry) -> Vec<u8> {
    edited(
        Builder::new(Kind::Dynamic, Style::Qemu, 40 * GIB).build(),
        |i| {
            i.edit_footers(true, |f| {
                f[off::CREATOR_APP..off::CREATOR_APP + 4].copy_from_slice(b"vpc ");
                put_u64(f, off::CURRENT_SIZE, current);
                f[off::GEOMETRY..off::GEOMETRY + 4].copy_from_slice(&chs.to_be_bytes());
            });
        },
    )
}

/// A differencing child made by hand (as the VHD specification lays out a
/// differencing disk): creator `win `, type 4, the parent's UUID and name in the header, one W2ku locator.
fn differencing_child() -> Vec<u8> {
    let parent = t22();
    let parent_id: [u8; 16] = parent.bytes[off::UNIQUE_ID..off::UNIQUE_ID + 16]
        .try_into()
        .unwrap();
    let mut child = Builder::new(Kind::Dynamic, Style::Qemu, 21 * MIB)
        .unique_id(*b"child-disk-uuid!")
        .build();
    child.edit_footers(true, |f| {
        put_u32(f, off::DISK_TYPE, 4);
        f[off::CREATOR_APP..off::CREATOR_APP + 4].copy_from_slice(b"win ");
        put_u32(f, off::CREATOR_VERSION, 0x000A_0000);
    });
    child.edit_header(true, |h| {
        h[hoff::PARENT_UUID..hoff::PARENT_UUID + 16].copy_from_slice(&parent_id);
        put_u32(h, hoff::PARENT_TIMESTAMP, 800_000_000);
        for (i, unit) in "parent.vhd".encode_utf16().enumerate() {
            h[hoff::PARENT_NAME + 2 * i..hoff::PARENT_NAME + 2 * i + 2]
                .copy_from_slice(&unit.to_be_bytes());
        }
        put_u32(h, hoff::LOCATORS, u32::from_be_bytes(*b"W2ku"));
        put_u32(h, hoff::LOCATORS + 4, 512);
        put_u32(h, hoff::LOCATORS + 8, 24);
        put_u64(h, hoff::LOCATORS + 16, 2048);
    });
    child.bytes
}

/// T22 as an old blktap (creator version 1.1) wrote it: hidden set without fixing the checksum.
fn tap_hidden_quirk() -> Vec<u8> {
    edited(t22(), |i| {
        i.edit_footers(true, |f| put_u32(f, off::CREATOR_VERSION, 0x0001_0001));
        i.edit_footers(false, |f| f[off::HIDDEN] = 1);
    })
}

#[test]
fn reference_cases_predict_the_exact_code() {
    let mut failures = Vec::new();
    let all = cases();
    for (id, make, expect) in &all {
        let report = check(&make());
        if std::env::var_os("IMGFERRY_DUMP_CASES").is_some() {
            eprintln!("{id}\n{}", explain(&report));
        }
        if code(&report) != *expect {
            failures.push(format!(
                "{id}: expected {expect:?}, got {:?}\n{}",
                code(&report),
                explain(&report)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    assert!(all.len() >= 55, "the table covers the reference's cases");
}

#[test]
fn xenserver_images_pass_with_their_quirks() {
    let img = t22();
    let report = check(&img.bytes);
    assert!(report.verdict.accepted, "{}", explain(&report));
    let creator = report.creator.as_ref().unwrap();
    assert_eq!(creator.application, "tap\\0");
    assert!(creator.host_os.starts_with('0'));
    let v = report.virtual_size.as_ref().unwrap();
    assert_eq!(
        v.bytes, 23_068_672,
        "virtual size is the current size for tap"
    );
    assert!(
        v.chs_product < v.current_size,
        "CHS product below current size"
    );
    assert_eq!(img.bat(0), 0x7);
    assert_eq!(img.bat(1), 0x100f, "data 4 KiB-aligned, leaving a gap");
    assert_eq!(
        report.bat.as_ref().map(|b| (b.allocated, b.entries)),
        Some((2, 11))
    );
    assert!(report.warnings.is_empty(), "{}", explain(&report));
}

#[test]
fn every_problem_names_field_offset_found_and_expected() {
    let bytes = edited(d20(), |i| {
        i.edit_header(true, |h| put_u32(h, hoff::BLOCK_SIZE, 0x30_0000));
        i.set_bat(1, 0x0010_0000);
        i.edit_footers(true, |f| f[off::SAVED_STATE] = 2);
    });
    let report = check(&bytes);
    assert!(report.problems.len() >= 2, "{}", explain(&report));
    for p in &report.problems {
        assert!(
            !p.finding.field.is_empty()
                && !p.finding.found.is_empty()
                && !p.finding.expected.is_empty()
        );
    }
    let saved = report
        .problems
        .iter()
        .find(|p| p.finding.field == "footer.saved_state")
        .unwrap();
    assert_eq!(
        saved.finding.offset,
        (bytes.len() - 512 + off::SAVED_STATE) as u64
    );
    assert_eq!(saved.code, ImportCode::Other);
    let block = report
        .problems
        .iter()
        .find(|p| p.finding.field == "header.block_size")
        .unwrap();
    assert_eq!(block.finding.offset, 512 + hoff::BLOCK_SIZE as u64);
}

#[test]
fn short_footer_is_a_warning_and_physical_size_excludes_it() {
    let mut bytes = f20().bytes;
    bytes.pop();
    let report = check(&bytes);
    assert!(report.short_footer);
    assert_eq!(report.warnings.len(), 1, "{}", explain(&report));
    assert_eq!(report.physical_size, Some(20_994_048));
}

#[test]
fn fixed_limits_are_inclusive_and_count_physical_without_the_footer() {
    // #52: exactly 40 GiB of data plus the footer passes; #51: 41 GiB fails 413 and 609.
    let dir = tempfile::tempdir().unwrap();
    let at_limit = sparse_fixed(dir.path(), "at-limit.vhd", 40 * GIB);
    let report = check_file(&at_limit);
    assert_eq!(code(&report), None, "{}", explain(&report));
    assert_eq!(report.physical_size, Some(40 * GIB));
    let over = sparse_fixed(dir.path(), "over.vhd", 41 * GIB);
    let report = check_file(&over);
    assert_eq!(code(&report), Some(413), "{}", explain(&report));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.code == ImportCode::PhysicalSize)
    );
}

fn sparse_fixed(dir: &std::path::Path, name: &str, size: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    let footer = Builder::new(Kind::Fixed, Style::XenServer, size).footer();
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    file.seek(SeekFrom::Start(size)).unwrap();
    file.write_all(&footer.raw).unwrap();
    path
}

#[test]
fn a_huge_file_behind_a_small_disk_is_609() {
    // #53: 20 MiB virtual, but a block placed past 45 GiB makes the file itself too big.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("padded.vhd");
    let mut img = d20();
    let far_sector = (45 * GIB / 512) as u32;
    img.set_bat(1, far_sector);
    let data_end = u64::from(far_sector) * 512 + 512 + 2 * MIB;
    let footer = img.bytes[img.bytes.len() - 512..].to_vec();
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&img.bytes[..img.bytes.len() - 512]).unwrap();
    file.set_len(data_end).unwrap();
    file.seek(SeekFrom::Start(data_end)).unwrap();
    file.write_all(&footer).unwrap();
    drop(file);
    let report = check_file(&path);
    assert_eq!(code(&report), Some(609), "{}", explain(&report));
    assert!(
        report.io.bytes_read < 16 * 1024,
        "read {} bytes",
        report.io.bytes_read
    );
}

#[test]
fn read_failures_are_errors_not_verdicts() {
    // #55: a source that fails mid-read makes validation an error naming what was being read.
    struct Failing;
    impl imgferry::vhd::ByteSource for Failing {
        fn len(&self) -> u64 {
            1 << 20
        }
        async fn read_at(
            &self,
            offset: u64,
            _: usize,
        ) -> Result<Vec<u8>, imgferry::vhd::SourceError> {
            Err(format!("connection reset at {offset}").into())
        }
        fn describe(&self) -> String {
            "failing source".into()
        }
    }
    let err =
        futures::executor::block_on(imgferry::vhd::validate(&Failing, &crate::support::policy()))
            .unwrap_err();
    let text = imgferry::error_chain(&err);
    assert!(
        text.contains("footer")
            && text.contains("failing source")
            && text.contains("connection reset"),
        "{text}"
    );
}
