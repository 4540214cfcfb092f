//! The final report: ids in both regions, sizes, whole-image digests, segment count,
//! bytes moved, time per step, and the predicted and actual import verdicts. It is built from the
//! saved facts, so `imgferry status ID` can show it again later.

use serde::Serialize;

use super::state::{Migration, Step, StepTime};
use crate::units::{count, size};

/// Several states make one documented step: the time of each step, in order.
fn step_times(m: &Migration) -> Vec<(String, f64)> {
    let mut steps: Vec<(String, f64)> = Vec::new();
    for t in &m.timings {
        let label = super::route::label(&m.plan, t.step);
        match steps.iter_mut().find(|(l, _)| *l == label) {
            Some((_, s)) => *s += t.seconds,
            None => steps.push((label, t.seconds)),
        }
    }
    steps
}

/// Everything a user (or a script) wants to know at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub step: Step,
    pub from: Option<String>,
    pub to: String,
    pub source: String,
    pub source_server: Option<String>,
    pub source_image: Option<String>,
    pub export: Option<String>,
    pub upload: Option<String>,
    /// `--to-file`: the local VHD file the migration ends at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub imported_image: Option<String>,
    pub imported_image_name: String,
    /// `--to-cloud`: what Glance stored (format, bytes, digests both sides agree on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glance_upload: Option<super::state::GlanceUpload>,
    /// `--from-cloud`: the source image and the digests its bytes were checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_cloud_image: Option<super::state::CloudImage>,
    /// `--to-cloud`: source properties not carried to the OpenStack cloud.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_properties: Vec<String>,
    pub boot_server: Option<String>,
    pub boot_addresses: Vec<String>,
    /// Shown once: only in the report printed at the end of the run that booted the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_pass: Option<String>,
    pub virtual_size: Option<u64>,
    pub physical_size: Option<u64>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub segments: Option<usize>,
    pub bytes_moved: Option<u64>,
    /// `None` when validation predicted acceptance.
    pub predicted_code: Option<u16>,
    /// "accepted", "rejected" or "not yet".
    pub import_verdict: &'static str,
    pub import_code: Option<u16>,
    pub cleaned: Vec<String>,
    /// Properties copied onto the imported image, and those the service refused.
    pub restored_properties: Vec<String>,
    pub refused_properties: Vec<String>,
    /// The imported image's `vm_mode` (how XenServer starts it), and where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_mode_from: Option<String>,
    pub timings: Vec<StepTime>,
    pub total_seconds: f64,
    /// Time per documented step, as this route names the steps (`route::label`).
    #[serde(skip)]
    step_times: Vec<(String, f64)>,
}

impl Report {
    pub fn new(m: &Migration, admin_pass: Option<String>) -> Self {
        let f = &m.facts;
        let t = f.transfer.as_ref();
        Self {
            id: m.id.clone(),
            step: m.step,
            from: m.plan.from.clone(),
            to: m.plan.to.clone(),
            source: m.plan.entry.describe(),
            source_server: f.source_server.clone(),
            source_image: f.source_image.clone(),
            export: f.export.as_ref().map(ToString::to_string),
            upload: f.upload.as_ref().map(ToString::to_string),
            file: m.plan.to_file.clone(),
            imported_image: f.imported_image.clone(),
            imported_image_name: m.plan.name.clone(),
            glance_upload: f.glance_upload.clone(),
            source_cloud_image: f.source_cloud_image.clone(),
            dropped_properties: f.dropped_properties.clone(),
            boot_server: f.boot_server.as_ref().and_then(|b| b.id.clone()),
            boot_addresses: f.boot_addresses.clone(),
            admin_pass,
            virtual_size: f.vhd.as_ref().and_then(|v| v.virtual_size),
            physical_size: f.vhd.as_ref().and_then(|v| v.physical_size),
            sha256: t.and_then(|t| t.sha256.clone()),
            md5: t.and_then(|t| t.md5.clone()),
            segments: t.map(|t| t.pieces.len()),
            bytes_moved: t.map(|t| t.uploaded_bytes()),
            predicted_code: f.vhd.as_ref().and_then(|v| v.predicted_code),
            import_verdict: match (&f.imported_image, f.import_code) {
                (Some(_), _) => "accepted",
                (None, Some(_)) => "rejected",
                (None, None) => "not yet",
            },
            import_code: f.import_code,
            cleaned: f.cleaned.clone(),
            restored_properties: f.restored_properties.clone(),
            refused_properties: f.refused_properties.clone(),
            vm_mode: f.vm_mode.as_ref().map(|v| v.0.clone()),
            vm_mode_from: f.vm_mode.as_ref().map(|v| v.1.clone()),
            timings: m.timings.clone(),
            total_seconds: m.timings.iter().map(|t| t.seconds).sum(),
            step_times: step_times(m),
        }
    }

