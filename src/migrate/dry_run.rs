//! `migrate --dry-run`: check that the source exists and the regions are in the catalog, validate
//! what can be validated without creating anything (a local VHD, or an existing export by ranged
//! reads), and list the steps a real run would take, each described by the same
//! [`super::route::describe`] a real run shows. It sends only GET and HEAD requests and writes no
//! state file.

use serde::Serialize;

use super::preflight::{self, VhdSource};
use super::state::{Entry, Migration, ObjectRef, Plan};
use super::{Ctx, Error, route};
use crate::transfer::{self, ListingPolicy};
use crate::units::{count, size};
use crate::vhd;

/// What a dry run found, and what a real run would do.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub from: Option<String>,
    pub to: String,
    pub source: String,
    /// What a real run would do, in order (`<id>` stands for the migration id).
    pub steps: Vec<String>,
    /// What was checked, and what it showed.
    pub checks: Vec<String>,
    /// The import code validation predicts; `None` for "accepted" or "not validated yet".
    pub predicted_code: Option<u16>,
    /// Whether the plan imports anyway (`--force`).
    pub force: bool,
    pub image_name: String,
    /// Always true: a dry run creates nothing.
    pub creates_nothing: bool,
}

impl DryRun {
    /// Whether a real run would stop at the pre-flight.
    pub fn would_be_rejected(&self) -> bool {
        self.predicted_code.is_some() && !self.force
    }
}

