//! Builds small, well-formed VHDs in code, in the two dialects that matter, and edits them.
//!
//! - **qemu style** is what `qemu-img create/convert -O vpc` writes: creator `qemu` 5.3 on `Wi2k`,
//!   the size rounded up to an exact geometry, blocks packed right after the BAT.
//! - **XenServer style** is what blktap's `vhd-util create` writes (xapi-project/blktap
//!   `vhd/lib/libvhd.c`, checked against the images it makes): creator `tap\0` 1.3, host OS 0, the size rounded up to 2 MiB with a
//!   geometry whose product is *below* it, a batmap after the BAT, and block data aligned to 4 KiB,
//!   which leaves gaps between blocks.
//!
//! Images are written sequentially through [`std::io::Write`], so a caller can stream a large one to
//! a file without holding it in memory. [`Image`] holds a small built image and offers the edits the
//! tests use to make each defect (edit a field, then optionally fix the checksum).

use std::io::{self, Write};

use super::dynamic::{self, Header};
use super::footer::{self, Footer};
use super::geometry::Geometry;

const MIB: u64 = 1 << 20;
/// Default block size: 2 MiB.
pub const BLOCK_SIZE: u32 = 2 << 20;

/// Fixed or dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fixed,
    Dynamic,
}

/// What an allocated block's data bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Every byte the same.
    Byte(u8),
    /// Pseudo-random bytes from a seed (xoshiro256++), different for every block and repeatable:
    /// realistic, incompressible content that costs nothing to store.
    Random(u64),
}

/// Which tool's conventions to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Qemu,
    XenServer,
}

/// A description of an image to build.
#[derive(Debug, Clone)]
pub struct Builder {
    kind: Kind,
    style: Style,
    requested: u64,
    /// Allocated blocks in allocation order, each with what its data is filled with.
    blocks: Vec<(u32, Fill)>,
    unique_id: [u8; 16],
    timestamp: u32,
}

impl Builder {
    pub fn new(kind: Kind, style: Style, size: u64) -> Self {
        Self {
            kind,
            style,
            requested: size,
            blocks: Vec::new(),
            unique_id: *b"imgferry-test-id",
            // 2025-05-14: a plausible creation time, in the past.
            timestamp: 800_000_000,
        }
    }

    /// Allocates block `index` with every data byte set to `fill` (dynamic disks; for fixed disks the
    /// same range of the data is filled).
    pub fn block(mut self, index: u32, fill: u8) -> Self {
        self.blocks.push((index, Fill::Byte(fill)));
        self
    }

    /// Allocates block `index` with pseudo-random data derived from `seed` and the index.
    pub fn random_block(mut self, index: u32, seed: u64) -> Self {
        self.blocks.push((index, Fill::Random(seed)));
        self
    }

    /// The exact length of the image [`Builder::write_to`] writes.
    pub fn len(&self) -> u64 {
        match self.kind {
            Kind::Fixed => self.size_and_geometry().0 + footer::LEN as u64,
            Kind::Dynamic => {
                let end = self
                    .block_sectors(self.metadata_end())
                    .iter()
                    .map(|&(_, sector, _)| sector * 512 + 512 + u64::from(BLOCK_SIZE))
                    .max()
                    .unwrap_or(self.metadata_end());
                end.max(self.metadata_end()) + footer::LEN as u64
            }
        }
    }

    /// Where block data may start: after the footer copy, header, BAT and (XenServer) batmap.
    pub fn metadata_end(&self) -> u64 {
        let bat = (u64::from(self.max_entries()) * 4).div_ceil(512) * 512;
        let batmap = match self.style {
            Style::XenServer => {
                512 + u64::from(self.max_entries())
                    .div_ceil(8)
                    .div_ceil(512)
                    .max(1)
                    * 512
            }
            Style::Qemu => 0,
        };
        1536 + bat + batmap
    }

