//! `migrate --to-cloud NAME`: a migration that ends at an image in an OpenStack cloud's Glance
//! (docs/openstack.md), converted on the way.
//!
//! The route is the usual one up to the checked VHD (an export inspected and validated by ranged
//! reads, or a local file validated whole). Then:
//!
//! - `Inspected`: the Glance image is created once ([`create_image`]): its intent is saved first,
//!   and it is found again by its `imgferry_migration` property before any POST, so a kill between
//!   the POST and the save of its answer never makes a second image.
//! - `Transferring`: the VHD is read forward in pieces (several ranged reads in flight, delivered
//!   in order, each export segment checked against its listed md5), converted as it streams
//!   ([`crate::convert`]: a dynamic VHD becomes qcow2, a fixed one raw) and sent as one chunked
//!   `PUT /v2/images/{id}/file` ([`upload`]). Glance cannot resume an upload: a cut upload puts
//!   the image back to `queued` (glance `api/v2/image_data.py`, `_restore`), and the next run sends
//!   it again whole, into the same image. The digests of what was sent (sha512 and md5) must equal
//!   the ones Glance computed (`os_hash_value`, `checksum`).
//!
//! Properties are set when the image is created: the source image's own, without the Xen- and
//! Rackspace-only ones ([`for_kvm`]), plus where it came from and which migration moved it.

use futures::SinkExt;
use serde_json::{Map, Value, json};

use super::properties::{self, MIGRATION_KEY, SOURCE_KEY};
use super::settle::create_settled;
use super::state::{Entry, GlanceUpload, Intent, Migration, Step, UploadMethod};
use super::stream::{Produced, Shape, produce, shape_of};
use super::{Ctx, Error, Event};
use crate::api::glance::{Glance, UploadError};

/// Properties that mean something only to XenServer or to Rackspace's legacy cloud, never carried
/// to a KVM cloud: `vm_mode` (XenServer's boot mode), `auto_disk_config` and `flavor_classes`
/// (Rackspace's Nova), `cache_in_nova`, and every `xenapi_*`, `com.rackspace*` and
/// `org.openstack__1__*` key (Rackspace's image metadata convention).
pub fn for_kvm(props: Vec<(String, Value)>) -> (Vec<(String, Value)>, Vec<String>) {
    const XEN_ONLY: &[&str] = &[
        properties::VM_MODE_KEY,
        "auto_disk_config",
        "flavor_classes",
        "cache_in_nova",
        "os_type_xen",
    ];
    let dropped = |k: &str| {
        XEN_ONLY.contains(&k)
            || k.starts_with("xenapi_")
            || k.starts_with("com.rackspace")
            || k.starts_with("org.openstack__1__")
    };
    let (gone, kept): (Vec<_>, Vec<_>) = props.into_iter().partition(|(k, _)| dropped(k));
    // Glance's extra properties are strings (min_disk and min_ram are core attributes).
    (kept, gone.into_iter().map(|(k, _)| k).collect())
}

/// The cloud this migration goes to.
fn cloud(ctx: &Ctx) -> Result<&super::cloud::CloudApi, Error> {
    ctx.cloud
        .as_ref()
        .ok_or(Error::Invariant("a --to-cloud step without a cloud"))
}

/// For `--to-cloud`, that the checked VHD can be stored as `--disk-format` asks, and that a
/// `--boot` can happen, before anything is created for it.
pub(super) async fn check_format(ctx: &Ctx, m: &Migration) -> Result<(), Error> {
    if m.plan.to_cloud.is_some() {
        shape_of(ctx, m).await?;
        if m.plan.boot.is_some() {
            let needed = m.facts.vhd.as_ref().and_then(|v| v.virtual_size);
            super::cloud_boot::check(ctx, m, needed).await?;
        }
    }
    Ok(())
}

