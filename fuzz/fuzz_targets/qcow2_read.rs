//! Fuzzes the qcow2 reader and the VHD writer behind `--from-cloud` into a legacy region: a
//! small valid qcow2 image (imgferry's own converter's output) with arbitrary bytes written at an
//! offset the input chooses (header, L1, L2 tables or data). Reading it must never panic nor
//! allocate without bound; when it converts, the VHD is exactly the length announced and passes
//! the validator.
#![no_main]

use std::sync::LazyLock;

use imgferry::convert::VhdToQcow2;
use imgferry::convert::qcow2_read::Qcow2Reader;
use imgferry::convert::vhd_write::{self, DynamicVhd};
use imgferry::vhd::build::{Builder, Kind, Style};
use imgferry::vhd::{dynamic, footer};
use libfuzzer_sys::fuzz_target;

static BASE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let vhd = Builder::new(Kind::Dynamic, Style::XenServer, 8 << 20)
        .block(2, 7)
        .block(0, 9)
        .build()
        .bytes;
    let f = footer::Footer::new(vhd[..512].try_into().unwrap());
    let h = dynamic::Header::new(vhd[512..1536].try_into().unwrap());
    let at = h.table_offset() as usize;
    let mut c = VhdToQcow2::new(&f, &h, &vhd[at..at + 4096]).unwrap();
    let mut out = c.metadata();
    c.push(0, &vhd, &mut out).unwrap();
    c.finish().unwrap();
    out
});

fuzz_target!(|data: &[u8]| {
    let Some((at, data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut img = BASE.clone();
    let at = usize::from(u16::from_be_bytes(*at)) * 8 % img.len();
    let n = data.len().min(img.len() - at);
    img[at..at + n].copy_from_slice(&data[..n]);
    let Ok(mut reader) = Qcow2Reader::open(img.as_slice()) else {
        return;
    };
    // Large disks are legal but slow to walk: the fuzzer keeps to small ones.
    if reader.virtual_size() > 64 << 20 {
        return;
    }
    let _ = reader.allocated_blocks(DynamicVhd::block_size());
    let layout = DynamicVhd::new(reader.virtual_size(), [1; 16], 1);
    let mut out = Vec::new();
    let written = vhd_write::write(
        &mut reader,
        layout,
        &mut |offset, bytes| {
            let end = offset as usize + bytes.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[offset as usize..end].copy_from_slice(bytes);
            Ok(())
        },
        &|| false,
    );
    if let Ok(Some(len)) = written {
        assert_eq!(len as usize, out.len());
        let report = futures::executor::block_on(imgferry::vhd::validate(
            &imgferry::vhd::MemSource { bytes: &out },
            &imgferry::vhd::Policy::default(),
        ))
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
});
