//! `--boot FLAVOR [--network NET]` on an OpenStack destination (`--to-cloud`): once the image is
//! active in Glance, a server is booted from it with Nova v2.1 (docs/openstack.md).
//!
//! - Before anything is created ([`check`], from the same places as a legacy boot's check): the
//!   cloud's catalog must have compute (and, for `--network`, network) services, the flavor must
//!   be one (by id, else by its one name), its disk must hold the image, and the network must be
//!   one (by id, else by its one name, through Neutron). Nova refuses a boot that names no
//!   network when several are available (`NetworkAmbiguous`, 409); which ones it counts is not
//!   documented, so without `--network` a project that sees more than one network is refused
//!   here, before anything is created (a resume could not add the flag).
//! - `Booting` ([`boot`]): the server is created once, like every creation here: the intent
//!   (named `imgferry-<id>-boot`) is saved first, and a resumed run finds the server by that name
//!   before it would POST again. Then it is waited on until `ACTIVE`.

use super::state::{Intent, Migration, Step};
use super::wait::wait_server_active;
use super::{Ctx, Error};
use crate::api::compute::{Compute, Flavor};

/// Where a refusal of a boot comes from.
const NOVA: &str = "the cloud's Nova (openstack/nova `nova/api/openstack/compute/servers.py`)";

/// The destination cloud's compute service.
fn compute(ctx: &Ctx) -> Result<(&Compute, &str), Error> {
    let cloud = ctx
        .cloud
        .as_ref()
        .ok_or(Error::Invariant("a cloud boot without a cloud"))?;
    let compute = cloud.compute.as_ref().map_err(|why| {
        Error::Usage(format!(
            "--boot needs the cloud's compute service: {why}; leave out --boot"
        ))
    })?;
    Ok((compute, cloud.name.as_str()))
}

/// The flavor `--boot` names and the id of the network `--network` names.
async fn resolve(ctx: &Ctx, m: &Migration) -> Result<(Flavor, Option<String>), Error> {
    let (compute, cloud) = compute(ctx)?;
    let wanted = m
        .plan
        .boot
        .as_deref()
        .ok_or(Error::Invariant("a cloud boot without --boot"))?;
    let mut flavors = compute.find_flavors(wanted).await?;
    let flavor = match flavors.len() {
        1 => flavors.remove(0),
        n => {
            return Err(Error::Refused {
                rule: if n == 0 {
                    format!("{cloud} has no flavor {wanted} (by id or name)")
                } else {
                    format!("{n} flavors of {cloud} are named {wanted}")
                },
                from: NOVA,
                advice: "give a flavor's id (`openstack flavor list` shows them)".into(),
            });
        }
    };
    let cloud_api = ctx
        .cloud
        .as_ref()
        .ok_or(Error::Invariant("a cloud boot without a cloud"))?;
    let Some(wanted) = m.plan.network.as_deref() else {
        // Nova refuses a boot that names no network when several are available (409,
        // NetworkAmbiguous); said now, since a resume cannot add --network.
        if let Ok(neutron) = &cloud_api.network {
            let all = neutron.all().await?;
            if all.len() > 1 {
                let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
                return Err(Error::Refused {
                    rule: format!(
                        "{cloud} has {} networks ({}) and --network names none",
                        all.len(),
                        names.join(", ")
                    ),
                    from: "Nova's NetworkAmbiguous (openstack/nova `nova/exception.py`)",
                    advice: "add --network with one of them".into(),
                });
            }
        }
        return Ok((flavor, None));
    };
    let neutron = cloud_api.network.as_ref().map_err(|why| {
        Error::Usage(format!(
            "--network needs the cloud's network service: {why}"
        ))
    })?;
    let mut found = neutron.find(wanted).await?;
    match found.len() {
        1 => Ok((flavor, Some(found.remove(0).id))),
        n => Err(Error::Refused {
            rule: if n == 0 {
                format!("{cloud} has no network {wanted} (by id or name) this project can use")
            } else {
                format!("{n} networks of {cloud} are named {wanted}")
            },
            from: "the cloud's Neutron (GET /v2.0/networks)",
            advice: "give a network's id (`openstack network list` shows them)".into(),
        }),
    }
}

/// That the boot can happen, before anything is created: the flavor and network exist, and the
/// flavor's disk holds `needed` bytes (the image's virtual size, when known).
pub(super) async fn check(ctx: &Ctx, m: &Migration, needed: Option<u64>) -> Result<(), Error> {
    let (flavor, _) = resolve(ctx, m).await?;
    if flavor.disk > 0
        && let Some(needed) = needed.filter(|n| *n > flavor.disk << 30)
    {
        return Err(Error::Refused {
            rule: format!(
                "flavor {} has a {} GB disk, smaller than the image needs ({})",
                flavor.name,
                flavor.disk,
                crate::units::size(needed)
            ),
            from: NOVA,
            advice: "pick a flavor with a larger disk".into(),
        });
    }
    Ok(())
}

/// Boots the server from the image in Glance (once), waits for it, and records its addresses.
pub(super) async fn boot(ctx: &Ctx, m: &mut Migration) -> Result<(), Error> {
    let image = m
        .facts
        .imported_image
        .clone()
        .ok_or(Error::Invariant("a cloud boot without an image"))?;
    let (compute, cloud) = compute(ctx)?;
    let name = m.boot_server_name();
    let id = match m.facts.boot_server.as_ref().and_then(|i| i.id.clone()) {
        Some(id) => id,
        None => {
            let (flavor, network) = resolve(ctx, m).await?;
            ctx.save(m).await?;
            let what = format!("server {name} in {cloud}");
            let id = super::settle::create_settled(
                ctx,
                m,
                &what,
                async || Ok(compute.find_servers(&name).await?.into_iter().next()),
                async || {
                    let created = compute
                        .create_server_on(&name, &image, &flavor.id, network.as_deref())
                        .await?;
                    if let Some(pass) = created.admin_pass {
                        *ctx.admin_pass.lock().unwrap_or_else(|e| e.into_inner()) = Some(pass);
                    }
                    Ok(created.id)
                },
            )
            .await?;
            m.facts.boot_server = Some(Intent {
                name: name.clone(),
                id: Some(id.clone()),
            });
            ctx.save(m).await?;
            id
        }
    };
    let server = wait_server_active(ctx, (compute, cloud), m, &id, &name).await?;
    m.facts.boot_addresses = server.ip_addresses();
    m.step = Step::Booted;
    Ok(())
}
