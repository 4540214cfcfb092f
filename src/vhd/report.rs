//! The validation report: everything learned about one VHD, serialisable as JSON and renderable as a
//! short human summary.

use serde::Serialize;

use super::findings::{Finding, Problem, Verdict};
use super::geometry::Geometry;

/// What validation learned about one VHD. Fields are `None` when the file was too broken to tell.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// "fixed", "dynamic", "differencing", "none", "reserved (deprecated)" or "unknown".
    pub disk_type: Option<&'static str>,
    /// The raw disk type field.
    pub disk_type_raw: Option<u32>,
    pub virtual_size: Option<VirtualSize>,
    /// The file's length minus the trailing footer (docs/vhd.md).
    pub physical_size: Option<u64>,
    pub file_size: u64,
    pub creator: Option<Creator>,
    pub unique_id: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub geometry: Option<Geometry>,
    pub original_size: Option<u64>,
    /// Whether the footer is the legacy 511-byte form.
    pub short_footer: bool,
    pub block_size: Option<u32>,
    pub bat: Option<BatSummary>,
    /// Parent fields of a differencing disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Finding>,
    pub limits: Limits,
    pub io: ReadStats,
}

/// How the virtual size was derived, since it is not one field (qemu `block/vpc.c` trusts the CHS product for some creators).
#[derive(Debug, Clone, Serialize)]
pub struct VirtualSize {
    pub bytes: u64,
    /// "current_size" or "chs".
    pub derived_from: &'static str,
    pub current_size: u64,
    pub chs_product: u64,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Creator {
    pub application: String,
    /// "major.minor".
    pub version: String,
    pub version_raw: u32,
    pub host_os: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timestamp {
    /// Seconds since 2000-01-01T00:00:00Z, as stored.
    pub raw: u32,
    pub rfc3339: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatSummary {
    /// max_table_entries from the header.
    pub entries: u32,
    pub allocated: u64,
    /// How many entries were examined (all of them unless the table is absurdly large).
    pub examined: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parent {
    pub unique_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_virtual_size: u64,
    pub max_physical_size: u64,
}

/// How much of the object validation read: a few KiB whatever the image size.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ReadStats {
    pub reads: u64,
    pub bytes_read: u64,
}

fn size(bytes: u64) -> String {
    format!(
        "{} ({bytes} bytes)",
        humansize::format_size(bytes, humansize::BINARY)
    )
}

impl Report {
    /// A compact, readable summary: a verdict line, a few facts, then each problem and warning.
    pub fn render_human(&self, name: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        match self.verdict.code {
            None => {
                let _ = writeln!(out, "{name}: OK — the import would be accepted");
            }
            Some(code) => {
                let _ = writeln!(
                    out,
                    "{name}: REJECTED — import would fail with code {code}: {}",
                    code.meaning()
                );
            }
        }
        self.render_facts(&mut out);
        for p in &self.problems {
            let f = &p.finding;
            let _ = write!(
                out,
                "  error {}: {} at byte {}: found {}",
                p.code, f.field, f.offset, f.found
            );
            if !f.expected.is_empty() {
                let _ = write!(out, ", expected {}", f.expected);
            }
            let _ = writeln!(out, " ({})", f.detail);
        }
        for w in &self.warnings {
            let _ = writeln!(
                out,
                "  warning: {} at byte {}: {} ({})",
                w.field, w.offset, w.found, w.detail
            );
        }
        if let Some(advice) = self.verdict.advice {
            let _ = writeln!(out, "  what to do: {advice}");
        }
        out
    }

    /// The lines about the disk itself: type and sizes, creator, identity, blocks.
    fn render_facts(&self, out: &mut String) {
        use std::fmt::Write;
        if let Some(kind) = self.disk_type {
            let _ = write!(out, "  {kind}");
            if let Some(v) = &self.virtual_size {
                let _ = write!(
                    out,
                    ", virtual {} from {}",
                    size(v.bytes),
                    v.derived_from.replace('_', " ")
                );
            }
            if let Some(p) = self.physical_size {
                let _ = write!(out, ", physical {}", size(p));
            }
            out.push('\n');
        }
        if let Some(c) = &self.creator {
            let _ = write!(
                out,
                "  creator \"{}\" {} on {}",
                c.application, c.version, c.host_os
            );
            if let Some(t) = &self.timestamp {
                let _ = write!(out, ", created {}", t.rfc3339);
            }
            out.push('\n');
        }
        if let Some(id) = &self.unique_id {
            let _ = write!(out, "  uuid {id}");
            if let Some(g) = self.geometry {
                let _ = write!(out, ", geometry {g}");
            }
            out.push('\n');
        }
        if let (Some(bs), Some(bat)) = (self.block_size, &self.bat) {
            let _ = writeln!(
                out,
                "  blocks of {}, {} of {} allocated",
                humansize::format_size(bs, humansize::BINARY),
                bat.allocated,
                bat.entries
            );
        }
    }
}
