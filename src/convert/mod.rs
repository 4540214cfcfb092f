//! Disk format conversion, streamed: a dynamic VHD read forward once becomes a qcow2 image
//! written forward once, so a VHD can go from Cloud Files to an OpenStack image service without a
//! local copy.
//!
//! It works because a dynamic VHD's block allocation table (BAT) precedes its data: once the
//! footer copy, the dynamic header and the BAT are read, every allocated block and where it sits
//! in the file is known, so the qcow2 layout ([`qcow2::Layout`]) is fixed before any data is
//! read. The data clusters go in the order the blocks sit in the file (not guest order), so each
//! block's bytes are copied as they stream past. Sectors whose bit in the block's bitmap is clear
//! read as zeros, as Xen's tapdisk reads them (xapi-project/blktap `drivers/block-vhd.c`); an
//! unallocated block is unallocated in the qcow2 image too.
//!
//! A dynamic VHD also becomes raw ([`raw::VhdToRaw`]): block by block in guest order, which needs
//! random access to the VHD (ranged reads), since its blocks sit in the file in any order.
//!
//! The converters do no I/O of their own: bytes in, bytes out ([`VhdToQcow2::push`]).

pub mod qcow2;
pub mod qcow2_read;
pub mod raw;
pub mod vhd_write;

use crate::vhd::{dynamic, footer};

/// Why a VHD cannot be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "the VHD is {0}, not dynamic: only a dynamic VHD converts to qcow2 (a fixed one is raw)"
    )]
    NotDynamic(&'static str),
    #[error("the VHD's block size ({0} bytes) is not a power of two of at least 512 bytes")]
    BlockSize(u32),
    #[error("the VHD's block allocation table has {got} entries, {want} are needed for its size")]
    ShortTable { got: usize, want: u64 },
    #[error("VHD blocks {0} and {1} overlap in the file")]
    Overlap(u32, u32),
    #[error(
        "the VHD's virtual size ({0} bytes) needs qcow2 tables larger than imgferry builds in \
         memory: no cloud imports a disk that size"
    )]
    TooLarge(u64),
    #[error("the VHD bytes must arrive in order: expected offset {expected}, got {got}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("the VHD ended at byte {at} before block {block}, which its table places at {offset}")]
    Truncated { at: u64, block: u32, offset: u64 },
}

/// The most L1 entries the converter lays out (32 MiB of table).
const MAX_L1_ENTRIES: u64 = 4 << 20;

/// One allocated VHD block: where its bitmap starts in the file, and its index.
#[derive(Debug, Clone, Copy)]
struct Block {
    offset: u64,
    index: u32,
}

/// What a dynamic VHD's footer, header and block allocation table say: its allocated blocks in
/// file order (checked not to overlap), their size, their bitmaps' size, and the disk's size.
struct Table {
    blocks: Vec<Block>,
    block_size: u64,
    bitmap_bytes: u64,
    virtual_size: u64,
}

impl Table {
    /// Reads the table (big-endian sector numbers, as on disk). The virtual size is the footer's
    /// current size, what Xen sees.
    fn read(footer: &footer::Footer, header: &dynamic::Header, bat: &[u8]) -> Result<Self, Error> {
        let (block_size, virtual_size) = Self::sizes(footer, header)?;
        let needed = virtual_size.div_ceil(block_size);
        let entries: Vec<u32> = bat
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if (entries.len() as u64) < needed {
            return Err(Error::ShortTable {
                got: entries.len(),
                want: needed,
            });
        }
        let mut blocks: Vec<Block> = entries
            .iter()
            .take(needed as usize)
            .enumerate()
            .filter(|(_, s)| **s != u32::MAX)
            .map(|(i, s)| Block {
                offset: u64::from(*s) * 512,
                index: i as u32,
            })
            .collect();
        blocks.sort_by_key(|b| b.offset);
        let bitmap_bytes = header.bitmap_bytes();
        for pair in blocks.windows(2) {
            if pair[0].offset + bitmap_bytes + block_size > pair[1].offset {
                return Err(Error::Overlap(pair[0].index, pair[1].index));
            }
        }
        Ok(Self {
            blocks,
            block_size,
            bitmap_bytes,
            virtual_size,
        })
    }

    /// A dynamic disk's block size and virtual size, before its table is read.
    fn sizes(footer: &footer::Footer, header: &dynamic::Header) -> Result<(u64, u64), Error> {
        let kind = footer.disk_type();
        if kind != footer::DiskType::Dynamic {
            return Err(Error::NotDynamic(kind.name()));
        }
        let block = header.block_size();
        if !block.is_power_of_two() || block < 512 {
            return Err(Error::BlockSize(block));
        }
        Ok((u64::from(block), footer.current_size()))
    }
}

