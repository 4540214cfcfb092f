//! One handler per state (docs/state-machine.md). Each does the work that leaves its state, records what it
//! learned in the facts and names the next state; the driver saves after it returns.
//!
//! Crash safety of the creating steps (docs/state-machine.md has the full argument):
//! - before a POST, the intent is saved (`ctx.save`), so the state file always knows what might
//!   exist;
//! - a handler entered with an intent but no id first looks the resource up (servers and images by
//!   their `imgferry-<id>-…` name, tasks by type and input) and only POSTs when nothing is found;
//! - the answer's id is saved before anything else happens.

use serde_json::json;

use super::preflight::{self, VhdSource};
use super::settle::{settle_server, settle_snapshot, settle_task};
use super::state::{Entry, Intent, Migration, ObjectRef, Step, TaskIntent};
use super::wait::{wait_image_active, wait_server_active, wait_task};
use super::{Ctx, Error, Event};
use crate::transfer::{self, ListingPolicy, TransferState};
use crate::vhd;

/// Runs the handler of `m.step`.
pub async fn advance(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    match m.step {
        Step::Planned => planned(ctx, m).await,
        Step::ServerCreating => server_creating(ctx, m).await,
        Step::ServerActive => {
            begin_imaging(m);
            Ok(())
        }
        Step::Imaging if m.plan.from_cloud.is_some() => super::cloud_server::imaging(ctx, m).await,
        Step::Imaging => imaging(ctx, m).await,
        Step::ImageActive => image_active(ctx, m).await,
        // An OpenStack image going to a legacy region: downloaded, then made a local VHD.
        Step::Exporting if m.plan.from_cloud.is_some() => super::staging::download(ctx, m).await,
        Step::Exporting => exporting(ctx, m).await,
        Step::Exported if m.plan.from_cloud.is_some() => {
            let path = super::staging::vhd(ctx, m).await?;
            inspect_local(ctx, m, &path).await
        }
        Step::Exported => exported(ctx, m).await,
        Step::Inspected if m.plan.to_cloud.is_some() => super::to_cloud::create_image(ctx, m).await,
        Step::Inspected => {
            if m.plan.to_file.is_none() {
                ctx.dst()?
                    .files
                    .put_container(&m.plan.dst_container)
                    .await?;
            }
            m.step = Step::Transferring;
            Ok(())
        }
        Step::Transferring => transferring(ctx, m).await,
        Step::Uploaded => {
            if m.facts.staged_vhd.is_some() {
                // The VHD is in Cloud Files: nothing reads the staged copy again.
                super::staging::remove(ctx, m).await;
            }
            uploaded(m);
            Ok(())
        }
        Step::Importing => importing(ctx, m).await,
        Step::Imported => imported(ctx, m).await,
        Step::Booting if m.plan.to_cloud.is_some() => super::cloud_boot::boot(ctx, m).await,
        Step::Booting => booting(ctx, m).await,
        Step::Booted => finish(ctx, m).await,
        Step::CleanedUp => {
            m.step = Step::Done;
            Ok(())
        }
        Step::Done => Ok(()),
    }
}

