//! `imgferry convert IN.vhd OUT.qcow2` (hidden; for benchmarks and for checking the converter by
//! hand): a dynamic VHD file to a qcow2 file through the streaming converter, read once forward
//! and written once forward, with the throughput printed as one JSON line.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use super::{Error, Outcome};
use crate::convert::VhdToQcow2;
use crate::vhd::{dynamic, footer};

/// Why a conversion stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} cannot be converted: {source}")]
    Convert {
        path: String,
        #[source]
        source: crate::convert::Error,
    },
}

/// The largest BAT read: 16 Mi entries (32 TiB of 2 MiB blocks).
const MAX_BAT: u64 = 64 << 20;
/// Bytes read from the VHD at a time.
const PIECE: usize = 8 << 20;

/// Runs the conversion.
pub fn run(input: &Path, output: &Path) -> Result<Outcome, Error> {
    let shown = input.display().to_string();
    let read_err = |source| ConvertError::Read {
        path: shown.clone(),
        source,
    };
    let write_err = |source| ConvertError::Write {
        path: output.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(input).map_err(read_err)?;
    let mut head = vec![0u8; 1536];
    file.read_exact(&mut head).map_err(read_err)?;
    let f = footer::Footer::new(head[..512].try_into().unwrap_or([0; 512]));
    let h = dynamic::Header::new(head[512..1536].try_into().unwrap_or([0; 1024]));
    let bat_len = (u64::from(h.max_entries()) * 4).min(MAX_BAT);
    let mut bat = vec![0u8; bat_len as usize];
    read_at(&file, &mut bat, h.table_offset()).map_err(read_err)?;
    let mut c = VhdToQcow2::new(&f, &h, &bat).map_err(|source| ConvertError::Convert {
        path: shown.clone(),
        source,
    })?;
    let started = Instant::now();
    let mut converting = std::time::Duration::ZERO;
    let mut out =
        std::io::BufWriter::with_capacity(PIECE, std::fs::File::create(output).map_err(write_err)?);
    out.write_all(&c.metadata()).map_err(write_err)?;
    let mut file = std::fs::File::open(input).map_err(read_err)?;
    let (mut buf, mut made) = (vec![0u8; PIECE], Vec::with_capacity(PIECE));
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        made.clear();
        let t = Instant::now();
        c.push(offset, &buf[..n], &mut made)
            .map_err(|source| ConvertError::Convert {
                path: shown.clone(),
                source,
            })?;
        converting += t.elapsed();
        out.write_all(&made).map_err(write_err)?;
        offset += n as u64;
    }
    c.finish().map_err(|source| ConvertError::Convert {
        path: shown.clone(),
        source,
    })?;
    out.flush().map_err(write_err)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"event": "converted", "vhd_bytes": offset,
            "qcow2_bytes": c.output_len(), "seconds": seconds,
            "converter_seconds": converting.as_secs_f64()})
    );
    Ok(Outcome::Done)
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, at)
}
