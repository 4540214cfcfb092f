//! A dynamic VHD laid out block by block as the guest disk is read, for an OpenStack image (raw
//! or qcow2) going to a legacy region, whose import takes only VHDs.
//!
//! The image follows XenServer's own conventions (blktap's `vhd-util create`, as
//! [`crate::vhd::build`] describes them): 2 MiB blocks, the size rounded up to 2 MiB, a batmap
//! after the BAT, block data aligned to 4 KiB. That is what the import service reads best, and
//! what [`crate::vhd::validate`] checks the result against before anything is uploaded.
//!
//! Blocks are placed in the order the caller offers them (guest order); a block that reads as
//! zeros is never placed, so the VHD holds only what the disk holds. The BAT is known only at
//! the end, so the caller writes each placed block at the offset [`DynamicVhd::place`] gives,
//! then [`DynamicVhd::head`] at offset 0 and [`DynamicVhd::footer`] at [`DynamicVhd::len`] less
//! 512. [`write`] does that for a [`GuestDisk`] (a raw file, or a [`Qcow2Reader`]). No I/O of
//! its own: the disk is read through [`ReadAt`] and the VHD written through a callback.

use super::qcow2_read::{self, Qcow2Reader, ReadAt};
use crate::vhd::build::{BLOCK_SIZE, Builder, Kind, Style};

/// A guest disk read at offsets.
pub trait GuestDisk {
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from guest offset `at`; `false` when nothing was read (all zeros).
    fn read(&mut self, at: u64, buf: &mut [u8]) -> Result<bool, qcow2_read::Error>;
}

/// A raw image: the file is the disk.
pub struct RawDisk<R>(pub R);

impl<R: ReadAt> GuestDisk for RawDisk<R> {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn read(&mut self, at: u64, buf: &mut [u8]) -> Result<bool, qcow2_read::Error> {
        self.0.read_at(at, buf)?;
        Ok(true)
    }
}

impl<R: ReadAt> GuestDisk for Qcow2Reader<R> {
    fn size(&self) -> u64 {
        self.virtual_size()
    }

    fn read(&mut self, at: u64, buf: &mut [u8]) -> Result<bool, qcow2_read::Error> {
        Qcow2Reader::read(self, at, buf)
    }
}

/// Why [`write`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The source image could not be read as its format says.
    #[error(transparent)]
    Image(#[from] qcow2_read::Error),
    /// The VHD could not be written.
    #[error("{0}")]
    Out(std::io::Error),
}

