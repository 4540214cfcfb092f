//! Fuzzes the VHD → qcow2 converter (and the VHD → raw renderer) with arbitrary bytes written over the metadata (footer copy,
//! header, BAT) of a small valid dynamic image, pushed in pieces whose size the input chooses. It
//! must never panic nor allocate without bound, and when it accepts the image and every block
//! arrives, it must produce exactly the length it announced.
#![no_main]

use std::sync::LazyLock;

use imgferry::convert::VhdToQcow2;
use imgferry::convert::raw::VhdToRaw;
use imgferry::vhd::build::{Builder, Kind, Style};
use imgferry::vhd::{dynamic, footer};
use libfuzzer_sys::fuzz_target;

static BASE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    Builder::new(Kind::Dynamic, Style::XenServer, 16 << 20)
        .block(1, 7)
        .block(0, 9)
        .build()
        .bytes
});

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let mut img = BASE.clone();
    let n = data.len().min(4096);
    img[..n].copy_from_slice(&data[..n]);
    let f = footer::Footer::new(img[..512].try_into().unwrap());
    let h = dynamic::Header::new(img[512..1536].try_into().unwrap());
    let at = (h.table_offset() as usize).min(img.len());
    let bat = &img[at..(at + 4096).min(img.len())];
    // The raw renderer reads the same table: each block rendered from what the table names.
    if let Ok(r) = VhdToRaw::new(&f, &h, bat)
        && r.blocks() <= 64
    {
        let mut len = 0u64;
        for i in 0..r.blocks() {
            let read = r.source_of(i).and_then(|(at, n)| {
                img.get(usize::try_from(at).ok()?..usize::try_from(at + n).ok()?)
            });
            match r.render(i, read) {
                Ok(bytes) => len += bytes.len() as u64,
                Err(_) => return,
            }
        }
        assert_eq!(len, r.output_len());
    }
    let Ok(mut c) = VhdToQcow2::new(&f, &h, bat) else {
        return;
    };
    let mut out = c.metadata();
    let step = usize::from(chunk).max(1) * 4099;
    for (i, piece) in img.chunks(step).enumerate() {
        if c.push((i * step) as u64, piece, &mut out).is_err() {
            return;
        }
    }
    if c.finish().is_ok() {
        assert_eq!(out.len() as u64, c.output_len());
    }
});