    /// Whether the image would be empty (never: every image has a footer).
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn unique_id(mut self, id: [u8; 16]) -> Self {
        self.unique_id = id;
        self
    }

    pub fn timestamp(mut self, vhd_seconds: u32) -> Self {
        self.timestamp = vhd_seconds;
        self
    }

    /// The disk size and geometry the creating tool would store.
    pub fn size_and_geometry(&self) -> (u64, Geometry) {
        match self.style {
            Style::Qemu => {
                let (g, size) = Geometry::qemu_rounded(self.requested);
                (size, g)
            }
            Style::XenServer => {
                let size = self.requested.div_ceil(2 * MIB) * 2 * MIB;
                (size, Geometry::for_size(size))
            }
        }
    }

    /// The footer this image ends with (and, for dynamic disks, starts with).
    pub fn footer(&self) -> Footer {
        let (size, geometry) = self.size_and_geometry();
        let mut raw = [0u8; footer::LEN];
        let (app, version, os): (&[u8; 4], u32, u32) = match self.style {
            Style::Qemu => (b"qemu", 0x0005_0003, u32::from_be_bytes(*b"Wi2k")),
            Style::XenServer => (b"tap\0", 0x0001_0003, 0),
        };
        let (disk_type, data_offset) = match self.kind {
            Kind::Fixed => (2u32, footer::NO_DATA_OFFSET),
            Kind::Dynamic => (3, 512),
        };
        use footer::off;
        raw[off::COOKIE..off::COOKIE + 8].copy_from_slice(footer::COOKIE);
        raw[off::FEATURES..off::FEATURES + 4]
            .copy_from_slice(&footer::FEATURE_RESERVED.to_be_bytes());
        raw[off::VERSION..off::VERSION + 4].copy_from_slice(&footer::VERSION.to_be_bytes());
        raw[off::DATA_OFFSET..off::DATA_OFFSET + 8].copy_from_slice(&data_offset.to_be_bytes());
        raw[off::TIMESTAMP..off::TIMESTAMP + 4].copy_from_slice(&self.timestamp.to_be_bytes());
        raw[off::CREATOR_APP..off::CREATOR_APP + 4].copy_from_slice(app);
        raw[off::CREATOR_VERSION..off::CREATOR_VERSION + 4].copy_from_slice(&version.to_be_bytes());
        raw[off::CREATOR_OS..off::CREATOR_OS + 4].copy_from_slice(&os.to_be_bytes());
        raw[off::ORIGINAL_SIZE..off::ORIGINAL_SIZE + 8].copy_from_slice(&size.to_be_bytes());
        raw[off::CURRENT_SIZE..off::CURRENT_SIZE + 8].copy_from_slice(&size.to_be_bytes());
        raw[off::GEOMETRY..off::GEOMETRY + 4].copy_from_slice(&geometry.to_be_bytes());
        raw[off::DISK_TYPE..off::DISK_TYPE + 4].copy_from_slice(&disk_type.to_be_bytes());
        raw[off::UNIQUE_ID..off::UNIQUE_ID + 16].copy_from_slice(&self.unique_id);
        let mut f = Footer::new(raw);
        f.fix_checksum();
        f
    }

    fn max_entries(&self) -> u32 {
        let (size, _) = self.size_and_geometry();
        u32::try_from(size.div_ceil(u64::from(BLOCK_SIZE))).unwrap_or(u32::MAX)
    }

