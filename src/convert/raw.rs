//! Dynamic VHD → raw: the guest's bytes in guest order, block by block. A block's bytes are read
//! (its sector bitmap and data, one ranged read) wherever the block allocation table places it,
//! and rendered as Xen reads them: sectors whose bitmap bit is clear are zeros, an unallocated
//! block is all zeros, and the last block stops at the disk's size. No I/O of its own: the caller
//! reads what [`VhdToRaw::source_of`] names and passes it to [`VhdToRaw::render`].

use super::{Error, Table, apply_bitmap};
use crate::vhd::{dynamic, footer};

/// Renders one dynamic VHD as a raw disk of its virtual size.
pub struct VhdToRaw {
    /// Per guest block, the sector where its bitmap starts in the VHD (`u32::MAX`: unallocated,
    /// as in the BAT): 4 bytes a block, so the map is never larger than the BAT it came from.
    map: Vec<u32>,
    block_size: u64,
    bitmap_bytes: u64,
    virtual_size: u64,
}

impl VhdToRaw {
    /// The renderer for a VHD with this footer, dynamic header and BAT (as on disk).
    pub fn new(
        footer: &footer::Footer,
        header: &dynamic::Header,
        bat: &[u8],
    ) -> Result<Self, Error> {
        let t = Table::read(footer, header, bat)?;
        let mut map = vec![u32::MAX; t.virtual_size.div_ceil(t.block_size) as usize];
        for b in &t.blocks {
            map[b.index as usize] = (b.offset / 512) as u32;
        }
        Ok(Self {
            map,
            block_size: t.block_size,
            bitmap_bytes: t.bitmap_bytes,
            virtual_size: t.virtual_size,
        })
    }

    /// The raw disk's length: the VHD's virtual size.
    pub fn output_len(&self) -> u64 {
        self.virtual_size
    }

    /// How many blocks the disk has (the last may be partly past its end).
    pub fn blocks(&self) -> usize {
        self.map.len()
    }

    /// Where block `i`'s bitmap and data are in the VHD, as (offset, length); `None` when it is
    /// not allocated (it reads as zeros).
    pub fn source_of(&self, i: usize) -> Option<(u64, u64)> {
        self.map
            .get(i)
            .copied()
            .filter(|s| *s != u32::MAX)
            .map(|s| (u64::from(s) * 512, self.bitmap_bytes + self.block_size))
    }

    /// Block `i`'s guest bytes, from what was read at [`VhdToRaw::source_of`] (`None` for an
    /// unallocated block). `read` must be exactly that long.
    pub fn render(&self, i: usize, read: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let start = i as u64 * self.block_size;
        let len = self.block_size.min(self.virtual_size.saturating_sub(start)) as usize;
        let Some(read) = read else {
            return Ok(vec![0; len]);
        };
        let want = (self.bitmap_bytes + self.block_size) as usize;
        if read.len() != want {
            return Err(Error::Truncated {
                at: read.len() as u64,
                block: i as u32,
                offset: self.source_of(i).map_or(0, |(at, _)| at),
            });
        }
        let (bitmap, data) = read.split_at(self.bitmap_bytes as usize);
        let mut out = data[..len].to_vec();
        apply_bitmap(bitmap, 0, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhd::build::{Builder, Kind, Style};

    const MIB: u64 = 1 << 20;

    /// The raw rendering of `vhd`, reading each block where the table says.
    fn raw_of(vhd: &[u8]) -> Vec<u8> {
        let f = footer::Footer::new(vhd[..512].try_into().unwrap());
        let h = dynamic::Header::new(vhd[512..1536].try_into().unwrap());
        let at = h.table_offset() as usize;
        let bat = &vhd[at..at + h.max_entries() as usize * 4];
        let r = VhdToRaw::new(&f, &h, bat).unwrap();
        let mut out = Vec::new();
        for i in 0..r.blocks() {
            let read = r
                .source_of(i)
                .map(|(at, len)| &vhd[at as usize..(at + len) as usize]);
            out.extend(r.render(i, read).unwrap());
        }
        assert_eq!(out.len() as u64, r.output_len());
        out
    }

    #[test]
    fn raw_is_the_guest_view_with_partial_bitmaps_and_an_odd_size() {
        // Blocks out of order in the file, a sector never written, a size not a whole block.
        let mut image = Builder::new(Kind::Dynamic, Style::XenServer, 5 * MIB + 3 * 512)
            .random_block(2, 5)
            .random_block(0, 6)
            .block(1, 0x5A)
            .build();
        let sector = image.bat(1) as usize * 512;
        image.bytes[sector] = 0x7F; // sector 0 of block 1 never written
        let raw = raw_of(&image.bytes);
        assert_eq!(raw, super::super::tests::vhd_guest(&image.bytes));
        assert!(
            raw[2 * MIB as usize..2 * MIB as usize + 512]
                .iter()
                .all(|b| *b == 0)
        );
        assert_eq!(raw[2 * MIB as usize + 512], 0x5A);
    }

    #[test]
    fn a_short_read_is_an_error_not_a_short_disk() {
        let vhd = Builder::new(Kind::Dynamic, Style::XenServer, 4 * MIB)
            .random_block(0, 1)
            .build()
            .bytes;
        let f = footer::Footer::new(vhd[..512].try_into().unwrap());
        let h = dynamic::Header::new(vhd[512..1536].try_into().unwrap());
        let at = h.table_offset() as usize;
        let r = VhdToRaw::new(&f, &h, &vhd[at..at + h.max_entries() as usize * 4]).unwrap();
        assert!(r.render(0, Some(&[0u8; 100])).is_err());
        assert_eq!(r.render(1, None).unwrap(), vec![0u8; 2 * MIB as usize]);
    }
}
