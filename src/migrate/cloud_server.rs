//! `migrate --from-cloud NAME --server ID|NAME`: the source is a server of an OpenStack cloud,
//! imaged with Nova's createImage (`POST /servers/{id}/action`), and that image then moves as an
//! `--image` would (docs/openstack.md).
//!
//! - `Planned`: the server is found (by id, else by its one name) and must be `ACTIVE` or
//!   `SHUTOFF`, the states Nova images from (openstack/nova `nova/compute/api.py`, `snapshot`:
//!   `vm_states.ACTIVE, STOPPED, PAUSED, SUSPENDED`).
//! - `Imaging`: the snapshot is created once, named `imgferry-<id>-snapshot`: its intent is saved
//!   first, and a resumed run finds it in the source Glance by that name before it would ask
//!   again; a 409 (the server busy with another task) is waited out. Then it is waited on until
//!   `active`, and goes on as the source image ([`super::from_cloud::resolve_image`]).

use super::settle::create_settled;
use super::state::{Entry, Intent, Migration, Step};
use super::wait::{Poll, until};
use super::{Ctx, Error};
use crate::api::compute::Compute;

/// The source cloud's compute service.
fn compute(ctx: &Ctx) -> Result<(&Compute, &str), Error> {
    let cloud = ctx
        .src_cloud
        .as_ref()
        .ok_or(Error::Invariant("a --from-cloud step without its cloud"))?;
    let compute = cloud.compute.as_ref().map_err(|why| {
        Error::Usage(format!(
            "--server needs the source cloud's compute service: {why}; give --image instead"
        ))
    })?;
    Ok((compute, cloud.name.as_str()))
}

/// Finds the server and starts imaging it.
pub(super) async fn planned(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let Entry::Server { id } = &m.plan.entry else {
        return Err(Error::Invariant("a cloud server step without --server"));
    };
    let (compute, cloud) = compute(ctx)?;
    let server = match compute.get_server(id).await? {
        Some(s) => s,
        None => {
            let found = compute.find_servers(id).await?;
            match found.as_slice() {
                [one] => compute.get_server(one).await?.ok_or_else(|| {
                    Error::Final(format!("server {id} in {cloud} vanished as it was found"))
                })?,
                [] => {
                    return Err(Error::Final(format!(
                        "no server {id} in {cloud} (by id or name) that this project can see"
                    )));
                }
                many => {
                    return Err(Error::Final(format!(
                        "{} servers are named {id} in {cloud}: {}; give the id with --server",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
    };
    if !matches!(
        server.status.as_str(),
        "ACTIVE" | "SHUTOFF" | "PAUSED" | "SUSPENDED"
    ) {
        return Err(Error::Final(format!(
            "server {} in {cloud} is {}: Nova images a server that is ACTIVE, SHUTOFF, PAUSED or \
             SUSPENDED",
            server.id, server.status
        )));
    }
    if m.plan.name.is_empty() {
        m.plan.name = server.name.clone();
    }
    m.facts.source_server = Some(server.id);
    m.facts.snapshot = Some(Intent {
        name: m.snapshot_name(),
        id: None,
    });
    m.step = Step::Imaging;
    Ok(())
}

/// Images the server once, waits for the image, and goes on from it as the source image.
pub(super) async fn imaging(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let (compute, cloud) = compute(ctx)?;
    let glance = super::cloud::source_glance(ctx)?;
    let server = m
        .facts
        .source_server
        .clone()
        .ok_or(Error::Invariant("Imaging without a source server"))?;
    let name = m.snapshot_name();
    let id = match m.facts.snapshot.as_ref().and_then(|i| i.id.clone()) {
        Some(id) => id,
        None => {
            ctx.save(m).await?;
            let by_name = async || -> Result<Option<String>, Error> {
                Ok(glance
                    .find("name", &name)
                    .await?
                    .first()
                    .map(|i| i.id.clone()))
            };
            let what = format!("image {name} of server {server} in {cloud}");
            let answered = create_settled(
                ctx,
                m,
                &what,
                async || Ok(by_name().await?.map(Some)),
                async || compute.create_image(&server, &name).await,
            )
            .await?;
            let id = match answered {
                Some(id) => id,
                // No Location and no body id: the image is found by its unique name.
                None => by_name().await?.ok_or_else(|| {
                    Error::Final(format!("{what} was not listed after createImage"))
                })?,
            };
            m.facts.snapshot = Some(Intent {
                name: name.clone(),
                id: Some(id.clone()),
            });
            ctx.save(m).await?;
            id
        }
    };
    let p = m.plan.polling;
    until(
        ctx,
        &format!("image {name} ({id}) in {cloud}"),
        p.server_secs,
        p.deadline_secs,
        async || match glance.get(&id).await? {
            Some(i) if i.status == "active" => Ok(Poll::Ready(())),
            Some(i) if matches!(i.status.as_str(), "queued" | "saving") => {
                Ok(Poll::Pending(i.status))
            }
            other => Err(Error::ResourceFailed {
                what: format!("image {id} of server {server} in {cloud}"),
                status: other.map_or_else(|| "deleted".into(), |i| i.status),
                message: "the snapshot did not become active".into(),
            }),
        },
    )
    .await?;
    super::from_cloud::resolve_image(ctx, m, &id).await?;
    super::staging::check_source(ctx, m)
}