async fn planned(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    // What the cloud would refuse late is refused now, before anything is created.
    if let (Some(_), Entry::Image { id }) = (&m.plan.from_cloud, m.plan.entry.clone()) {
        super::from_cloud::resolve_image(ctx, m, &id).await?;
        return super::staging::check_source(ctx, m);
    }
    if let (Some(_), Entry::Server { .. }) = (&m.plan.from_cloud, &m.plan.entry) {
        return super::cloud_server::planned(ctx, m).await;
    }
    super::eligibility::check(ctx, &m.plan).await?;
    if m.plan.to_cloud.is_some() && m.plan.boot.is_some() {
        // The cloud's flavor and network, checked before hours of imaging and export.
        super::cloud_boot::check(ctx, m, None).await?;
    }
    if m.plan.name.is_empty() {
        // Named after its source, read now that the checks have reached it.
        m.plan.name = preflight::default_name(ctx.src.as_ref(), &m.plan).await;
    }
    super::to_file::name_in_directory(&mut m.plan, "vhd")?;
    match m.plan.entry.clone() {
        Entry::CreateServer { .. } => {
            m.facts.created_server = Some(Intent {
                name: m.created_server_name(),
                id: None,
            });
            m.step = Step::ServerCreating;
        }
        Entry::Server { id } => {
            m.facts.source_server = Some(id);
            begin_imaging(m);
        }
        Entry::Image { id } => {
            m.facts.source_image = Some(id);
            m.step = Step::ImageActive;
        }
        Entry::Export { container, object } => {
            m.facts.export = Some(ObjectRef { container, object });
            m.step = Step::Exported;
        }
        Entry::Vhd { path } => inspect_local(ctx, m, std::path::Path::new(&path)).await?,
    }
    Ok(())
}

/// A local VHD (`--vhd`, or one staged from an OpenStack image): stamped, validated as XenServer
/// will read it, and planned for upload.
async fn inspect_local(ctx: &Ctx, m: &mut Migration, file: &std::path::Path) -> Result<(), Error> {
    m.facts.local_file = Some(preflight::stamp(file).await?);
    let report = preflight::validate(VhdSource::File(file), &m.plan.policy()).await?;
    record_validation(ctx, m, &report)?;
    boot_fits(ctx, m).await?;
    let source = transfer::source::local_file(file).map_err(transfer::Error::from)?;
    plan_transfer(m, source)?;
    super::to_cloud::check_format(ctx, m).await?;
    m.step = Step::Inspected;
    Ok(())
}

/// The local file the transfer reads: a `--vhd` file, or the VHD staged from an OpenStack image.
fn local_vhd(m: &Migration) -> Option<std::path::PathBuf> {
    match &m.plan.entry {
        Entry::Vhd { path } => Some(path.into()),
        _ => m.facts.staged_vhd.as_ref().map(Into::into),
    }
}

/// The pre-flight verdict: recorded, warned about, and fatal unless `--force`.
fn record_validation(ctx: &Ctx, m: &mut Migration, r: &vhd::Report) -> Result<(), Error> {
    let facts = preflight::facts(r);
    for w in &facts.warnings {
        ctx.emit(Event::Warning {
            message: format!("VHD: {w}"),
        });
    }
    let code = facts.predicted_code;
    m.facts.vhd = Some(facts);
    match code {
        Some(code) if !m.plan.force => Err(Error::Rejected {
            code,
            predicted: true,
            message: String::new(),
        }),
        Some(code) => {
            ctx.emit(Event::Warning {
                message: format!(
                    "validation predicts import code {code}; importing anyway because of --force"
                ),
            });
            Ok(())
        }
        None => Ok(()),
    }
}

/// With the VHD's virtual size known, the `--boot` flavor's disk must hold it (in an OpenStack
/// cloud, [`super::to_cloud::check_format`] checks its boot).
async fn boot_fits(ctx: &Ctx, m: &Migration) -> Result<(), Error> {
    let needed = m.facts.vhd.as_ref().and_then(|v| v.virtual_size);
    match &m.plan.boot {
        Some(flavor) if m.plan.to_cloud.is_none() => {
            super::eligibility::check_boot(ctx, flavor, needed).await
        }
        _ => Ok(()),
    }
}

fn plan_transfer(m: &mut Migration, source: transfer::Source) -> Result<(), Error> {
    let state = TransferState::new(
        source,
        &m.plan.dst_container,
        &m.upload_object(),
        m.plan.segment_size,
    )
    .map_err(transfer::Error::from)?;
    if m.plan.to_file.is_none() && m.plan.to_cloud.is_none() {
        m.facts.upload = Some(ObjectRef {
            container: m.plan.dst_container.clone(),
            object: m.upload_object(),
        });
    }
    m.facts.transfer = Some(state);
    Ok(())
}