    fn header(&self) -> Header {
        let mut raw = [0u8; dynamic::LEN];
        use dynamic::off;
        raw[off::COOKIE..off::COOKIE + 8].copy_from_slice(dynamic::COOKIE);
        raw[off::DATA_OFFSET..off::DATA_OFFSET + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        raw[off::TABLE_OFFSET..off::TABLE_OFFSET + 8].copy_from_slice(&1536u64.to_be_bytes());
        raw[off::VERSION..off::VERSION + 4].copy_from_slice(&dynamic::VERSION.to_be_bytes());
        raw[off::MAX_ENTRIES..off::MAX_ENTRIES + 4]
            .copy_from_slice(&self.max_entries().to_be_bytes());
        raw[off::BLOCK_SIZE..off::BLOCK_SIZE + 4].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
        let mut h = Header::new(raw);
        h.fix_checksum();
        h
    }

    /// The layout of a dynamic image: the sector of each allocated block, and the first free byte
    /// after the metadata.
    fn block_sectors(&self, metadata_end: u64) -> Vec<(u32, u64, Fill)> {
        let span_sectors = (u64::from(BLOCK_SIZE) + 512) / 512;
        let mut next = metadata_end / 512;
        let mut placed = Vec::new();
        for &(index, fill) in &self.blocks {
            next = self.block_sector_from(next);
            placed.push((index, next, fill));
            next += span_sectors;
        }
        placed
    }

    /// Where a block's bitmap goes when the first free sector is `next`: there, or (XenServer
    /// style) the next sector whose block *data* (after its one-sector bitmap) starts on a 4 KiB
    /// boundary, as blktap places it.
    pub fn block_sector_from(&self, mut next: u64) -> u64 {
        if self.style == Style::XenServer {
            while !(next + 1).is_multiple_of(8) {
                next += 1;
            }
        }
        next
    }

    /// Writes the whole image to `w`, sequentially.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self.kind {
            Kind::Fixed => self.write_fixed(w),
            Kind::Dynamic => self.write_dynamic(w),
        }
    }

    fn write_fixed(&self, w: &mut impl Write) -> io::Result<()> {
        let (size, _) = self.size_and_geometry();
        let block = u64::from(BLOCK_SIZE);
        let mut pos = 0;
        let mut fills: Vec<(u64, Fill)> = self
            .blocks
            .iter()
            .map(|&(i, f)| (u64::from(i) * block, f))
            .collect();
        fills.sort_unstable_by_key(|&(start, _)| start);
        for (start, fill) in fills {
            if start >= size || start < pos {
                continue;
            }
            write_repeated(w, 0, start - pos)?;
            let len = block.min(size - start);
            write_fill(w, fill, start / block, len)?;
            pos = start + len;
        }
        write_repeated(w, 0, size - pos)?;
        w.write_all(&self.footer().raw)
    }

    fn write_dynamic(&self, w: &mut impl Write) -> io::Result<()> {
        let metadata_end = self.metadata_end();
        let placed = self.block_sectors(metadata_end);
        let at: Vec<(u32, u64)> = placed.iter().map(|&(i, s, _)| (i, s)).collect();
        w.write_all(&self.dynamic_head(&at))?;
        let mut pos = metadata_end;
        let mut by_offset = placed;
        by_offset.sort_unstable_by_key(|&(_, sector, _)| sector);
        for (index, sector, fill) in by_offset {
            write_repeated(w, 0, sector * 512 - pos)?;
            // qemu and blktap set every bitmap bit of a freshly written block.
            write_repeated(w, 0xFF, 512)?;
            write_fill(w, fill, u64::from(index), u64::from(BLOCK_SIZE))?;
            pos = sector * 512 + 512 + u64::from(BLOCK_SIZE);
        }
        w.write_all(&self.footer().raw)
    }

    /// The first [`Builder::metadata_end`] bytes of a dynamic image whose blocks' bitmaps sit at
    /// the given sectors: the footer copy, the header, the BAT and (XenServer style) the batmap.
    pub fn dynamic_head(&self, placed: &[(u32, u64)]) -> Vec<u8> {
        let footer = self.footer();
        let header = self.header();
        let entries = self.max_entries() as usize;
        let bat_padded = header.bat_bytes_padded();
        let batmap = (self.style == Style::XenServer).then(|| {
            let map_sectors = (entries as u64).div_ceil(8).div_ceil(512).max(1);
            (1536 + bat_padded, map_sectors)
        });
        let mut bat = vec![0xFFu8; bat_padded as usize];
        let mut map = vec![0u8; batmap.map_or(0, |(_, s)| s as usize * 512)];
        for &(index, sector) in placed {
            let i = index as usize;
            if i < entries {
                bat[i * 4..i * 4 + 4]
                    .copy_from_slice(&u32::try_from(sector).unwrap_or(u32::MAX).to_be_bytes());
                if let Some(byte) = map.get_mut(i / 8) {
                    *byte |= 0x80 >> (i % 8);
                }
            }
        }
        let mut head = Vec::with_capacity(self.metadata_end() as usize);
        head.extend_from_slice(&footer.raw);
        head.extend_from_slice(&header.raw);
        head.extend_from_slice(&bat);
        if let Some((header_at, map_sectors)) = batmap {
            let mut b = [0u8; 512];
            b[..8].copy_from_slice(dynamic::BATMAP_COOKIE);
            b[8..16].copy_from_slice(&(header_at + 512).to_be_bytes());
            b[16..20]
                .copy_from_slice(&u32::try_from(map_sectors).unwrap_or(u32::MAX).to_be_bytes());
            b[20..24].copy_from_slice(&dynamic::BATMAP_MAX_VERSION.to_be_bytes());
            b[24..28].copy_from_slice(&dynamic::batmap_checksum(&map).to_be_bytes());
            head.extend_from_slice(&b);
            head.extend_from_slice(&map);
        }
        head
    }

    /// Builds the image in memory.
    pub fn build(&self) -> Image {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut bytes);
        Image {
            bytes,
            kind: self.kind,
        }
    }
}

