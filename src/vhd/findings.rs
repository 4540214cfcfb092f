//! What validation finds: problems (each tied to the import code it leads to), warnings, and the
//! predicted verdict.
//!
//! The codes are Rackspace Cloud Images' documented import failure codes
//! (rackerlabs/rackspace-how-to `content/cloud-images/cloud-images-faq.md` and rackerlabs/docs-cloud-images `api-docs/api-reference/methods/post-task-to-import-image-tasks.rst`). Which defect maps to which code, and the precedence when
//! several apply, is imgferry's policy (docs/vhd.md): the first code in
//! [`ImportCode::PRECEDENCE`] that any problem carries is the predicted one.

use serde::{Serialize, Serializer};

/// A documented Cloud Images import failure code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImportCode {
    /// 396: the file is not a valid VHD.
    NotVhd,
    /// 523: only fixed or dynamic disks may be imported.
    DiskType,
    /// 721: the VHD has a parent disk.
    HasParent,
    /// 614: the VHD's internal UUID is all zeros.
    NullUuid,
    /// 413: the virtual size exceeds the limit.
    VirtualSize,
    /// 609: the physical size exceeds the limit.
    PhysicalSize,
    /// 111: any other defect the XenServer-style checks reject.
    Other,
}

impl ImportCode {
    /// The order in which codes are predicted when several apply: the first wins.
    pub const PRECEDENCE: [ImportCode; 7] = [
        Self::NotVhd,
        Self::DiskType,
        Self::HasParent,
        Self::NullUuid,
        Self::VirtualSize,
        Self::PhysicalSize,
        Self::Other,
    ];

    /// The numeric code as the import task's `message` carries it.
    pub fn number(self) -> u16 {
        match self {
            Self::NotVhd => 396,
            Self::DiskType => 523,
            Self::HasParent => 721,
            Self::NullUuid => 614,
            Self::VirtualSize => 413,
            Self::PhysicalSize => 609,
            Self::Other => 111,
        }
    }

    /// Looks a numeric code up; `None` for numbers Rackspace does not document.
    pub fn from_number(n: u16) -> Option<Self> {
        Self::PRECEDENCE.into_iter().find(|c| c.number() == n)
    }

    /// What the code means, in Rackspace's words where they exist.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::NotVhd => "the file is not a valid VHD",
            Self::DiskType => "only fixed or dynamic disks may be imported",
            Self::HasParent => "the VHD has a parent disk; only stand-alone VHDs may be imported",
            Self::NullUuid => "the internal UUID of the VHD is all zeros",
            Self::VirtualSize => "the virtual size of the disk exceeds the import limit",
            Self::PhysicalSize => "the physical size of the disk exceeds the import limit",
            Self::Other => "unspecified problem: the VHD failed validation checks",
        }
    }

    /// What the user can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Self::NotVhd => {
                "check that the file was downloaded completely; otherwise export the image again, or \
                 rewrite it with `qemu-img convert -O vpc -o subformat=dynamic`"
            }
            Self::DiskType => {
                "convert it to a dynamic VHD: `qemu-img convert -O vpc -o subformat=dynamic`"
            }
            Self::HasParent => {
                "coalesce the chain into one disk first (XenServer: `vhd-util coalesce`; or export the \
                 server's image again), then import the stand-alone VHD"
            }
            Self::NullUuid => {
                "give the disk a unique id: rewriting it with `qemu-img convert -O vpc` generates a random one"
            }
            Self::VirtualSize => {
                "shrink the file system and the disk below the limit (160 GiB on Rackspace; see \
                 --max-virtual-size for other clouds); note that `qemu-img create -f vpc` rounds a size \
                 such as 160G up past it"
            }
            Self::PhysicalSize => {
                "convert it to a dynamic VHD so unallocated blocks take no space, or shrink the disk"
            }
            Self::Other => {
                "rewrite the image with a XenServer-compatible tool: `qemu-img convert -O vpc -o \
                 subformat=dynamic` (without force_size), then validate again"
            }
        }
    }
}

impl Serialize for ImportCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.number())
    }
}

impl std::fmt::Display for ImportCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// One observation about one field: where it is, what was there, what should have been.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Structure and field, e.g. `footer.checksum`, `header.block_size`, `bat[4]`.
    pub field: String,
    /// Absolute byte offset of the field in the file.
    pub offset: u64,
    pub found: String,
    /// Empty for warnings that have no single expected value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expected: String,
    /// A sentence saying what this means.
    pub detail: String,
}