    /// The summary for people.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        // Every value on one line, whatever a service put in a name (`crate::text`).
        let mut line = |k: &str, v: String| {
            let v = crate::text::escape_controls(&v);
            out.push_str(&format!("  {k:<18} {v}\n"));
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        line("migration", format!("{} ({})", self.id, self.step));
        line(
            "route",
            format!(
                "{} → {}",
                self.from.as_deref().unwrap_or("local file"),
                self.file.as_deref().unwrap_or(&self.to)
            ),
        );
        line("source", self.source.clone());
        // The server or image the migration started from is already the "source" line; only
        // the ones learned along the way (a created server, a snapshot) get lines of their own.
        let learned = |label: &str, id: &Option<String>| {
            id.as_ref()
                .filter(|id| self.source != format!("{label} {id}"))
                .cloned()
        };
        if let Some(id) = learned("server", &self.source_server) {
            line("source server", id);
        }
        if let Some(id) = learned("image", &self.source_image) {
            line("source image", id);
        }
        if self.export.is_some() {
            line("exported VHD", opt(&self.export));
        }
        if let (Some(image), None, None) =
            (&self.source_cloud_image, &self.file, &self.glance_upload)
        {
            // Into a legacy region: downloaded, checked, and made a VHD.
            line(
                "converted",
                format!(
                    "{} image of {} → dynamic VHD (the download matched the image's {})",
                    image.disk_format,
                    size(image.size),
                    match (&image.sha512, &image.md5) {
                        (Some(_), Some(_)) => "sha512 and md5",
                        (Some(_), None) => "sha512",
                        (None, Some(_)) => "md5",
                        (None, None) => "nothing: Glance gave no digests",
                    }
                ),
            );
            if !self.dropped_properties.is_empty() {
                line(
                    "not carried",
                    format!("{} (KVM only)", self.dropped_properties.join(", ")),
                );
            }
            line(
                "note",
                "a guest built for KVM boots on XenServer as HVM only with Xen's or the emulated \
                 disk's drivers in its kernel and initramfs: general Linux kernels have them; a \
                 kernel built for KVM alone, or Windows, may not (docs/openstack.md)"
                    .into(),
            );
        }
        self.render_destination(&mut line);
        if self.boot_server.is_some() {
            line(
                "booted server",
                format!(
                    "{} {}",
                    opt(&self.boot_server),
                    self.boot_addresses.join(" ")
                ),
            );
        }
        if let Some(p) = &self.admin_pass {
            line("admin password", format!("{p}  (shown once; not stored)"));
        }
        if let (Some(v), Some(p)) = (self.virtual_size, self.physical_size) {
            line("size", format!("{} virtual, {} physical", size(v), size(p)));
        }
        self.render_digests(&mut line);
        let steps: Vec<String> = self
            .step_times
            .iter()
            .map(|(l, s)| format!("{l} {s:.1}s"))
            .collect();
        line(
            "time",
            format!("{:.1} s ({})", self.total_seconds, steps.join(", ")),
        );
        out
    }