/// Zeroes the sectors of `data` (which starts `within` bytes into its block) whose bit in the
/// block's `bitmap` is clear: what Xen's tapdisk reads for them.
fn apply_bitmap(bitmap: &[u8], within: u64, data: &mut [u8]) {
    let mut at = 0usize;
    while at < data.len() {
        let sector = (within + at as u64) / 512;
        let sector_end = ((sector + 1) * 512 - within) as usize;
        let till = sector_end.min(data.len());
        let byte = bitmap.get((sector / 8) as usize).copied().unwrap_or(0);
        if byte & (0x80 >> (sector % 8)) == 0 {
            data[at..till].fill(0);
        }
        at = till;
    }
}

/// Converts one dynamic VHD into qcow2. Feed it the VHD's bytes in file order with
/// [`VhdToQcow2::push`] after writing [`VhdToQcow2::metadata`]; what `push` appends follows.
pub struct VhdToQcow2 {
    layout: qcow2::Layout,
    blocks: Vec<Block>,
    block_size: u64,
    bitmap_bytes: u64,
    /// Guest bytes each block maps (the last one may reach past the virtual size).
    virtual_size: u64,
    /// The next block to read, and the next VHD byte expected.
    next: usize,
    pos: u64,
    /// The current block's bitmap, as it arrives.
    bitmap: Vec<u8>,
}

impl VhdToQcow2 {
    /// The converter for a VHD with this footer, dynamic header and BAT (big-endian sector
    /// numbers, as on disk). The virtual size is the footer's current size, what Xen sees.
    pub fn new(
        footer: &footer::Footer,
        header: &dynamic::Header,
        bat: &[u8],
    ) -> Result<Self, Error> {
        // The L1 table is as long as the disk is large, allocated or not: bound it (32 MiB of L1
        // is 2 PiB of disk with 64 KiB clusters, 64 TiB with 2 KiB ones).
        let (block_size, virtual_size) = Table::sizes(footer, header)?;
        let cluster = block_size.min(1 << 16);
        if virtual_size.div_ceil(cluster).div_ceil(cluster / 8) > MAX_L1_ENTRIES {
            return Err(Error::TooLarge(virtual_size));
        }
        let Table {
            blocks,
            bitmap_bytes,
            ..
        } = Table::read(footer, header, bat)?;
        // 64 KiB clusters (qemu's default), or the block size when blocks are smaller, so that a
        // cluster never spans two blocks.
        let per_block = block_size / cluster;
        let guest_clusters = virtual_size.div_ceil(cluster);
        let data = blocks
            .iter()
            .flat_map(|b| {
                let first = u64::from(b.index) * per_block;
                first..(first + per_block).min(guest_clusters)
            })
            .collect();
        Ok(Self {
            layout: qcow2::Layout::new(virtual_size, cluster, data),
            blocks,
            block_size,
            bitmap_bytes,
            virtual_size,
            next: 0,
            pos: 0,
            bitmap: Vec::new(),
        })
    }

    /// The qcow2 image's length.
    pub fn output_len(&self) -> u64 {
        self.layout.len()
    }

    /// The qcow2 image's first bytes: everything before its first data cluster.
    pub fn metadata(&self) -> Vec<u8> {
        self.layout.metadata()
    }

    /// Where the first VHD byte that matters is: nothing before it needs to be pushed.
    pub fn first_needed(&self) -> u64 {
        self.blocks.first().map_or(0, |b| b.offset)
    }

    /// Takes the VHD's bytes from `offset` (the next byte after the previous push, or any offset
    /// up to [`VhdToQcow2::first_needed`] for the first), appending the qcow2 bytes they make to
    /// `out`.
    pub fn push(&mut self, offset: u64, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.pos == 0 && offset <= self.first_needed() {
            self.pos = offset;
        }
        if offset != self.pos {
            return Err(Error::OutOfOrder {
                expected: self.pos,
                got: offset,
            });
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(block) = self.blocks.get(self.next).copied() else {
                break; // past the last block: the footer and any padding
            };
            let data_at = block.offset + self.bitmap_bytes;
            let end = data_at + self.block_size;
            let take = if self.pos < block.offset {
                (block.offset - self.pos).min(rest.len() as u64)
            } else if self.pos < data_at {
                let n = (data_at - self.pos).min(rest.len() as u64);
                self.bitmap.extend_from_slice(&rest[..n as usize]);
                n
            } else {
                let n = (end - self.pos).min(rest.len() as u64);
                self.copy_data(block, self.pos - data_at, &rest[..n as usize], out);
                n
            };
            self.pos += take;
            rest = &rest[take as usize..];
            if self.pos == end {
                self.next += 1;
                self.bitmap.clear();
            }
        }
        self.pos += rest.len() as u64;
        Ok(())
    }