/// Writes the dynamic VHD of `disk` through `write_at(offset, bytes)`: every 2 MiB block of the
/// disk that holds a byte other than zero, in guest order, then the head and the footer. Returns
/// the VHD's length, or `None` when `cancelled` said so between two blocks.
pub fn write(
    disk: &mut dyn GuestDisk,
    mut layout: DynamicVhd,
    write_at: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<u64>, WriteError> {
    let block = DynamicVhd::block_size();
    let mut buf = vec![0u8; block as usize];
    for index in 0..layout.blocks() {
        if cancelled() {
            return Ok(None);
        }
        let at = u64::from(index) * block;
        // The tail of a disk whose size is not a multiple of 2 MiB reads as zeros.
        let n = block.min(disk.size().saturating_sub(at)) as usize;
        // The reader fills all of `..n` (zeros included).
        buf[n..].fill(0);
        if n == 0 || !disk.read(at, &mut buf[..n])? || buf.iter().all(|&b| b == 0) {
            continue;
        }
        let offset = layout.place(index);
        write_at(offset, &BITMAP).map_err(WriteError::Out)?;
        write_at(offset + 512, &buf).map_err(WriteError::Out)?;
    }
    write_at(0, &layout.head()).map_err(WriteError::Out)?;
    let len = layout.len();
    write_at(len - 512, &layout.footer()).map_err(WriteError::Out)?;
    Ok(Some(len))
}

/// The layout of the VHD being written.
pub struct DynamicVhd {
    builder: Builder,
    /// Each placed block's index and the sector of its bitmap.
    placed: Vec<(u32, u64)>,
    /// The first free sector after what is placed.
    next: u64,
}

/// The bitmap that precedes every placed block: every sector present.
pub const BITMAP: [u8; 512] = [0xFF; 512];

impl DynamicVhd {
    /// The layout of a VHD of a disk of `virtual_size` bytes (rounded up to 2 MiB), identified
    /// by `unique_id`, created at `timestamp` (seconds since 2000-01-01, the VHD epoch).
    pub fn new(virtual_size: u64, unique_id: [u8; 16], timestamp: u32) -> Self {
        let builder = Builder::new(Kind::Dynamic, Style::XenServer, virtual_size)
            .unique_id(unique_id)
            .timestamp(timestamp);
        let next = builder.metadata_end() / 512;
        Self {
            builder,
            placed: Vec::new(),
            next,
        }
    }

    /// Bytes of guest disk per block.
    pub const fn block_size() -> u64 {
        BLOCK_SIZE as u64
    }

    /// Blocks the disk spans.
    pub fn blocks(&self) -> u32 {
        let (size, _) = self.builder.size_and_geometry();
        u32::try_from(size.div_ceil(Self::block_size())).unwrap_or(u32::MAX)
    }

    /// Places block `index` after those placed so far; returns the byte offset where its
    /// [`BITMAP`] goes, its 2 MiB of data right after it.
    pub fn place(&mut self, index: u32) -> u64 {
        let sector = self.builder.block_sector_from(self.next);
        self.placed.push((index, sector));
        self.next = sector + 1 + Self::block_size() / 512;
        sector * 512
    }

    /// What goes at offset 0, once every block is placed: the footer copy, the dynamic header,
    /// the BAT and the batmap.
    pub fn head(&self) -> Vec<u8> {
        self.builder.dynamic_head(&self.placed)
    }

    /// The footer, the file's last 512 bytes.
    pub fn footer(&self) -> [u8; 512] {
        self.builder.footer().raw
    }

    /// The file's length with what is placed so far.
    pub fn len(&self) -> u64 {
        self.next * 512 + 512
    }

    /// Whether no block is placed (the disk is all zeros).
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw disk with data in blocks 0 and 2 of three, converted: two blocks placed, and the
    /// validator reads the disk's size rounded up to 2 MiB.
    #[tokio::test]
    async fn a_raw_disk_converts_leaving_zero_blocks_out() {
        let mut raw = vec![0u8; (5 << 20) + 512];
        raw[10] = 1;
        raw[(5 << 20) + 100] = 2;
        let mut out = Vec::new();
        let len = write(
            &mut RawDisk(raw.as_slice()),
            DynamicVhd::new(raw.len() as u64, [7; 16], 1),
            &mut |at, bytes| {
                let end = at as usize + bytes.len();
                if out.len() < end {
                    out.resize(end, 0);
                }
                out[at as usize..end].copy_from_slice(bytes);
                Ok(())
            },
            &|| false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(len as usize, out.len());
        let report = crate::vhd::validate(
            &crate::vhd::MemSource { bytes: &out },
            &crate::vhd::Policy::default(),
        )
        .await
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.bat.map(|b| b.allocated), Some(2));
        assert_eq!(report.virtual_size.map(|v| v.bytes), Some(6 << 20));
    }

    /// Lays out blocks 0 and 3 of a 9 MiB disk, writes them into a buffer as a caller would, and
    /// checks the validator accepts the result and reads the data where it was put.
    #[tokio::test]
    async fn placed_blocks_make_a_vhd_the_validator_accepts() {
        let mut vhd = DynamicVhd::new(9 << 20, *b"imgferry-unit-id", 800_000_000);
        assert_eq!(vhd.blocks(), 5);
        let mut file = vec![0u8; 0];
        for (index, fill) in [(0u32, 1u8), (3, 2)] {
            let at = vhd.place(index) as usize;
            file.resize(at + 512 + (2 << 20), 0);
            file[at..at + 512].copy_from_slice(&BITMAP);
            file[at + 512..].fill(fill);
        }
        let head = vhd.head();
        file[..head.len()].copy_from_slice(&head);
        file.resize(vhd.len() as usize, 0);
        let end = file.len() - 512;
        file[end..].copy_from_slice(&vhd.footer());
        let report = crate::vhd::validate(
            &crate::vhd::MemSource { bytes: &file },
            &crate::vhd::Policy::default(),
        )
        .await
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.virtual_size.map(|v| v.bytes), Some(10 << 20));
        // Block 3's data begins 4 KiB-aligned right after its bitmap.
        let bat3 = u32::from_be_bytes(file[1536 + 12..1536 + 16].try_into().unwrap()) as usize;
        assert_eq!((bat3 * 512 + 512) % 4096, 0);
        assert_eq!(file[bat3 * 512 + 512], 2);
    }
}
