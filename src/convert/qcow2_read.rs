//! Reading a qcow2 image's guest bytes, for an OpenStack image going to a legacy region as a VHD.
//!
//! The field layout is qemu's `docs/interop/qcow2.txt` (gitlab.com/qemu-project/qemu): a header,
//! an L1 table of L2 table offsets, L2 tables of cluster descriptors. A descriptor is a data
//! cluster at an offset, a cluster that reads as zeros (bit 0, version 3), an unallocated one
//! (zeros: there is no backing file), or a compressed one (bit 62: raw deflate, as qemu's
//! `qcow2_decompress` reads it, `inflateInit2(-12)` filling exactly one cluster).
//!
//! Refused, because the image alone does not hold the disk or imgferry cannot read it: a backing
//! file, encryption, an external data file, extended L2 entries (subclusters), zstd compression,
//! an image marked corrupt, and any incompatible feature bit this reader does not know.
//!
//! No I/O of its own: the file is read through [`ReadAt`], which the caller implements for a
//! file and the tests and fuzzer for a byte slice. Every offset read from the image is checked
//! against the file's length before it is used, so a hostile image is an [`Error`], never a
//! panic or a huge allocation.

/// The format's magic, `QFI\xfb`.
const MAGIC: &[u8; 4] = b"QFI\xfb";
/// Bits 9-55 of an L1 or L2 entry: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// An L2 entry's compressed-cluster flag.
const COMPRESSED: u64 = 1 << 62;
/// An L2 entry's "reads as zeros" flag (version 3).
const ZERO: u64 = 1;
/// Incompatible feature bits: dirty, corrupt, external data file, compression type, extended L2.
const DIRTY: u64 = 1;
const CORRUPT: u64 = 1 << 1;
const EXTERNAL_DATA: u64 = 1 << 2;
const COMPRESSION_TYPE: u64 = 1 << 3;
const EXTENDED_L2: u64 = 1 << 4;
/// The largest disk a VHD can describe (2040 GiB, the VHD specification's limit): nothing larger
/// can go on to a legacy region.
pub const MAX_VIRTUAL_SIZE: u64 = 2040 << 30;