    /// Whether every allocated block has been read; otherwise, where the VHD ended too soon.
    pub fn finish(&self) -> Result<(), Error> {
        match self.blocks.get(self.next) {
            None => Ok(()),
            Some(b) => Err(Error::Truncated {
                at: self.pos,
                block: b.index,
                offset: b.offset,
            }),
        }
    }

    /// Copies `bytes`, which start `within` bytes into `block`'s data, zeroing the sectors its
    /// bitmap leaves clear and dropping what lies past the virtual size.
    fn copy_data(&self, block: Block, within: u64, bytes: &[u8], out: &mut Vec<u8>) {
        let guest = u64::from(block.index) * self.block_size + within;
        // Clusters past the end of the disk are not mapped, so not written either.
        let mapped_end =
            self.virtual_size.div_ceil(self.layout.cluster_size) * self.layout.cluster_size;
        let keep = mapped_end.saturating_sub(guest).min(bytes.len() as u64) as usize;
        let start = out.len();
        out.extend_from_slice(&bytes[..keep]);
        apply_bitmap(&self.bitmap, within, &mut out[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhd::build::{Builder, Kind, Style};

    const MIB: u64 = 1 << 20;

    fn parts(vhd: &[u8]) -> (footer::Footer, dynamic::Header, Vec<u8>) {
        let f = footer::Footer::new(vhd[..512].try_into().unwrap());
        let h = dynamic::Header::new(vhd[512..1536].try_into().unwrap());
        let at = h.table_offset() as usize;
        let bat = vhd[at..at + h.max_entries() as usize * 4].to_vec();
        (f, h, bat)
    }

    /// Converts `vhd`, pushing it in pieces of `chunk` bytes.
    fn convert(vhd: &[u8], chunk: usize) -> Vec<u8> {
        let (f, h, bat) = parts(vhd);
        let mut c = VhdToQcow2::new(&f, &h, &bat).unwrap();
        let mut out = c.metadata();
        for (i, piece) in vhd.chunks(chunk).enumerate() {
            c.push((i * chunk) as u64, piece, &mut out).unwrap();
        }
        c.finish().unwrap();
        assert_eq!(out.len() as u64, c.output_len());
        out
    }

    /// The guest's view of a dynamic VHD, as Xen reads it: allocated blocks with their bitmaps.
    pub(super) fn vhd_guest(vhd: &[u8]) -> Vec<u8> {
        let (f, h, bat) = parts(vhd);
        let (size, block) = (f.current_size(), u64::from(h.block_size()));
        let mut out = vec![0u8; size as usize];
        for (i, e) in bat.chunks_exact(4).enumerate() {
            let sector = u32::from_be_bytes(e.try_into().unwrap());
            if sector == u32::MAX || i as u64 * block >= size {
                continue;
            }
            let bitmap = sector as usize * 512;
            let data = bitmap + h.bitmap_bytes() as usize;
            for s in 0..block / 512 {
                let guest = i as u64 * block + s * 512;
                let set = vhd[bitmap + (s / 8) as usize] & (0x80 >> (s % 8)) != 0;
                if set && guest < size {
                    let from = data + s as usize * 512;
                    let n = 512.min(size - guest) as usize;
                    out[guest as usize..guest as usize + n].copy_from_slice(&vhd[from..from + n]);
                }
            }
        }
        out
    }

    /// The guest's view of a qcow2 image, through its L1 and L2 tables.
    fn qcow2_guest(q: &[u8]) -> Vec<u8> {
        let be64 = |at: usize| u64::from_be_bytes(q[at..at + 8].try_into().unwrap());
        let be32 = |at: usize| u32::from_be_bytes(q[at..at + 4].try_into().unwrap());
        assert_eq!(&q[..4], b"QFI\xfb");
        let cs = 1u64 << be32(20);
        let size = be64(24);
        let (l1_entries, l1) = (u64::from(be32(36)), be64(40));
        let mut out = vec![0u8; size as usize];
        for i in 0..l1_entries {
            let l2 = be64((l1 + i * 8) as usize) & !(1 << 63);
            if l2 == 0 {
                continue;
            }
            for j in 0..cs / 8 {
                let host = be64((l2 + j * 8) as usize) & !(1 << 63);
                let guest = (i * (cs / 8) + j) * cs;
                if host != 0 && guest < size {
                    let n = cs.min(size - guest) as usize;
                    out[guest as usize..guest as usize + n]
                        .copy_from_slice(&q[host as usize..host as usize + n]);
                }
            }
        }
        out
    }

    #[test]
    fn blocks_out_of_order_convert_to_the_same_guest_bytes_in_any_pieces() {
        for style in [Style::Qemu, Style::XenServer] {
            // Allocated out of order, so they sit in the file as 5, 0, 3, 7.
            let vhd = Builder::new(Kind::Dynamic, style, 15 * MIB)
                .random_block(5, 1)
                .random_block(0, 2)
                .random_block(3, 3)
                .block(7, 0xAB)
                .build()
                .bytes;
            let want = vhd_guest(&vhd);
            for chunk in [1, 511, 4096, 1 << 20, vhd.len()] {
                let q = convert(&vhd, chunk);
                assert_eq!(qcow2_guest(&q), want, "{style:?}, pieces of {chunk}");
            }
        }
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any set of blocks, allocated in any order, pushed in pieces of any size: the qcow2
        /// image reads as the VHD does.
        #[test]
        fn any_blocks_in_any_order_and_any_pieces(
            order in proptest::sample::subsequence((0u32..12).collect::<Vec<_>>(), 0..12)
                .prop_shuffle(),
            chunk in 1usize..300_000,
            xen in proptest::bool::ANY,
        ) {
            let style = if xen { Style::XenServer } else { Style::Qemu };
            let mut b = Builder::new(Kind::Dynamic, style, 23 * MIB);
            for (n, i) in order.iter().enumerate() {
                b = b.random_block(*i, n as u64);
            }
            let vhd = b.build().bytes;
            proptest::prop_assert_eq!(qcow2_guest(&convert(&vhd, chunk)), vhd_guest(&vhd));
        }
    }

    #[test]
    fn sectors_the_bitmap_leaves_clear_read_as_zeros() {
        let mut image = Builder::new(Kind::Dynamic, Style::XenServer, 4 * MIB)
            .block(1, 0x5A)
            .build();
        let sector = image.bat(1) as usize * 512;
        image.bytes[sector] = 0x7F; // sector 0 of block 1 never written
        let q = convert(&image.bytes, 65536);
        let guest = qcow2_guest(&q);
        assert!(
            guest[2 * MIB as usize..2 * MIB as usize + 512]
                .iter()
                .all(|b| *b == 0)
        );
        assert_eq!(guest[2 * MIB as usize + 512], 0x5A);
    }

    #[test]
    fn a_fixed_vhd_and_bytes_out_of_order_are_refused() {
        let fixed = Builder::new(Kind::Fixed, Style::Qemu, 2 * MIB)
            .build()
            .bytes;
        let f = footer::Footer::new(fixed[fixed.len() - 512..].try_into().unwrap());
        let h = dynamic::Header::new([0; 1024]);
        assert!(matches!(
            VhdToQcow2::new(&f, &h, &[]),
            Err(Error::NotDynamic(_))
        ));
        let vhd = Builder::new(Kind::Dynamic, Style::Qemu, 4 * MIB)
            .block(1, 1)
            .build()
            .bytes;
        let (f, h, bat) = parts(&vhd);
        let mut c = VhdToQcow2::new(&f, &h, &bat).unwrap();
        let mut out = Vec::new();
        c.push(0, &vhd[..4096], &mut out).unwrap();
        assert!(matches!(
            c.push(8192, &vhd[8192..9000], &mut out),
            Err(Error::OutOfOrder { .. })
        ));
        // A disk whose tables would not fit in memory is refused, not allocated.
        let mut huge = vhd.clone();
        huge[48..56].copy_from_slice(&(1u64 << 62).to_be_bytes());
        let (f2, h2, bat2) = parts(&huge);
        assert!(matches!(
            VhdToQcow2::new(&f2, &h2, &bat2),
            Err(Error::TooLarge(_))
        ));
        // A VHD cut before its last block.
        let mut c = VhdToQcow2::new(&f, &h, &bat).unwrap();
        c.push(0, &vhd[..4096], &mut out).unwrap();
        assert!(matches!(c.finish(), Err(Error::Truncated { block: 1, .. })));
    }
}
