//! The states a plan passes through, and what each state's handler does, in words: what progress
//! shows as each step starts and what the dry run lists.

use super::state::{Entry, Migration, Plan, Step};

/// One line saying what the current state's handler is about to do.
pub fn describe(m: &Migration) -> String {
    let f = &m.facts;
    let from = m.plan.from.as_deref().unwrap_or("-");
    match m.step {
        Step::Planned => format!("planning: {}", m.plan.entry.describe()),
        Step::ServerCreating => format!("creating server {} in {from}", m.created_server_name()),
        Step::ServerActive => "server is active; imaging it next".into(),
        Step::Imaging => format!("imaging server into {}", m.snapshot_name()),
        Step::Exporting if m.plan.from_cloud.is_some() => format!(
            "downloading {} from {from} to a staging directory",
            m.facts
                .source_cloud_image
                .as_ref()
                .map_or_else(|| m.plan.entry.describe(), |i| format!("image {}", i.id))
        ),
        Step::Exported if m.plan.from_cloud.is_some() => {
            "converting it to a dynamic VHD and validating it as XenServer will".into()
        }
        Step::ImageActive => format!("exporting {} to Cloud Files in {from}", exported_image(m)),
        Step::Exporting => format!("waiting for the export task in {from}"),
        Step::Exported => format!(
            "inspecting and validating {} by ranged reads",
            match (&f.export, &m.plan.entry) {
                (Some(e), _) => e.to_string(),
                (None, Entry::Export { container, object }) => format!("{container}/{object}"),
                // Before the export exists (a dry run): where it will be written.
                (None, _) => format!("the export in {}", m.plan.src_container),
            }
        ),
        Step::Inspected if m.plan.to_cloud.is_some() => {
            format!("creating image {} in {}", m.plan.name, m.plan.to)
        }
        Step::Transferring if m.plan.to_cloud.is_some() => format!(
            "converting and uploading the VHD to {} ({})",
            m.plan.to,
            m.plan.disk_format.name()
        ),
        Step::Inspected | Step::Transferring if m.plan.to_file.is_some() => format!(
            "downloading the {} to {}",
            if m.plan.from_cloud.is_some() {
                "image"
            } else {
                "VHD"
            },
            m.plan.to_file.as_deref().unwrap_or("?")
        ),
        Step::Inspected => format!(
            "preparing container {} in {}",
            m.plan.dst_container, m.plan.to
        ),
        Step::Transferring => format!(
            "copying the VHD to {}/{} in {}",
            m.plan.dst_container,
            m.upload_object(),
            m.plan.to
        ),
        Step::Uploaded => format!("starting the import in {}", m.plan.to),
        Step::Importing => format!("waiting for the import task in {}", m.plan.to),
        Step::Imported => "image imported".into(),
        Step::Booting => format!(
            "booting {} (flavor {})",
            m.boot_server_name(),
            m.plan.boot.as_deref().unwrap_or("?")
        ),
        Step::Booted | Step::CleanedUp => "finishing".into(),
        Step::Done => "done".into(),
    }
}

/// The image the export step exports: known once imaging is done, given with `--image`, or the
/// snapshot this migration will take.
fn exported_image(m: &Migration) -> String {
    match (&m.facts.source_image, &m.plan.entry) {
        (Some(id), _) | (None, Entry::Image { id }) => format!("image {id}"),
        (None, _) => format!("the snapshot {}", m.snapshot_name()),
    }
}

/// What a step does for this plan, in the words of the documented steps ([`Step::label`]); an
/// OpenStack image going to a legacy region is downloaded and converted where an export would be.
pub fn label(plan: &Plan, step: Step) -> String {
    let to = plan.to_file.as_deref().unwrap_or(&plan.to);
    match step {
        Step::Exporting if plan.from_cloud.is_some() => "download".into(),
        Step::Exported if plan.from_cloud.is_some() => "convert to VHD".into(),
        _ => step.label(to),
    }
}

/// The states a plan passes through, in order, from its first real step (the dry run lists what
/// each would do with [`describe`]).
pub fn route(plan: &Plan) -> Vec<Step> {
    let first = match plan.entry {
        Entry::CreateServer { .. } => Step::ServerCreating,
        Entry::Server { .. } => Step::Imaging,
        // An OpenStack image is read as it is, or staged as a VHD for a legacy region.
        Entry::Image { .. } if plan.from_cloud.is_some() => {
            if plan.to_cloud.is_none() && plan.to_file.is_none() {
                Step::Exporting
            } else {
                Step::Inspected
            }
        }
        Entry::Image { .. } => Step::ImageActive,
        Entry::Export { .. } => Step::Exported,
        Entry::Vhd { .. } => Step::Inspected,
    };
    // From an OpenStack server: imaged by Nova, then the image's own route.
    let first = match (&plan.from_cloud, &plan.entry) {
        (Some(_), Entry::Server { .. }) => Step::Imaging,
        _ => first,
    };
    let staged = plan.to_cloud.is_none() && plan.to_file.is_none();
    Step::ALL
        .into_iter()
        .filter(|s| *s >= first)
        .filter(|s| match s {
            Step::ImageActive if plan.from_cloud.is_some() => false,
            Step::Exporting | Step::Exported if plan.from_cloud.is_some() => staged,
            // States that only record a result, with no work of their own to show.
            Step::ServerActive | Step::Uploaded | Step::Booted | Step::Done => false,
            Step::Inspected => plan.to_file.is_none(),
            // An upload to Glance is the import: nothing to wait for after it.
            Step::Importing | Step::Imported => plan.to_file.is_none() && plan.to_cloud.is_none(),
            Step::Booting => plan.boot.is_some(),
            Step::CleanedUp => plan.cleanup != super::state::Cleanup::None,
            _ => true,
        })
        .collect()
}
