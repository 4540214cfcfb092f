//! Fuzzes the VHD validator with arbitrary bytes as a whole object, and with arbitrary bytes written
//! over the metadata of a valid image (so the fuzzer reaches the header, BAT and batmap checks
//! without having to discover checksums). It must never panic, never ask for bytes outside the
//! object, and never read more than a small multiple of the object's length.
#![no_main]

use std::sync::LazyLock;

use imgferry::vhd::build::{Builder, Kind, Style};
use imgferry::vhd::{MemSource, Policy, validate};
use libfuzzer_sys::fuzz_target;

/// A small valid XenServer-style image with no allocated blocks (a few KiB), so each run is cheap;
/// the fuzzer writes BAT entries itself.
static BASE: LazyLock<Vec<u8>> =
    LazyLock::new(|| Builder::new(Kind::Dynamic, Style::XenServer, 64 << 20).build().bytes);

fn run(bytes: &[u8]) {
    let report = futures::executor::block_on(validate(&MemSource { bytes }, &Policy::default()))
        .expect("the validator asked for bytes outside the object");
    assert!(report.io.bytes_read <= 4 * bytes.len() as u64 + 4096);
}

fuzz_target!(|data: &[u8]| {
    run(data);
    // Overlay the input on the valid image's metadata (footer copy, header, BAT, batmap) and,
    // reversed, on its last 512 bytes (the footer).
    let mut img = BASE.clone();
    let head = data.len().min(img.len() - 512);
    img[..head].copy_from_slice(&data[..head]);
    let len = img.len();
    for (i, b) in data.iter().rev().take(512).enumerate() {
        img[len - 1 - i] = *b;
    }
    run(&img);
});