    /// Where the image went: the file, the Glance image, or the upload and imported image.
    fn render_destination(&self, line: &mut impl FnMut(&str, String)) {
        let finished = self.step == Step::Done || self.step == Step::CleanedUp;
        if let (Some(file), Some(image)) = (&self.file, &self.source_cloud_image) {
            let state = if finished {
                "its sha512 and md5 are the image's"
            } else {
                "not yet complete"
            };
            line("file", format!("{file} ({}, {state})", image.disk_format));
            line("sha512", image.sha512.clone().unwrap_or_else(|| "-".into()));
            line("md5", image.md5.clone().unwrap_or_else(|| "-".into()));
        } else if let Some(file) = &self.file {
            let state = if finished {
                "validated"
            } else {
                "not yet complete"
            };
            line("VHD file", format!("{file} ({state})"));
        } else if let Some(g) = &self.glance_upload {
            line(
                "uploaded",
                format!(
                    "{}, {} (Glance's digests match)",
                    g.disk_format,
                    size(g.bytes)
                ),
            );
            line(
                "image",
                format!(
                    "{} ({})",
                    self.imported_image.as_deref().unwrap_or("-"),
                    self.imported_image_name
                ),
            );
        } else {
            self.render_import(line);
        }
    }

    /// The digests of what moved, and what the destination made of it.
    fn render_digests(&self, line: &mut impl FnMut(&str, String)) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        if let Some(g) = &self.glance_upload {
            line("sha512", g.sha512.clone());
            line("md5", g.md5.clone());
            self.render_cloud(line);
        } else if self.source_cloud_image.is_some() && self.file.is_some() {
            // A download of an OpenStack image: its digests are above, and nothing is imported.
        } else {
            line("sha256", opt(&self.sha256));
            line("md5", opt(&self.md5));
            if let (Some(s), Some(b)) = (self.segments, self.bytes_moved) {
                line("moved", format!("{} in {}", size(b), count(s, "segment")));
            }
            self.render_verdict(line);
        }
    }

    /// Where the image went in the destination region: the upload and the imported image.
    fn render_import(&self, line: &mut impl FnMut(&str, String)) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        line("uploaded VHD", opt(&self.upload));
        line(
            "imported image",
            format!(
                "{} ({})",
                opt(&self.imported_image),
                self.imported_image_name
            ),
        );
    }

    /// An image in an OpenStack cloud: its properties, what was not carried, and the driver
    /// caveat of a Xen guest on KVM.
    fn render_cloud(&self, line: &mut impl FnMut(&str, String)) {
        for c in &self.cleaned {
            line("deleted", c.clone());
        }
        if !self.restored_properties.is_empty() {
            line("properties", self.restored_properties.join(", "));
        }
        if !self.dropped_properties.is_empty() {
            line(
                "not carried",
                format!(
                    "{} (Xen or Rackspace only)",
                    self.dropped_properties.join(", ")
                ),
            );
        }
        if !self.refused_properties.is_empty() {
            line(
                "refused",
                format!("{} (warnings above)", self.refused_properties.join(", ")),
            );
        }
        if self.source_cloud_image.is_none() {
            line(
                "note",
                "a guest built for XenServer boots on KVM only with virtio drivers: most Linux \
                 images have them, Windows needs them installed (docs/openstack.md)"
                    .into(),
            );
        }
    }

    /// The predicted and actual import verdicts, and what cleanup deleted.
    fn render_verdict(&self, line: &mut impl FnMut(&str, String)) {
        let predicted = self
            .predicted_code
            .map_or_else(|| "accept".to_string(), |c| format!("reject ({c})"));
        let actual = match self.import_code {
            Some(c) => format!("{} ({c})", self.import_verdict),
            None => self.import_verdict.to_string(),
        };
        if self.file.is_some() {
            line("import", format!("predicted {predicted}"));
        } else {
            line("import", format!("predicted {predicted}, actual {actual}"));
        }
        for c in &self.cleaned {
            line("deleted", c.clone());
        }
        if !self.restored_properties.is_empty() {
            line("properties", self.restored_properties.join(", "));
        }
        if let (Some(mode), Some(from)) = (&self.vm_mode, &self.vm_mode_from) {
            line("vm_mode", format!("{mode} (from {from})"));
        }
        if !self.refused_properties.is_empty() {
            line(
                "refused",
                format!("{} (warnings above)", self.refused_properties.join(", ")),
            );
        }
    }
}