async fn server_creating(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let src = ctx.src()?;
    let Entry::CreateServer { image, flavor } = m.plan.entry.clone() else {
        return Err(Error::Invariant("ServerCreating without --create-server"));
    };
    let name = m.created_server_name();
    let id = match m.facts.created_server.as_ref().and_then(|i| i.id.clone()) {
        Some(id) => id,
        None => {
            let id = settle_server(ctx, src, m, &name, &image, &flavor, false).await?;
            m.facts.created_server = Some(Intent {
                name: name.clone(),
                id: Some(id.clone()),
            });
            ctx.save(m).await?;
            id
        }
    };
    wait_server_active(ctx, (&src.compute, &src.name), m, &id, &name).await?;
    m.facts.source_server = Some(id);
    m.step = Step::ServerActive;
    Ok(())
}

fn begin_imaging(m: &mut Migration) {
    m.facts.snapshot = Some(Intent {
        name: m.snapshot_name(),
        id: None,
    });
    m.step = Step::Imaging;
}

async fn imaging(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let src = ctx.src()?;
    let name = m.snapshot_name();
    let server = m
        .facts
        .source_server
        .clone()
        .ok_or(Error::Invariant("Imaging without a source server"))?;
    let id = match m.facts.snapshot.as_ref().and_then(|i| i.id.clone()) {
        Some(id) => id,
        None => {
            let id = settle_snapshot(ctx, src, m, &server, &name).await?;
            m.facts.snapshot = Some(Intent {
                name: name.clone(),
                id: Some(id.clone()),
            });
            ctx.save(m).await?;
            id
        }
    };
    wait_image_active(ctx, src, m, &id).await?;
    m.facts.source_image = Some(id);
    m.step = Step::ImageActive;
    Ok(())
}

async fn image_active(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let src = ctx.src()?;
    let image = m
        .facts
        .source_image
        .clone()
        .ok_or(Error::Invariant("ImageActive without an image"))?;
    wait_image_active(ctx, src, m, &image).await?;
    let container = m.plan.src_container.clone();
    src.files.put_container(&container).await?;
    let object = format!("{image}.vhd");
    let ours = m.facts.export_task.is_some();
    if src.files.head(&container, &object).await?.is_some() {
        if !ours {
            ctx.emit(Event::Warning {
                message: format!(
                    "{container}/{object} already exists (an earlier export of this image); using it"
                ),
            });
        }
        m.facts.export = Some(ObjectRef { container, object });
        m.facts.exported_by_us = ours;
        m.step = Step::Exported;
        return Ok(());
    }
    if !ours {
        m.facts.export_task = Some(TaskIntent {
            input: json!({"image_uuid": image, "receiving_swift_container": container}),
            id: None,
        });
    }
    m.step = Step::Exporting;
    Ok(())
}

async fn exporting(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let src = ctx.src()?;
    if exported_already(ctx, m).await? {
        return Ok(());
    }
    let id = settle_task(ctx, src, m, "export").await?;
    let finished = if m.plan.pipeline {
        super::pipelined::export_and_copy(ctx, m, &id).await?
    } else {
        wait_task(ctx, src, m, "export", &id).await?
    };
    match finished {
        Ok(task) => {
            let location = task
                .result_str("export_location")
                .ok_or_else(|| Error::TaskFailed {
                    what: format!("export task {id}"),
                    message: "it succeeded without an export_location".into(),
                })?;
            let (container, object) =
                location.split_once('/').ok_or_else(|| Error::TaskFailed {
                    what: format!("export task {id}"),
                    message: format!("export_location {location} is not container/object"),
                })?;
            m.facts.export = Some(ObjectRef {
                container: container.into(),
                object: object.into(),
            });
            m.facts.exported_by_us = true;
            m.step = Step::Exported;
            Ok(())
        }
        Err(message) if super::eligibility::export_refusal(&message) => Err(Error::Refused {
            rule: format!("export task {id} was refused: {message}"),
            from: "the export task (Cloud Images)",
            advice: "this image can never be exported; see docs/real-cloud.md for what can be"
                .into(),
        }),
        Err(message) => {
            // The next run asks for a new export (or reuses the object if this one left it).
            m.facts.export_task = None;
            m.step = Step::ImageActive;
            Err(Error::TaskFailed {
                what: format!("export task {id}"),
                message,
            })
        }
    }
}