/// Why a qcow2 image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a qcow2 image (no QFI\\xfb magic at its start)")]
    NotQcow2,
    #[error("qcow2 version {0} is not one imgferry reads (2 and 3 are)")]
    Version(u32),
    #[error("the qcow2 image has a backing file: it holds only the changes to another image")]
    Backing,
    #[error("the qcow2 image is encrypted")]
    Encrypted,
    #[error("the qcow2 image uses {0}, which imgferry does not read; `qemu-img convert` it first")]
    Feature(&'static str),
    #[error("the qcow2 image is marked corrupt; `qemu-img check -r all` it first")]
    Corrupt,
    #[error("the qcow2 image's {0}")]
    Malformed(String),
    #[error("the qcow2 image's virtual size ({0} bytes) is over a VHD's 2040 GiB")]
    TooLarge(u64),
    #[error("reading the qcow2 image: {0}")]
    Io(#[from] std::io::Error),
}

/// Random-access reads of the image file.
pub trait ReadAt {
    /// Fills `buf` from `offset`; bytes past the end of the file read as zeros (as qemu reads
    /// a compressed cluster that ends with the file).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// The file's length.
    fn size(&self) -> u64;
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// Where one guest cluster's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cluster {
    Zeros,
    Data(u64),
    Compressed { offset: u64, len: u64 },
}

/// An open qcow2 image: its header's facts and its L1 table, with the last L2 table read.
pub struct Qcow2Reader<R> {
    file: R,
    cluster_bits: u32,
    virtual_size: u64,
    l1: Vec<u64>,
    /// Version 3 knows the zero flag; in version 2 bit 0 of an L2 entry is reserved.
    zero_flag: bool,
    /// The L1 index and contents of the L2 table read last (guest order visits each once).
    l2: Option<(usize, Vec<u64>)>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

impl<R: ReadAt> Qcow2Reader<R> {
    /// Reads and checks the header and the L1 table.
    pub fn open(mut file: R) -> Result<Self, Error> {
        let len = file.size();
        let mut h = [0u8; 112];
        file.read_at(0, &mut h)?;
        if &h[..4] != MAGIC {
            return Err(Error::NotQcow2);
        }
        let version = be32(&h, 4);
        if version != 2 && version != 3 {
            return Err(Error::Version(version));
        }
        if be64(&h, 8) != 0 {
            return Err(Error::Backing);
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Error::Malformed(format!(
                "cluster_bits {cluster_bits} is outside 9..=21"
            )));
        }
        let virtual_size = be64(&h, 24);
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Error::TooLarge(virtual_size));
        }
        if be32(&h, 32) != 0 {
            return Err(Error::Encrypted);
        }
        if version == 3 {
            let incompatible = be64(&h, 72);
            let header_len = be32(&h, 100);
            if incompatible & CORRUPT != 0 {
                return Err(Error::Corrupt);
            }
            if incompatible & EXTERNAL_DATA != 0 {
                return Err(Error::Feature("an external data file"));
            }
            if incompatible & EXTENDED_L2 != 0 {
                return Err(Error::Feature("extended L2 entries (subclusters)"));
            }
            if incompatible & COMPRESSION_TYPE != 0 && header_len > 104 && h[104] != 0 {
                return Err(Error::Feature("zstd compression"));
            }
            let known = DIRTY | CORRUPT | EXTERNAL_DATA | COMPRESSION_TYPE | EXTENDED_L2;
            if incompatible & !known != 0 {
                return Err(Error::Feature(
                    "an incompatible feature bit this reader predates",
                ));
            }
        }
        let cluster = 1u64 << cluster_bits;
        let per_l2 = cluster / 8;
        let needed = virtual_size.div_ceil(cluster).div_ceil(per_l2);
        let l1_entries = u64::from(be32(&h, 36));
        let l1_offset = be64(&h, 40);
        if l1_entries < needed {
            return Err(Error::Malformed(format!(
                "L1 table has {l1_entries} entries; its size needs {needed}"
            )));
        }
        // Entries beyond what the size needs are never read.
        let l1_bytes = needed * 8;
        if l1_offset.checked_add(l1_bytes).is_none_or(|end| end > len) {
            return Err(Error::Malformed(format!(
                "L1 table ({l1_bytes} bytes at {l1_offset}) is past the end of the file ({len} bytes)"
            )));
        }
        let mut raw = vec![0u8; l1_bytes as usize];
        file.read_at(l1_offset, &mut raw)?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Self {
            file,
            cluster_bits,
            virtual_size,
            l1,
            zero_flag: version == 3,
            l2: None,
        })
    }

    /// The guest disk's size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// How many `block`-sized pieces of the guest disk hold a data or compressed cluster (what
    /// a VHD of it can at most allocate). Reads every L2 table, no data.
    pub fn allocated_blocks(&mut self, block: u64) -> Result<u64, Error> {
        let cluster = self.cluster_size();
        let per_l2 = cluster / 8;
        let mut seen = vec![false; self.virtual_size.div_ceil(block) as usize];
        for l1_index in 0..self.l1.len() {
            if self.l1[l1_index] & OFFSET_MASK == 0 {
                continue;
            }
            for l2_index in 0..per_l2 {
                let at = (l1_index as u64 * per_l2 + l2_index) * cluster;
                if at >= self.virtual_size {
                    break;
                }
                if self.cluster_at(at)? != Cluster::Zeros {
                    seen[(at / block) as usize] = true;
                }
            }
        }
        Ok(seen.iter().filter(|&&s| s).count() as u64)
    }

    /// Fills `buf` with the guest bytes from `offset` (cluster-aligned: the caller reads whole
    /// blocks of a size that is a multiple of the cluster size, or the disk's tail). Returns
    /// whether any cluster of the range holds data; `false` means it is all zeros without
    /// reading any.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<bool, Error> {
        let cluster = self.cluster_size();
        let mut any = false;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % cluster) as usize;
            let n = (cluster as usize - within).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.cluster_at(at)? {
                Cluster::Zeros => out.fill(0),
                Cluster::Data(host) => {
                    self.file.read_at(host + within as u64, out)?;
                    any = true;
                }
                Cluster::Compressed { offset, len } => {
                    let whole = self.inflate(offset, len)?;
                    out.copy_from_slice(&whole[within..within + n]);
                    any = true;
                }
            }
            done += n;
        }
        Ok(any)
    }

    /// The descriptor of the guest cluster holding byte `at`.
    fn cluster_at(&mut self, at: u64) -> Result<Cluster, Error> {
        if at >= self.virtual_size {
            return Ok(Cluster::Zeros);
        }
        let cluster = self.cluster_size();
        let per_l2 = cluster / 8;
        let index = at / cluster;
        let (l1_index, l2_index) = ((index / per_l2) as usize, (index % per_l2) as usize);
        let l2_offset = self.l1[l1_index] & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Cluster::Zeros);
        }
        if self.l2.as_ref().is_none_or(|(i, _)| *i != l1_index) {
            let len = self.file.size();
            if !l2_offset.is_multiple_of(cluster) || l2_offset + cluster > len {
                return Err(Error::Malformed(format!(
                    "L2 table {l1_index} at {l2_offset} is unaligned or past the end of the file"
                )));
            }
            let mut raw = vec![0u8; cluster as usize];
            self.file.read_at(l2_offset, &mut raw)?;
            self.l2 = Some((l1_index, raw.chunks_exact(8).map(|c| be64(c, 0)).collect()));
        }
        let entry = self.l2.as_ref().map_or(0, |(_, t)| t[l2_index]);
        self.describe(entry, index)
    }

    fn describe(&self, entry: u64, index: u64) -> Result<Cluster, Error> {
        let cluster = self.cluster_size();
        let len = self.file.size();
        if entry & COMPRESSED != 0 {
            // Bits 0..x-1 the offset, x..61 the sectors after the first, x = 62 - (bits - 8).
            let x = 62 - (self.cluster_bits - 8);
            let offset = entry & ((1u64 << x) - 1);
            let sectors = ((entry & !(COMPRESSED | (1 << 63))) >> x) + 1;
            let span = sectors * 512 - (offset & 511);
            if offset >= len {
                return Err(Error::Malformed(format!(
                    "compressed cluster {index} at {offset} is past the end of the file"
                )));
            }
            return Ok(Cluster::Compressed {
                offset,
                len: span.min(len - offset).min(2 * cluster),
            });
        }
        if self.zero_flag && entry & ZERO != 0 {
            return Ok(Cluster::Zeros);
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            return Ok(Cluster::Zeros);
        }
        if !host.is_multiple_of(cluster) || host + cluster > len {
            return Err(Error::Malformed(format!(
                "cluster {index} at {host} is unaligned or past the end of the file"
            )));
        }
        Ok(Cluster::Data(host))
    }

    /// One compressed cluster, inflated: raw deflate that must fill exactly one cluster.
    fn inflate(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let mut input = vec![0u8; len as usize];
        self.file.read_at(offset, &mut input)?;
        let mut out = vec![0u8; self.cluster_size() as usize];
        let mut inflater = flate2::Decompress::new(false);
        inflater
            .decompress(&input, &mut out, flate2::FlushDecompress::Finish)
            .map_err(|e| Error::Malformed(format!("compressed cluster at {offset}: {e}")))?;
        if inflater.total_out() != self.cluster_size() {
            return Err(Error::Malformed(format!(
                "compressed cluster at {offset} inflates to {} bytes, not one cluster",
                inflater.total_out()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 3 image of `size` bytes with 64 KiB clusters, one L2 table at 0x30000 and the
    /// L2 entries given; data clusters follow from 0x40000.
    fn image(size: u64, entries: &[(usize, u64)], tail: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x40000];
        f[..4].copy_from_slice(MAGIC);
        f[4..8].copy_from_slice(&3u32.to_be_bytes());
        f[20..24].copy_from_slice(&16u32.to_be_bytes());
        f[24..32].copy_from_slice(&size.to_be_bytes());
        f[36..40].copy_from_slice(&1u32.to_be_bytes());
        f[40..48].copy_from_slice(&0x20000u64.to_be_bytes());
        f[100..104].copy_from_slice(&104u32.to_be_bytes());
        f[0x20000..0x20008].copy_from_slice(&(0x30000u64 | 1 << 63).to_be_bytes());
        for &(i, e) in entries {
            f[0x30000 + i * 8..0x30000 + i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        f.extend_from_slice(tail);
        f
    }

    #[test]
    fn data_zero_and_unallocated_clusters_read_as_qemu_reads_them() {
        let mut data = vec![7u8; 0x10000];
        data[5] = 9;
        let f = image(
            1 << 20,
            &[(0, 0x40000 | 1 << 63), (1, 0x40000 | ZERO), (3, 0)],
            &data,
        );
        let mut r = Qcow2Reader::open(f.as_slice()).unwrap();
        assert_eq!(r.virtual_size(), 1 << 20);
        let mut buf = vec![1u8; 0x40000];
        assert!(r.read(0, &mut buf).unwrap());
        assert_eq!(&buf[..0x10000], data.as_slice());
        assert!(buf[0x10000..].iter().all(|&b| b == 0));
        let mut tail = vec![1u8; 0x40000];
        assert!(!r.read(0x40000, &mut tail).unwrap());
        assert!(tail.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_compressed_cluster_inflates_to_one_cluster() {
        use std::io::Write;
        let plain: Vec<u8> = (0..0x10000u32).map(|i| (i % 251) as u8).collect();
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&plain).unwrap();
        let packed = z.finish().unwrap();
        let sectors = (packed.len() as u64).div_ceil(512) - 1;
        let entry = COMPRESSED | sectors << (62 - 8) | 0x40000;
        let f = image(1 << 20, &[(2, entry)], &packed);
        let mut r = Qcow2Reader::open(f.as_slice()).unwrap();
        let mut buf = vec![0u8; 0x10000];
        assert!(r.read(0x20000, &mut buf).unwrap());
        assert_eq!(buf, plain);
    }

    #[test]
    fn what_the_image_alone_cannot_give_is_refused() {
        let mut backed = image(1 << 20, &[], &[]);
        backed[8..16].copy_from_slice(&512u64.to_be_bytes());
        assert!(matches!(
            Qcow2Reader::open(backed.as_slice()),
            Err(Error::Backing)
        ));
        let mut corrupt = image(1 << 20, &[], &[]);
        corrupt[72..80].copy_from_slice(&CORRUPT.to_be_bytes());
        assert!(matches!(
            Qcow2Reader::open(corrupt.as_slice()),
            Err(Error::Corrupt)
        ));
        let mut subclusters = image(1 << 20, &[], &[]);
        subclusters[72..80].copy_from_slice(&EXTENDED_L2.to_be_bytes());
        assert!(matches!(
            Qcow2Reader::open(subclusters.as_slice()),
            Err(Error::Feature(_))
        ));
        let past_end = image(1 << 20, &[(0, 0x7000_0000)], &[]);
        let mut r = Qcow2Reader::open(past_end.as_slice()).unwrap();
        assert!(matches!(
            r.read(0, &mut [0u8; 512]),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            Qcow2Reader::open(&b"not an image"[..]),
            Err(Error::NotQcow2)
        ));
    }
}