fn write_fill(w: &mut impl Write, fill: Fill, block: u64, len: u64) -> io::Result<()> {
    match fill {
        Fill::Byte(b) => write_repeated(w, b, len),
        Fill::Random(seed) => {
            use rand_xoshiro::Xoshiro256PlusPlus;
            use rand_xoshiro::rand_core::{Rng, SeedableRng};
            let mut rng =
                Xoshiro256PlusPlus::seed_from_u64(seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut chunk = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                rng.fill_bytes(&mut chunk[..n]);
                w.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

fn write_repeated(w: &mut impl Write, byte: u8, mut len: u64) -> io::Result<()> {
    let chunk = [byte; 64 * 1024];
    while len > 0 {
        let n = len.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// A built image held in memory, with edits for making defects.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub kind: Kind,
}

impl Image {
    fn end_footer_at(&self) -> usize {
        self.bytes.len() - footer::LEN
    }

    /// Edits the end-of-file footer only. The checksum is left as it was unless `fix` is set.
    pub fn edit_end_footer(
        &mut self,
        fix: bool,
        edit: impl FnOnce(&mut [u8; footer::LEN]),
    ) -> &mut Self {
        let at = self.end_footer_at();
        edit_footer_at(&mut self.bytes, at, fix, edit);
        self
    }

    /// Edits the footer copy at offset 0 only (dynamic disks).
    pub fn edit_copy_footer(
        &mut self,
        fix: bool,
        edit: impl FnOnce(&mut [u8; footer::LEN]),
    ) -> &mut Self {
        edit_footer_at(&mut self.bytes, 0, fix, edit);
        self
    }

    /// Applies the same edit to every footer copy, so the copies stay identical.
    pub fn edit_footers(&mut self, fix: bool, edit: impl Fn(&mut [u8; footer::LEN])) -> &mut Self {
        self.edit_end_footer(fix, &edit);
        if self.kind == Kind::Dynamic {
            self.edit_copy_footer(fix, &edit);
        }
        self
    }

    /// Edits the dynamic header at offset 512.
    pub fn edit_header(
        &mut self,
        fix: bool,
        edit: impl FnOnce(&mut [u8; dynamic::LEN]),
    ) -> &mut Self {
        let mut h = Header::new([0; dynamic::LEN]);
        h.raw.copy_from_slice(&self.bytes[512..512 + dynamic::LEN]);
        edit(&mut h.raw);
        if fix {
            h.fix_checksum();
        }
        self.bytes[512..512 + dynamic::LEN].copy_from_slice(&h.raw);
        self
    }

    /// Sets BAT entry `index` (the BAT is at 1536 in built images).
    pub fn set_bat(&mut self, index: usize, sector: u32) -> &mut Self {
        let at = 1536 + index * 4;
        self.bytes[at..at + 4].copy_from_slice(&sector.to_be_bytes());
        self
    }

    pub fn bat(&self, index: usize) -> u32 {
        let at = 1536 + index * 4;
        u32::from_be_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }
}

fn edit_footer_at(
    bytes: &mut [u8],
    at: usize,
    fix: bool,
    edit: impl FnOnce(&mut [u8; footer::LEN]),
) {
    let mut f = Footer::new([0; footer::LEN]);
    f.raw.copy_from_slice(&bytes[at..at + footer::LEN]);
    edit(&mut f.raw);
    if fix {
        f.fix_checksum();
    }
    bytes[at..at + footer::LEN].copy_from_slice(&f.raw);
}

/// Helpers for field edits: write a big-endian value at a field offset.
pub fn put_u32(raw: &mut [u8], at: usize, v: u32) {
    raw[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub fn put_u64(raw: &mut [u8], at: usize, v: u64) {
    raw[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_dynamic_matches_qemu_layout() {
        // D20: qemu-img convert of a 20 MiB raw with data in blocks 0 and 4 → entries 0x4, 0x1005,
        // file 4 197 888 bytes (as `vhd-util create` lays it out).
        let img = Builder::new(Kind::Dynamic, Style::Qemu, 20 * MIB)
            .block(0, 1)
            .block(4, 2)
            .build();
        assert_eq!(img.bytes.len(), 4_197_888);
        assert_eq!(img.bat(0), 0x4);
        assert_eq!(img.bat(4), 0x1005);
    }

    #[test]
    fn len_matches_what_is_written() {
        for b in [
            Builder::new(Kind::Dynamic, Style::Qemu, 20 * MIB)
                .block(0, 1)
                .random_block(4, 7),
            Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
                .block(3, 1)
                .block(1, 2),
            Builder::new(Kind::Dynamic, Style::XenServer, 9 * MIB),
            Builder::new(Kind::Fixed, Style::Qemu, 3 * MIB).random_block(1, 9),
        ] {
            assert_eq!(b.len(), b.build().bytes.len() as u64);
        }
    }

    #[test]
    fn random_blocks_are_repeatable_and_distinct() {
        let a = Builder::new(Kind::Dynamic, Style::Qemu, 8 * MIB)
            .random_block(0, 1)
            .random_block(1, 1)
            .build();
        let b = Builder::new(Kind::Dynamic, Style::Qemu, 8 * MIB)
            .random_block(0, 1)
            .random_block(1, 1)
            .build();
        assert_eq!(a.bytes, b.bytes);
        let first = 2048 + 512;
        let second = first + (2 << 20) + 512;
        assert_ne!(a.bytes[first..first + 64], a.bytes[second..second + 64]);
    }

    #[test]
    fn xenserver_dynamic_matches_blktap_layout() {
        // T22 empty: 3584 bytes, the batmap header right after the BAT with its map at 0xA00;
        // with blocks, entries 0x7 and 0x100f.
        let empty = Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB).build();
        assert_eq!(empty.bytes.len(), 3584);
        assert_eq!(&empty.bytes[0x800..0x808], b"tdbatmap");
        assert_eq!(empty.bytes[0x808..0x810], 0xA00u64.to_be_bytes());
        let img = Builder::new(Kind::Dynamic, Style::XenServer, 21 * MIB)
            .block(0, 1)
            .block(1, 2)
            .build();
        assert_eq!(img.bat(0), 0x7);
        assert_eq!(img.bat(1), 0x100f);
    }
}