/// Settles an export whose task id was never learned by what it leaves behind. This needs no
/// task list, which a cloud may refuse to filter or even to give. No source says the export task
/// writes its manifest last or its segments in order (docs/real-cloud.md), so the manifest alone
/// does not mean the export is done: it is waited on until what it serves is whole and still
/// ([`export_settled`]).
async fn exported_already(ctx: &Ctx, m: &mut Migration) -> Result<bool, Error> {
    if m.facts.export_task.as_ref().is_none_or(|t| t.id.is_some()) {
        return Ok(false);
    }
    let image = m
        .facts
        .source_image
        .clone()
        .ok_or(Error::Invariant("Exporting without an image"))?;
    let export = ObjectRef {
        container: m.plan.src_container.clone(),
        object: format!("{image}.vhd"),
    };
    if ctx
        .src()?
        .files
        .head(&export.container, &export.object)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    export_settled(ctx, m, &export).await?;
    m.facts.export = Some(export);
    m.facts.exported_by_us = true;
    m.step = Step::Exported;
    Ok(true)
}

/// Waits until the export object is whole and still: its segments list without gaps, its last
/// 512 bytes are a VHD footer (the export's last bytes), and the same length and ETag are seen
/// again one poll interval later. Gives up at the step deadline.
async fn export_settled(ctx: &Ctx, m: &Migration, export: &ObjectRef) -> Result<(), Error> {
    let files = &ctx.src()?.files;
    let interval = std::time::Duration::from_secs_f64(m.plan.polling.server_secs);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs_f64(m.plan.polling.deadline_secs);
    let once = ListingPolicy {
        attempts: 1,
        ..ListingPolicy::default()
    };
    let mut seen: Option<(u64, Option<String>)> = None;
    let mut why = String::from("not yet listed");
    while std::time::Instant::now() < deadline {
        match transfer::inspect(files, &export.container, &export.object, once).await {
            Ok(source) if source.len >= 512 => {
                let tail = files
                    .fetch_range(&export.container, &export.object, source.len - 512, 512)
                    .await?;
                let now = (source.len, source.etag.clone());
                if !tail.starts_with(b"conectix") {
                    why = format!("{} bytes so far, no VHD footer at the end", source.len);
                    seen = None;
                } else if seen.as_ref() == Some(&now) {
                    return Ok(());
                } else {
                    why = format!("{} bytes, checking it is still", source.len);
                    seen = Some(now);
                }
            }
            Ok(source) => why = format!("{} bytes so far", source.len),
            Err(e) => why = e.to_string(),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
    Err(Error::Timeout {
        what: format!("the export {export} to be complete"),
        seconds: m.plan.polling.deadline_secs,
        status: why,
    })
}

async fn exported(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let src = ctx.src()?;
    let export = m
        .facts
        .export
        .clone()
        .ok_or(Error::Invariant("Exported without an export"))?;
    // Listings lag behind exports; re-check at the polling interval (the first wait at most 2 s,
    // growing to a minute).
    let listing = ListingPolicy {
        first_wait: std::time::Duration::from_secs_f64(m.plan.polling.server_secs.clamp(0.01, 2.0)),
        ..ListingPolicy::default()
    };
    let source = transfer::inspect(&src.files, &export.container, &export.object, listing)
        .await
        .map_err(transfer::Error::from)?;
    let object = VhdSource::Object {
        files: &src.files,
        object: &export,
        len: source.len,
    };
    let report = preflight::validate(object, &m.plan.policy()).await?;
    let pipelined = m.facts.pipelined && m.facts.transfer.is_some();
    if let Err(e) = record_validation(ctx, m, &report) {
        if pipelined && let Some(t) = m.facts.transfer.take() {
            // A predicted rejection: what the pipelined copy staged would never be imported.
            let staged: Vec<String> = t
                .pieces
                .into_iter()
                .filter(|p| p.uploaded.is_some())
                .map(|p| p.dest)
                .collect();
            super::pipelined::delete_staged(ctx, m, &staged).await;
            m.facts.pipelined = false;
        }
        return Err(e);
    }
    boot_fits(ctx, m).await?;
    if pipelined {
        let vanished = super::pipelined::reconcile(ctx, m, source)?;
        super::pipelined::delete_staged(ctx, m, &vanished).await;
    } else {
        plan_transfer(m, source)?;
    }
    super::to_cloud::check_format(ctx, m).await?;
    m.step = Step::Inspected;
    Ok(())
}

async fn transferring(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    if m.plan.to_cloud.is_some() {
        super::to_cloud::upload(ctx, m).await?;
        if m.step == Step::Inspected {
            // The image could not take the upload and was replaced: create the new one next.
            return Ok(());
        }
        if m.plan.boot.is_some() {
            m.facts.boot_server = Some(Intent {
                name: m.boot_server_name(),
                id: None,
            });
            m.step = Step::Booting;
            return Ok(());
        }
        return finish(ctx, m).await;
    }
    if m.plan.to_file.is_some() {
        if m.plan.from_cloud.is_some() {
            let (path, _) = super::to_file::target(m)?;
            super::from_cloud::download(ctx, m, path).await?;
        } else {
            super::to_file::download(ctx, m).await?;
        }
        return finish(ctx, m).await;
    }
    // A copy, never the state moved out: an early return below leaves the migration's own
    // transfer plan in place, so the saved state can always be resumed.
    let mut state = m
        .facts
        .transfer
        .clone()
        .ok_or(Error::Invariant("Transferring without a transfer plan"))?;
    let access = match local_vhd(m) {
        Some(path) => {
            preflight::unchanged(&path, m.facts.local_file.as_ref()).await?;
            transfer::SourceAccess::File(path)
        }
        None => transfer::SourceAccess::Store(ctx.src()?.files.clone()),
    };
    let dest = transfer::Endpoint {
        store: ctx.dst()?.files.clone(),
        container: state.dest_container.clone(),
        name: state.dest_name.clone(),
    };
    let super::pipelined::Copy {
        opts,
        events,
        mut persist,
    } = super::pipelined::copy_setup(ctx, m);
    let work_dir = opts.work_dir.clone();
    // Spill files of an earlier run are never reused (pieces are fetched again); removing them
    // first is what lets a run that filled the disk be resumed.
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    if matches!(access, transfer::SourceAccess::Store(_)) {
        check_free_space(ctx.store.dir(), state.spill_budget(m.plan.concurrency))?;
    }
    let outcome = tokio::select! {
        r = transfer::run(access, dest, &mut state, opts, events, &mut *persist) => Some(r),
        () = ctx.cancel.cancelled() => None,
    };
    m.facts.transfer = Some(state);
    // On every way out: spill files hold nothing the state needs, and left behind after a full
    // disk they would keep it full.
    let _ = tokio::fs::remove_dir_all(&work_dir).await;
    match outcome {
        None => Err(Error::Interrupted),
        Some(r) => {
            let outcome = r?;
            if let Some(path) = local_vhd(m) {
                // What was sent must be what the file holds now, byte for byte.
                preflight::unchanged(&path, m.facts.local_file.as_ref()).await?;
                preflight::same_sha256(&path, &outcome.sha256).await?;
            }
            m.step = Step::Uploaded;
            Ok(())
        }
    }
}

/// Refuses to start a transfer whose spill files cannot fit in `dir`'s file system.
fn check_free_space(dir: &std::path::Path, needed: u64) -> Result<(), Error> {
    let Ok(available) = crate::fsutil::available_bytes(dir) else {
        // Not knowing is not a reason to refuse; a full disk is then reported when it happens.
        return Ok(());
    };
    if available < needed {
        return Err(Error::NoSpace {
            dir: dir.display().to_string(),
            needed: crate::units::size(needed),
            available: crate::units::size(available),
        });
    }
    Ok(())
}

fn uploaded(m: &mut Migration) {
    let upload = m.facts.upload.clone().unwrap_or(ObjectRef {
        container: m.plan.dst_container.clone(),
        object: m.upload_object(),
    });
    if m.facts.import_task.is_none() {
        // image_properties may hold `name` only; anything else fails the task.
        m.facts.import_task = Some(TaskIntent {
            input: json!({
                "import_from": upload.to_string(),
                "import_from_format": "vhd",
                "image_properties": {"name": m.plan.name},
            }),
            id: None,
        });
    }
    m.step = Step::Importing;
}

async fn importing(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let id = settle_task(ctx, ctx.dst()?, m, "import").await?;
    match wait_task(ctx, ctx.dst()?, m, "import", &id).await? {
        Ok(task) => {
            let image = task
                .result_str("image_id")
                .ok_or_else(|| Error::TaskFailed {
                    what: format!("import task {id}"),
                    message: "it succeeded without an image_id".into(),
                })?;
            m.facts.imported_image = Some(image);
            m.step = Step::Imported;
            Ok(())
        }
        Err(message) => match super::import_code::find(&message) {
            Some(code) => {
                m.facts.import_code = Some(code);
                Err(Error::Rejected {
                    code,
                    predicted: false,
                    message,
                })
            }
            None => {
                m.facts.import_task = None;
                m.step = Step::Uploaded;
                Err(Error::TaskFailed {
                    what: format!("import task {id}"),
                    message,
                })
            }
        },
    }
}

async fn imported(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    if m.plan.to_cloud.is_some() {
        // Glance made it active as the upload ended, with its properties set at creation.
        return finish(ctx, m).await;
    }
    let image = m
        .facts
        .imported_image
        .clone()
        .ok_or(Error::Invariant("Imported without an image"))?;
    wait_image_active(ctx, ctx.dst()?, m, &image).await?;
    super::properties::apply(ctx, m).await?;
    if m.plan.boot.is_some() {
        m.facts.boot_server = Some(Intent {
            name: m.boot_server_name(),
            id: None,
        });
        m.step = Step::Booting;
        return Ok(());
    }
    finish(ctx, m).await
}

async fn booting(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let flavor = m
        .plan
        .boot
        .clone()
        .ok_or(Error::Invariant("Booting without a flavor to boot"))?;
    let image = m
        .facts
        .imported_image
        .clone()
        .ok_or(Error::Invariant("Booting without an imported image"))?;
    let name = m.boot_server_name();
    let id = match m.facts.boot_server.as_ref().and_then(|i| i.id.clone()) {
        Some(id) => id,
        None => {
            let id = settle_server(ctx, ctx.dst()?, m, &name, &image, &flavor, true).await?;
            m.facts.boot_server = Some(Intent {
                name: name.clone(),
                id: Some(id.clone()),
            });
            ctx.save(m).await?;
            id
        }
    };
    let dst = ctx.dst()?;
    let server = wait_server_active(ctx, (&dst.compute, &dst.name), m, &id, &name).await?;
    m.facts.boot_addresses = server.ip_addresses();
    m.step = Step::Booted;
    Ok(())
}

/// Cleans up if asked, then finishes.
async fn finish(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    if m.plan.cleanup == super::state::Cleanup::None {
        m.step = Step::Done;
        return Ok(());
    }
    super::cleanup::run(ctx, m).await?;
    m.step = Step::CleanedUp;
    Ok(())
}