/// Creates the Glance image once, with its properties, and moves on to the upload.
pub(super) async fn create_image(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let cloud = cloud(ctx)?;
    let format = shape_of(ctx, m).await?.disk_format;
    if m.facts
        .glance_image
        .as_ref()
        .and_then(|i| i.id.clone())
        .is_none()
    {
        m.facts.glance_image = Some(Intent {
            name: m.id.clone(),
            id: None,
        });
        ctx.save(m).await?;
        let props = wanted_properties(ctx, m).await?;
        let id = settled_create(ctx, m, &cloud.glance, format, &props).await?;
        m.facts.glance_image = Some(Intent {
            name: m.id.clone(),
            id: Some(id),
        });
    }
    m.step = Step::Transferring;
    Ok(())
}

/// The image's properties: the source image's (unless `--no-restore-properties`) that a KVM cloud
/// understands, where it came from, and the migration (by which a resumed run finds it).
async fn wanted_properties(ctx: &Ctx, m: &mut Migration) -> Result<Map<String, Value>, Error> {
    let mut props = Map::new();
    if let (Some(src), Some(image)) = (ctx.src.as_ref(), m.facts.source_image.clone()) {
        if m.plan.restore_properties
            && let Some(source) = src.images.get_image_properties(&image).await?
        {
            let (kept, dropped) = for_kvm(properties::restorable(&source));
            props.extend(
                kept.into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "min_disk" | "min_ram")),
            );
            m.facts.dropped_properties = dropped;
            props.extend(tags(&source));
        }
        props.insert(SOURCE_KEY.into(), json!(format!("{}/{image}", src.name)));
    }
    if let (Some(src), Some(image)) = (ctx.src_cloud.as_ref(), m.facts.source_image.clone()) {
        if m.plan.restore_properties
            && let Some(source) = src.glance.get(&image).await?
        {
            let (kept, dropped) = for_kvm(properties::restorable(&source.rest));
            props.extend(
                kept.into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "min_disk" | "min_ram")),
            );
            m.facts.dropped_properties = dropped;
            props.extend(tags(&source.rest));
        }
        props.insert(SOURCE_KEY.into(), json!(format!("{}/{image}", src.name)));
    }
    props.insert(MIGRATION_KEY.into(), json!(m.id));
    Ok(props)
}

