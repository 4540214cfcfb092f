//! What a simulated server's or image's disk holds, and how it becomes the segments of an export.
//!
//! A disk is either *generated* (a deterministic XenServer-style dynamic VHD described by a
//! [`Builder`], so a multi-GiB image costs nothing until it is exported) or a *file* (the bytes of an
//! imported VHD, kept under the data directory). Exports stream the VHD into segment files of a fixed
//! size while computing each segment's md5, so memory stays small whatever the image size.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::{Digest, Md5};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

use crate::vhd::build::{self, Builder, Kind, Style};

/// How to generate a disk: its size, how much of it holds data, and the seed of its content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSpec {
    pub virtual_size: u64,
    /// Fraction of 2 MiB blocks allocated, 0.0 to 1.0.
    pub allocated: f64,
    pub seed: u64,
}

impl DiskSpec {
    /// The XenServer-style dynamic VHD this spec describes: blocks chosen by the seed, each filled
    /// with pseudo-random data.
    pub fn builder(&self) -> Builder {
        let blocks = self.virtual_size.div_ceil(u64::from(build::BLOCK_SIZE));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let threshold = (self.allocated.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let mut b = Builder::new(Kind::Dynamic, Style::XenServer, self.virtual_size);
        for i in 0..blocks {
            if rng.next_u64() <= threshold && self.allocated > 0.0 {
                b = b.random_block(u32::try_from(i).unwrap_or(u32::MAX), self.seed);
            }
        }
        b
    }
}

/// A disk's content.
#[derive(Debug, Clone)]
pub enum Disk {
    Generated(Arc<Builder>),
    File { path: PathBuf, len: u64 },
}

impl Disk {
    pub fn generated(spec: DiskSpec) -> Self {
        Self::Generated(Arc::new(spec.builder()))
    }

    /// The VHD's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Generated(b) => b.len(),
            Self::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The SHA-256 of the whole VHD, hex. Blocking: run it on the blocking pool.
    pub fn sha256(&self) -> io::Result<String> {
        struct Hashing(sha2::Sha256);
        impl Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                sha2::Digest::update(&mut self.0, buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(sha2::Digest::new());
        self.write_to(&mut h)?;
        Ok(hex::encode(sha2::Digest::finalize(h.0)))
    }

    /// Writes the whole VHD to `w`. Blocking: run it on the blocking pool.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Self::Generated(b) => b.write_to(w),
            Self::File { path, .. } => {
                io::copy(&mut File::open(path)?, w)?;
                Ok(())
            }
        }
    }
}

/// One written segment: its file, length and md5.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    pub bytes: u64,
    pub md5: String,
}

/// A writer that cuts what it is given into files of `segment_size` bytes, hashing each.
pub struct SegmentWriter {
    dir: PathBuf,
    prefix: String,
    segment_size: u64,
    current: Option<(BufWriter<File>, PathBuf, u64, Md5)>,
    done: Vec<Segment>,
}

impl SegmentWriter {
    pub fn new(dir: &Path, prefix: &str, segment_size: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            segment_size: segment_size.max(1),
            current: None,
            done: Vec::new(),
        }
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some((mut w, path, bytes, md5)) = self.current.take() {
            w.flush()?;
            self.done.push(Segment {
                path,
                bytes,
                md5: hex::encode(md5.finalize()),
            });
        }
        Ok(())
    }

    /// Closes the last segment and returns them all, in order.
    pub fn finish(mut self) -> io::Result<Vec<Segment>> {
        self.close_current()?;
        Ok(self.done)
    }
}

impl Write for SegmentWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.2 >= self.segment_size)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            let path = self
                .dir
                .join(format!("{}{:05}.seg", self.prefix, self.done.len() + 1));
            let file = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
            self.current = Some((file, path, 0, Md5::new()));
        }
        let Some((w, _, bytes, md5)) = self.current.as_mut() else {
            return Err(io::Error::other("segment writer has no open segment"));
        };
        let room = (self.segment_size - *bytes).min(buf.len() as u64) as usize;
        w.write_all(&buf[..room])?;
        md5.update(&buf[..room]);
        *bytes += room as u64;
        Ok(room)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.current.as_mut() {
            Some((w, ..)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Reads `len` bytes from `r` into the file at `path`, returning the md5. Blocking.
pub fn copy_to_file(r: &mut impl Read, path: &Path) -> io::Result<(u64, String)> {
    let mut w = BufWriter::with_capacity(256 * 1024, File::create(path)?);
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
    w.flush()?;
    Ok((total, hex::encode(md5.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_concatenate_to_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::generated(DiskSpec {
            virtual_size: 32 << 20,
            allocated: 0.5,
            seed: 42,
        });
        let mut w = SegmentWriter::new(dir.path(), "x-", 3 << 20);
        disk.write_to(&mut w).unwrap();
        let segs = w.finish().unwrap();
        let mut whole = Vec::new();
        disk.write_to(&mut whole).unwrap();
        assert_eq!(whole.len() as u64, disk.len());
        assert_eq!(segs.len() as u64, disk.len().div_ceil(3 << 20));
        let joined: Vec<u8> = segs
            .iter()
            .flat_map(|s| std::fs::read(&s.path).unwrap())
            .collect();
        assert_eq!(joined, whole);
        assert_eq!(segs[0].md5, hex::encode(Md5::digest(&whole[..3 << 20])));
    }
}