/// Runs the checks of a dry run for `plan`.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<DryRun, Error> {
    if plan.from_cloud.is_some() {
        return from_cloud(ctx, plan).await;
    }
    let mut checks = Vec::new();
    // The same checks a real run makes before imaging; they also say what the source is.
    checks.extend(super::eligibility::check(ctx, plan).await?);
    let mut plan = plan.clone();
    if plan.name.is_empty() {
        plan.name = super::preflight::default_name(ctx.src.as_ref(), &plan).await;
    }
    super::to_file::name_in_directory(&mut plan, "vhd")?;
    let plan = &plan;
    let report = check_vhd(ctx, plan, &mut checks).await?;
    if let (Some(flavor), Some(r)) = (&plan.boot, &report) {
        let needed = r.virtual_size.as_ref().map(|v| v.bytes);
        super::eligibility::check_boot(ctx, flavor, needed).await?;
    }
    // Only what this plan does: a local VHD is not exported, a plan without --boot boots nothing.
    let exports = !matches!(plan.entry, Entry::Vhd { .. } | Entry::Export { .. });
    let what = match (exports, plan.boot.is_some(), plan.to_file.is_some()) {
        (true, _, true) => "export",
        (true, true, false) => "export, import and boot",
        (true, false, false) => "export and import",
        (false, true, _) => "import and boot",
        (false, false, _) => "import",
    };
    checks.push(format!(
        "the cloud's rules allow this {what} (docs/real-cloud.md)"
    ));
    if let Some(cloud) = &ctx.cloud {
        checks.push(format!(
            "logged in to {} and found its image service",
            cloud.name
        ));
    }
    let predicted_code = report
        .as_ref()
        .and_then(|r| r.verdict.code)
        .map(|c| c.number());
    if let Some(r) = &report {
        checks.push(match r.verdict.code {
            None => "validation predicts the import will be accepted".into(),
            Some(c) => format!(
                "validation predicts import code {}: {}{}",
                c.number(),
                c.meaning(),
                if plan.force {
                    " (--force: importing anyway)"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(DryRun {
        from: plan.from.clone(),
        to: plan.to_file.clone().unwrap_or_else(|| plan.to.clone()),
        source: plan.entry.describe(),
        steps: steps_of(plan),
        checks,
        predicted_code,
        force: plan.force,
        image_name: plan.name.clone(),
        creates_nothing: true,
    })
}

/// A dry run from an OpenStack image: it is found (by id, else by its one name) and must be
/// active; nothing else is read.
async fn from_cloud(ctx: &Ctx, plan: &Plan) -> Result<DryRun, Error> {
    if let Entry::Server { id } = &plan.entry {
        return cloud_server(ctx, plan, id).await;
    }
    let Entry::Image { id } = &plan.entry else {
        return Err(Error::Invariant("--from-cloud without --image"));
    };
    let source = super::cloud::source_glance(ctx)?;
    let found = source.resolve(id).await?;
    let [image] = found.as_slice() else {
        return Err(Error::Final(format!(
            "{} images in {} are {id} (by id or name); give one image's id",
            found.len(),
            plan.from.as_deref().unwrap_or_default()
        )));
    };
    let mut checks = vec![format!(
        "image {} ({}) in {}: {}, {}, {}",
        image.id,
        image.name.as_deref().unwrap_or_default(),
        plan.from.as_deref().unwrap_or_default(),
        image.disk_format.as_deref().unwrap_or("no disk format"),
        image.size.map_or_else(|| "no size".into(), size),
        image.status
    )];
    if image.status != "active" {
        checks.push("it is not active: a real run would refuse it".into());
    }
    let format = image.disk_format.as_deref().unwrap_or_default();
    if plan.to_cloud.is_none() && plan.to_file.is_none() {
        checks.push(match format {
            "raw" | "qcow2" => format!("{format} converts to a dynamic VHD for {}", plan.to),
            "vhd" => format!(
                "a VHD already: validated as it is before the upload to {}",
                plan.to
            ),
            _ => format!(
                "{} cannot become a VHD: a real run would refuse it",
                if format.is_empty() {
                    "no disk format"
                } else {
                    format
                }
            ),
        });
    }
    if let Some(cloud) = &ctx.cloud {
        checks.push(format!(
            "logged in to {} and found its image service",
            cloud.name
        ));
    }
    let mut plan = plan.clone();
    if plan.name.is_empty() {
        plan.name = image.name.clone().unwrap_or_else(|| image.id.clone());
    }
    Ok(DryRun {
        from: plan.from.clone(),
        to: plan.to_file.clone().unwrap_or_else(|| plan.to.clone()),
        source: plan.entry.describe(),
        steps: steps_of(&plan),
        checks,
        predicted_code: None,
        force: plan.force,
        image_name: plan.name.clone(),
        creates_nothing: true,
    })
}

/// A dry run from an OpenStack server: it is found (by id, else by its one name); nothing is
/// imaged.
async fn cloud_server(ctx: &Ctx, plan: &Plan, wanted: &str) -> Result<DryRun, Error> {
    let cloud = ctx
        .src_cloud
        .as_ref()
        .ok_or(Error::Invariant("a --from-cloud dry run without its cloud"))?;
    let compute = cloud
        .compute
        .as_ref()
        .map_err(|why| Error::Usage(format!("--server needs the compute service: {why}")))?;
    let server = match compute.get_server(wanted).await? {
        Some(s) => Some(s),
        None => match compute.find_servers(wanted).await?.as_slice() {
            [one] => compute.get_server(one).await?,
            _ => None,
        },
    };
    let Some(server) = server else {
        return Err(Error::Final(format!(
            "no one server {wanted} in {} (by id or name)",
            cloud.name
        )));
    };
    let mut plan = plan.clone();
    if plan.name.is_empty() {
        plan.name = server.name.clone();
    }
    Ok(DryRun {
        from: plan.from.clone(),
        to: plan.to_file.clone().unwrap_or_else(|| plan.to.clone()),
        source: plan.entry.describe(),
        steps: steps_of(&plan),
        checks: vec![format!(
            "server {} ({}) in {}: {}",
            server.id, server.name, cloud.name, server.status
        )],
        predicted_code: None,
        force: plan.force,
        image_name: plan.name.clone(),
        creates_nothing: true,
    })
}

/// The steps a real run of `plan` would take, as a real run describes them.
fn steps_of(plan: &Plan) -> Vec<String> {
    // The same descriptions a real run shows, of a migration whose id is not known yet.
    let mut m = Migration::new("<id>".into(), String::new(), plan.clone());
    route::route(plan)
        .into_iter()
        .map(|step| {
            m.step = step;
            format!("{}: {}", route::label(plan, step), route::describe(&m))
        })
        .collect()
}

/// Validates the source when it is a VHD already (an export, a local file). Records what it saw.
async fn check_vhd(
    ctx: &Ctx,
    plan: &Plan,
    checks: &mut Vec<String>,
) -> Result<Option<vhd::Report>, Error> {
    match &plan.entry {
        Entry::Server { .. } | Entry::Image { .. } | Entry::CreateServer { .. } => Ok(None),
        Entry::Export { container, object } => {
            let files = &ctx.src()?.files;
            let source = transfer::inspect(files, container, object, ListingPolicy::default())
                .await
                .map_err(transfer::Error::from)?;
            checks.push(format!(
                "{container}/{object} holds {} in {}",
                size(source.len),
                count(source.segments.len().max(1), "segment")
            ));
            let object = ObjectRef {
                container: container.clone(),
                object: object.clone(),
            };
            let vhd = VhdSource::Object {
                files,
                object: &object,
                len: source.len,
            };
            Ok(Some(preflight::validate(vhd, &plan.policy()).await?))
        }
        Entry::Vhd { path } => {
            let vhd = VhdSource::File(std::path::Path::new(path));
            Ok(Some(preflight::validate(vhd, &plan.policy()).await?))
        }
    }
}