/// A defect that makes the import fail, with the code it is predicted to fail with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: ImportCode,
    #[serde(flatten)]
    pub finding: Finding,
}

/// The predicted outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<ImportCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<&'static str>,
}

impl Verdict {
    pub fn from_problems(problems: &[Problem]) -> Self {
        let code = ImportCode::PRECEDENCE
            .into_iter()
            .find(|c| problems.iter().any(|p| p.code == *c));
        Self {
            accepted: code.is_none(),
            code,
            meaning: code.map(ImportCode::meaning),
            advice: code.map(ImportCode::advice),
        }
    }
}

/// How many findings of one kind (same field name shape) are listed before they are summarised.
/// A BAT full of garbage would otherwise produce tens of thousands of identical lines.
const PER_KIND_LIMIT: usize = 8;

/// Accumulates problems and warnings while validation runs.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Finding>,
    /// Findings beyond the per-kind limit, counted by (code, kind).
    suppressed: Vec<(ImportCode, String, u64)>,
}

/// The kind of a field name: `bat[17]` and `bat[3]` are one kind.
fn kind_of(field: &str) -> String {
    field.split('[').next().unwrap_or(field).to_string()
}

impl Findings {
    pub fn problem(
        &mut self,
        code: ImportCode,
        field: impl Into<String>,
        offset: u64,
        found: impl Into<String>,
        expected: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let field = field.into();
        let kind = kind_of(&field);
        let detail = detail.into();
        let same = self
            .problems
            .iter()
            .filter(|p| {
                p.code == code && kind_of(&p.finding.field) == kind && p.finding.detail == detail
            })
            .count();
        if same >= PER_KIND_LIMIT {
            match self
                .suppressed
                .iter_mut()
                .find(|(c, k, _)| *c == code && *k == detail)
            {
                Some((_, _, n)) => *n += 1,
                None => self.suppressed.push((code, detail, 1)),
            }
            return;
        }
        self.problems.push(Problem {
            code,
            finding: Finding {
                field,
                offset,
                found: found.into(),
                expected: expected.into(),
                detail,
            },
        });
    }

    pub fn warning(
        &mut self,
        field: impl Into<String>,
        offset: u64,
        found: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.warnings.push(Finding {
            field: field.into(),
            offset,
            found: found.into(),
            expected: String::new(),
            detail: detail.into(),
        });
    }

    pub fn has(&self, code: ImportCode) -> bool {
        self.problems.iter().any(|p| p.code == code)
    }

    /// Turns suppressed findings into one summary problem each, so the count is never lost.
    pub fn close(mut self) -> (Vec<Problem>, Vec<Finding>) {
        for (code, detail, n) in std::mem::take(&mut self.suppressed) {
            self.problems.push(Problem {
                code,
                finding: Finding {
                    field: "…".into(),
                    offset: 0,
                    found: format!("{n} more"),
                    expected: String::new(),
                    detail: format!("{n} more problems like: {detail}"),
                },
            });
        }
        (self.problems, self.warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_picks_the_first_code() {
        let mut f = Findings::default();
        f.problem(ImportCode::Other, "a", 0, "", "", "x");
        f.problem(ImportCode::VirtualSize, "b", 0, "", "", "y");
        f.problem(ImportCode::NullUuid, "c", 0, "", "", "z");
        let (problems, _) = f.close();
        assert_eq!(
            Verdict::from_problems(&problems).code,
            Some(ImportCode::NullUuid)
        );
        assert!(Verdict::from_problems(&[]).accepted);
    }

    #[test]
    fn repeated_kinds_are_summarised() {
        let mut f = Findings::default();
        for i in 0..20 {
            f.problem(
                ImportCode::Other,
                format!("bat[{i}]"),
                i,
                "",
                "",
                "beyond end of file",
            );
        }
        let (problems, _) = f.close();
        assert_eq!(problems.len(), PER_KIND_LIMIT + 1);
        assert_eq!(
            problems.last().map(|p| p.finding.found.as_str()),
            Some("12 more")
        );
    }

    #[test]
    fn numbers_round_trip() {
        for code in ImportCode::PRECEDENCE {
            assert_eq!(ImportCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ImportCode::from_number(500), None);
    }
}