/// The source image's tags, set whole when the image is created (Glance takes `tags` in the
/// create body; a JSON patch can only replace them whole, `/tags/-` is a 400).
fn tags(source: &Map<String, Value>) -> Option<(String, Value)> {
    let tags: Vec<&str> = source
        .get("tags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 255)
        .collect();
    (!tags.is_empty()).then(|| ("tags".to_string(), json!(tags)))
}

/// Finds the image by the migration's property, or creates it. A property the cloud refuses
/// (Glance's property protections answer 403, its quota 413, a malformed key 400) makes the image
/// be created without the source's properties, with a warning naming them.
async fn settled_create(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    format: &str,
    props: &Map<String, Value>,
) -> Result<String, Error> {
    let what = format!("image {} in {}", m.plan.name, cloud(ctx)?.name);
    let id = m.id.clone();
    let lookup = async || -> Result<Option<String>, Error> {
        let found = glance.find(MIGRATION_KEY, &id).await?;
        if found.len() > 1 {
            ctx.emit(Event::Warning {
                message: format!(
                    "{} images carry {MIGRATION_KEY}={id}; using {}",
                    found.len(),
                    found[0].id
                ),
            });
        }
        Ok(found.into_iter().next().map(|i| i.id))
    };
    let name = m.plan.name.clone();
    let first = create_settled(ctx, m, &what, lookup, async || {
        Ok(glance.create(&name, format, props).await?.id)
    })
    .await;
    let refused = match first {
        Err(Error::Api(crate::api::Error::Service {
            status: status @ (400 | 403 | 409 | 413),
            message,
            ..
        })) if props.len() > 2 => (status, message),
        other => {
            m.facts.restored_properties = props.keys().cloned().collect();
            return other;
        }
    };
    let ours: Map<String, Value> = props
        .iter()
        .filter(|(k, _)| [MIGRATION_KEY, SOURCE_KEY].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let theirs: Vec<String> = props
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .cloned()
        .collect();
    ctx.emit(Event::Warning {
        message: format!(
            "{} refused the source image's properties (HTTP {}: {}); the image is created \
             without them: {}",
            cloud(ctx)?.name,
            refused.0,
            refused.1,
            theirs.join(", ")
        ),
    });
    m.facts.refused_properties = theirs;
    m.facts.restored_properties = ours.keys().cloned().collect();
    let lookup = async || -> Result<Option<String>, Error> {
        Ok(glance
            .find(MIGRATION_KEY, &id)
            .await?
            .into_iter()
            .next()
            .map(|i| i.id))
    };
    create_settled(ctx, m, &what, lookup, async || {
        Ok(glance.create(&name, format, &ours).await?.id)
    })
    .await
}

/// Uploads the converted VHD into the created image, or finds it already uploaded, and checks
/// that Glance stored exactly what was sent.
pub(super) async fn upload(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let glance = &cloud(ctx)?.glance;
    let id = m
        .facts
        .glance_image
        .as_ref()
        .and_then(|i| i.id.clone())
        .ok_or(Error::Invariant("an upload without an image"))?;
    if let Entry::Vhd { path } = &m.plan.entry {
        super::preflight::unchanged(std::path::Path::new(path), m.facts.local_file.as_ref())
            .await?;
    }
    let (sent, format) = loop {
        let method = method_of(m);
        let image = settled(ctx, m, glance, &id).await?;
        let status = image.as_ref().map(|i| i.status.clone());
        let staged = image.as_ref().and_then(|i| i.size).is_some();
        let shape = shape_of(ctx, m).await?;
        let format = shape.disk_format;
        let sent = match status.as_deref() {
            // Uploaded by a run that was stopped before it said so: the digests are computed
            // again from the source (nothing is sent) and must match what Glance stored.
            Some("active") => produce(ctx, m, shape, None).await?,
            // Staged whole, or importing (glance-direct): imported, then checked the same way.
            Some("uploading") if staged => {
                super::glance_import::import_and_wait(ctx, m, glance, &id).await?;
                produce(ctx, m, shape, None).await?
            }
            Some("importing") => {
                super::glance_import::import_and_wait(ctx, m, glance, &id).await?;
                produce(ctx, m, shape, None).await?
            }
            Some("queued") => match send_queued(ctx, m, glance, &id, shape, method).await? {
                Some(sent) => sent,
                // Turned to glance-direct: the image is read again and the data staged.
                None => continue,
            },
            Some(other) => {
                // Gone, killed or stuck: replaced by a new image on the next step.
                forget_image(ctx, m, glance, &id, other).await?;
                return Ok(());
            }
            None => {
                forget_image(ctx, m, glance, &id, "deleted").await?;
                return Ok(());
            }
        };
        break (sent, format);
    };
    stored_as_sent(ctx, glance, &id, &sent).await?;
    m.facts.glance_upload = Some(GlanceUpload {
        disk_format: format.into(),
        bytes: sent.bytes,
        sha512: sent.sha512,
        md5: sent.md5,
    });
    m.facts.imported_image = Some(id);
    Ok(())
}

/// That Glance stored exactly what was sent: the image is `active`, and its `size`,
/// `os_hash_value` (sha512) and `checksum` (md5) are the ones imgferry computed.
async fn stored_as_sent(
    ctx: &Ctx,
    glance: &Glance,
    id: &str,
    sent: &Produced,
) -> Result<(), Error> {
    let image = glance
        .get(id)
        .await?
        .ok_or_else(|| Error::Final(format!("image {id} vanished after its upload")))?;
    let mismatch = |what: &str, theirs: &str, ours: &str| {
        Error::Final(format!(
            "image {id} in {} stored data whose {what} is {theirs}, but imgferry sent {ours}; \
             delete the image and start the migration again",
            cloud(ctx).map_or("the cloud", |c| c.name.as_str()),
        ))
    };
    if image.status != "active" {
        return Err(Error::ResourceFailed {
            what: format!("image {id}"),
            status: image.status,
            message: "it is not active after its upload".into(),
        });
    }
    if let Some(size) = image.size
        && size != sent.bytes
    {
        return Err(mismatch("size", &size.to_string(), &sent.bytes.to_string()));
    }
    if image.os_hash_algo.as_deref() == Some("sha512")
        && let Some(h) = image.os_hash_value.as_deref()
        && h != sent.sha512
    {
        return Err(mismatch("sha512", h, &sent.sha512));
    }
    if let Some(c) = image.checksum.as_deref()
        && c != sent.md5
    {
        return Err(mismatch("md5", c, &sent.md5));
    }
    Ok(())
}

/// The image, once it is not receiving data: `saving` (an upload) or `uploading` without a size
/// (a stage). An upload or a stage cut by a kill on this side is seen by Glance when its
/// connection closes, and it then puts the image back to `queued`. Waited on for the settle
/// time; an image still receiving after that is reported as it is.
async fn settled(
    ctx: &Ctx,
    m: &Migration,
    glance: &Glance,
    id: &str,
) -> Result<Option<crate::api::glance::Image>, Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(ctx.settle_secs);
    let interval = std::time::Duration::from_secs_f64(m.plan.polling.server_secs.clamp(0.05, 5.0));
    loop {
        let image = glance.get(id).await?;
        let receiving = image
            .as_ref()
            .is_some_and(|i| i.status == "saving" || (i.status == "uploading" && i.size.is_none()));
        if !receiving || std::time::Instant::now() >= deadline {
            return Ok(image);
        }
        ctx.emit(Event::Waiting {
            what: format!("image {id}"),
            status: image.map_or_else(String::new, |i| i.status),
        });
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
}

/// An image that cannot take the upload (deleted by someone, `killed`, stuck `saving`): deleted
/// if it still exists, and forgotten, so the migration creates a new one.
async fn forget_image(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    id: &str,
    status: &str,
) -> Result<(), Error> {
    ctx.emit(Event::Warning {
        message: format!(
            "image {id} is {status} and cannot take the upload; it is deleted and a new one is \
             created"
        ),
    });
    glance.delete(id).await?;
    m.facts.glance_image = None;
    m.step = Step::Inspected;
    Ok(())
}

/// Sends the data into a `queued` image by `method` (and imports it, for glance-direct). `None`
/// when the cloud refused a direct upload and glance-direct is to be used instead. A refusal of
/// the bytes (413, 415) deletes the image: Glance will never take them into it.
async fn send_queued(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    id: &str,
    shape: Shape,
    method: UploadMethod,
) -> Result<Option<Produced>, Error> {
    match send_image(ctx, m, glance, id, shape, method).await {
        Ok(Sent::Done(sent)) => {
            if method == UploadMethod::GlanceDirect {
                super::glance_import::import_and_wait(ctx, m, glance, id).await?;
            }
            Ok(Some(sent))
        }
        Ok(Sent::NotAllowed(why)) => {
            turn_to_glance_direct(ctx, m, glance, &why).await?;
            Ok(None)
        }
        Err(e @ Error::Refused { .. }) => {
            if let Err(d) = glance.delete(id).await {
                ctx.emit(Event::Warning {
                    message: format!(
                        "could not delete image {id}, which the refused upload left empty: {}; \
                         delete it yourself",
                        crate::error_chain(&d)
                    ),
                });
                return Err(e);
            }
            m.facts.glance_image = None;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// The way the data goes into Glance: the one chosen already, else the plan's (auto tries direct
/// first).
fn method_of(m: &Migration) -> UploadMethod {
    match (m.facts.glance_method, m.plan.upload_method) {
        (Some(chosen), _) => chosen,
        (None, UploadMethod::GlanceDirect) => UploadMethod::GlanceDirect,
        (None, _) => UploadMethod::Direct,
    }
}

/// A direct upload the cloud refused (403/405): with `--upload-method auto` and `glance-direct`
/// offered in `/v2/info/import`, that is used from now on; otherwise the refusal is final.
async fn turn_to_glance_direct(
    ctx: &Ctx,
    m: &mut Migration,
    glance: &Glance,
    why: &str,
) -> Result<(), Error> {
    let offered = glance.import_methods().await?;
    let method = super::glance_import::METHOD;
    if m.plan.upload_method != UploadMethod::Auto || !offered.iter().any(|o| o == method) {
        return Err(Error::Refused {
            rule: format!(
                "{why}; its /v2/info/import offers {}",
                if offered.is_empty() {
                    "no import method".to_string()
                } else {
                    offered.join(", ")
                }
            ),
            from: "the cloud's Glance policy (upload_image) and import methods",
            advice: if offered.iter().any(|o| o == method) {
                "run with --upload-method glance-direct (or auto)".into()
            } else {
                "ask the cloud's operator how images are uploaded there".into()
            },
        });
    }
    ctx.emit(Event::Warning {
        message: format!("{why}; using glance-direct (stage, then import) instead"),
    });
    m.facts.glance_method = Some(UploadMethod::GlanceDirect);
    ctx.save(m).await
}

/// What became of a send.
enum Sent {
    Done(Produced),
    /// The cloud does not take data this way (403 or 405), with its message.
    NotAllowed(String),
}

/// Streams the conversion into the image (`PUT …/file`, or `PUT …/stage` for glance-direct): the
/// producer and the upload run together, joined by a small channel (a few pieces in flight), so
/// memory stays bounded whatever the image's size.
async fn send_image(
    ctx: &Ctx,
    m: &Migration,
    glance: &Glance,
    id: &str,
    shape: Shape,
    method: UploadMethod,
) -> Result<Sent, Error> {
    let format = shape.disk_format;
    let (tx, rx) = futures::channel::mpsc::channel::<std::io::Result<bytes::Bytes>>(2);
    let body = reqwest::Body::wrap_stream(rx);
    let producing = async {
        let r = produce(ctx, m, shape, Some(tx.clone())).await;
        if r.is_err() {
            // Ends the body with an error, so the upload is cut rather than completed short.
            let mut tx = tx.clone();
            let _ = tx
                .send(Err(std::io::Error::other("the source stopped")))
                .await;
        }
        drop(tx);
        r
    };
    let uploading = async {
        if method == UploadMethod::GlanceDirect {
            glance.stage(id, body, format).await
        } else {
            glance.upload(id, body, format).await
        }
    };
    let (produced, uploaded) = tokio::select! {
        r = async { tokio::join!(producing, uploading) } => r,
        () = ctx.cancel.cancelled() => return Err(Error::Interrupted),
    };
    match (produced, uploaded) {
        (Ok(d), Ok(())) => Ok(Sent::Done(d)),
        (
            _,
            Err(UploadError::NotAllowed {
                url,
                status,
                message,
            }),
        ) => Ok(Sent::NotAllowed(format!(
            "{url} refused the data (HTTP {status}: {message})"
        ))),
        // What Glance refused says more than the producer's closed channel.
        (_, Err(UploadError::TooLarge { url, message })) => Err(Error::Refused {
            rule: format!("{url} refused the image as too large: {message}"),
            from: "Glance's image_size_cap (glance/api/v2/image_data.py), not readable from the API",
            advice: "ask the cloud's operator for the size cap, or move a smaller image".into(),
        }),
        (
            _,
            Err(UploadError::WrongFormat {
                url,
                declared,
                message,
            }),
        ) => Err(Error::Refused {
            rule: format!("{url} found the data is not {declared}: {message}"),
            from: "Glance's format inspection (glance/common/format_inspector.py)",
            advice: "check the VHD with `imgferry validate`; report it if it is valid".into(),
        }),
        (Err(e), _) if !matches!(e, Error::Interrupted) => Err(e),
        (_, Err(UploadError::Api(e))) => Err(e.into()),
        (Err(e), Ok(())) => Err(e),
    }
}
