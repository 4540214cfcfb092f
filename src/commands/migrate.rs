//! `imgferry migrate` and `imgferry resume`: a validated request in, a [`Session`] run, the outcome
//! rendered. The work itself is in [`crate::migrate`]; errors are printed by [`crate::app`].

use std::sync::Arc;

use super::{Error, Outcome, Stopped};
use crate::config::{self, RunConfig};
use crate::credentials::Credentials;
use crate::migrate::{Event, Finished, Session, Store, duplicates};
use crate::progress::{Format, Reporter};

/// `imgferry migrate`.
pub async fn run_migrate(
    args: &crate::cli::MigrateArgs,
    cfg: &RunConfig,
) -> Result<Outcome, Error> {
    let mut cfg = cfg.clone();
    // A local VHD going to an OpenStack cloud touches no Rackspace region.
    let cloud = args.to_cloud.as_deref().map(|n| cfg.cloud(n)).transpose()?;
    let src_cloud = args
        .from_cloud
        .as_deref()
        .map(|n| cfg.cloud(n))
        .transpose()?;
    // A local VHD or a cloud's image going to an OpenStack cloud or a file touches no Rackspace
    // region.
    let legacy_src = src_cloud.is_none() && args.source.vhd.is_none();
    let legacy_dst = cloud.is_none() && !(src_cloud.is_some() && args.to_file.is_some());
    let legacy = legacy_src || legacy_dst;
    let found = if legacy {
        Some(cfg.credentials()?)
    } else {
        None
    };
    let dst_creds = if legacy_dst {
        cfg.destination_credentials()?
    } else {
        None
    };
    let other_account = dst_creds
        .as_ref()
        .zip(found.as_ref())
        .is_some_and(|(c, f)| c.username != f.creds.username)
        || args
            .to_identity_url
            .as_deref()
            .is_some_and(|u| config::named_identity(u) != cfg.link(None).identity_url);
    let default_from = found.as_ref().and_then(|f| f.region.as_deref());
    let mut request = config::migrate_request(args, default_from, other_account)?;
    let reporter = Arc::new(Reporter::new(cfg.format, cfg.quiet));
    let creds = found.map(|f| f.creds);
    let mut session = session(&cfg, creds.clone(), None, cfg.store()?, &reporter)?;
    config::aim_at_clouds(&mut request.plan, src_cloud.as_ref(), cloud.as_ref());
    if let Some(cloud) = src_cloud {
        session = session.with_source_cloud(cloud);
    }
    if let Some(cloud) = cloud {
        session = session.with_cloud(cloud);
    }
    if let Some(creds) = creds
        && (request.to_identity_url.is_some() || dst_creds.is_some())
    {
        let url = request
            .to_identity_url
            .clone()
            .unwrap_or_else(|| cfg.link(None).identity_url);
        session = session.with_destination(url, dst_creds.unwrap_or(creds));
    }
    if let Some(spec) = request.fleet.clone() {
        return super::fleet::run_new(session, request, spec, &reporter, cfg.format).await;
    }
    resolve_server_name(&session, &mut request.plan).await?;
    if request.dry_run {
        let plan = session.dry_run(request.plan, request.name).await?;
        let rejected = plan.would_be_rejected();
        reporter.emit(Event::Plan(Box::new(plan)));
        return Ok(if rejected {
            Outcome::Rejected
        } else {
            Outcome::Done
        });
    }
    // Checked now for a quick answer, and again as the migration is first recorded (under the
    // state directory's lock), so two runs started together cannot both go ahead.
    let check = move |store: &Store, plan: &crate::migrate::state::Plan| {
        if request.new {
            Ok(())
        } else {
            duplicates::refuse(store, plan)
        }
    };
    check(session.store(), &request.plan)?;
    let finished = session
        .start(request.plan.clone(), request.name.clone(), &check)
        .await?;
    render(&reporter, cfg.format, finished)
}

/// `--server NAME` for one server, as for a fleet: a value that is not a server id is looked up
/// among the source region's servers by exact name, and the migration is recorded with the id
/// (so a later run by id or by name is the same migration). A name two servers share is refused,
/// naming both ids.
async fn resolve_server_name(
    session: &Session,
    plan: &mut crate::migrate::state::Plan,
) -> Result<(), Error> {
    use crate::migrate::fleet::select::{self, Selection};
    use crate::migrate::state::Entry;
    let Entry::Server { id } = &plan.entry else {
        return Ok(());
    };
    // A server of an OpenStack cloud is found by the migration's first step.
    if looks_like_uuid(id) || plan.from_cloud.is_some() {
        return Ok(());
    }
    let ctx = session.connect(plan).await?;
    let chosen = select::resolve(&ctx.src()?.compute, &Selection::Named(vec![id.clone()])).await?;
    if let Some(c) = chosen.first() {
        plan.entry = Entry::Server { id: c.id.clone() };
    }
    Ok(())
}

/// Nova's server ids are UUIDs (8-4-4-4-12 hex digits).
fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `imgferry resume ID`.
pub async fn run_resume(
    id: &str,
    changes: crate::migrate::session::Changes,
    cfg: &RunConfig,
) -> Result<Outcome, Error> {
    let mut cfg = cfg.clone();
    if crate::migrate::fleet::state::is_fleet_id(id) {
        return resume_fleet(id, changes, &mut cfg).await;
    }
    // The migration first: an unknown id is the clearer error.
    let store = cfg.store()?;
    let saved = store.load(id)?;
    let reporter = Arc::new(Reporter::new(cfg.format, cfg.quiet));
    let clouds = saved.plan.to_cloud.is_some() || saved.plan.from_cloud.is_some();
    let mut session = if saved.username.is_none() && clouds {
        // Nothing in a Rackspace region: no Rackspace login.
        session(&cfg, None, None, store, &reporter)?
    } else {
        resumed_session(
            &mut cfg,
            store,
            &reporter,
            &saved.identity_url,
            saved.dst_identity_url.clone(),
            (id, saved.dst_username.as_deref()),
        )?
    };
    if let Some(side) = &saved.plan.from_cloud {
        session = session.with_source_cloud(cfg.cloud(&side.cloud)?);
    }
    if let Some(side) = &saved.plan.to_cloud {
        session = session.with_cloud(cfg.cloud(&side.cloud)?);
    }
    let finished = session.resume(id, changes).await?;
    render(&reporter, cfg.format, finished)
}

/// `imgferry resume FLEET_ID`: every unfinished member, in one session.
async fn resume_fleet(
    id: &str,
    changes: crate::migrate::session::Changes,
    cfg: &mut RunConfig,
) -> Result<Outcome, Error> {
    let store = cfg.store()?;
    let saved = crate::migrate::fleet::state::load(&store, id)?;
    // Fleets saved before the destination user was recorded: a member that started knows it.
    let dst_username = saved.dst_username.clone().or_else(|| {
        saved
            .members
            .iter()
            .find_map(|m| store.load(&m.migration).ok()?.dst_username)
    });
    let reporter = Arc::new(Reporter::new(cfg.format, cfg.quiet));
    let mut session = resumed_session(
        cfg,
        store,
        &reporter,
        &saved.identity_url,
        saved.dst_identity_url.clone(),
        (id, dst_username.as_deref()),
    )?;
    // A fleet into an OpenStack cloud: every member's plan names the same one.
    if let Some(side) = saved.members.iter().find_map(|m| m.plan.to_cloud.as_ref()) {
        session = session.with_cloud(cfg.cloud(&side.cloud)?);
    }
    super::fleet::resume(session, id, changes.concurrency, cfg.format).await
}

/// A session that logs in where a saved migration or fleet did: its identity endpoint, and its
/// destination account's when it had one. `(id, dst_user)` is what is resumed and the
/// destination account's saved user: when that is another account and its credentials are not
/// set, the resume is refused before anything is touched (the source credentials would be
/// refused there, and every member would read as failed).
fn resumed_session(
    cfg: &mut RunConfig,
    store: Store,
    reporter: &Arc<Reporter>,
    identity_url: &str,
    dst_identity_url: Option<String>,
    (id, dst_user): (&str, Option<&str>),
) -> Result<Session, Error> {
    let found = cfg.credentials()?;
    if let (Some(url), Some(user)) = (&dst_identity_url, dst_user)
        && user != found.creds.username
        && cfg.destination_credentials()?.is_none()
    {
        return Err(Error::Config(config::Error::NoDestinationCredentials(
            format!(
                "{id} moves into the account of user {user} (identity {url}), whose credentials are \
             not set; export RAX_DST_USERNAME={user} and RAX_DST_API_KEY (or RAX_DST_PASSWORD), \
             then resume again (nothing was touched; it stays resumable)"
            ),
        )));
    }
    let mut session = session(
        cfg,
        Some(found.creds.clone()),
        Some(identity_url),
        store,
        reporter,
    )?;
    if let Some(url) = dst_identity_url {
        let dst_creds = cfg.destination_credentials()?.unwrap_or(found.creds);
        session = session.with_destination(url, dst_creds);
    }
    Ok(session)
}

/// A session with `creds`, reporting to `reporter`.
fn session(
    cfg: &RunConfig,
    creds: Option<Credentials>,
    saved_identity: Option<&str>,
    store: Store,
    reporter: &Arc<Reporter>,
) -> Result<Session, Error> {
    Ok(Session::new(
        cfg.link(saved_identity),
        creds,
        store,
        reporter.sink(),
        crate::signals::cancel_on_signals(),
    )?)
}

/// Prints the report of a finished run, or returns why it stopped.
pub fn render(reporter: &Reporter, format: Format, finished: Finished) -> Result<Outcome, Error> {
    let Finished {
        migration,
        result,
        kept,
    } = finished;
    match result {
        Ok(report) => {
            // The event first: it closes the last step's progress line before the report prints.
            let text = (format == Format::Human).then(|| report.render_human());
            reporter.emit(Event::Report {
                report: Box::new(report),
            });
            if let Some(text) = text {
                println!("Migration {} is done.\n{text}", migration.id);
            }
            Ok(Outcome::Done)
        }
        // Refused before it created anything: nothing was kept, so nothing to resume.
        Err(error) if !kept => Err(Error::Refused(error)),
        Err(error) => Err(Error::Stopped(Box::new(Stopped {
            error,
            id: migration.id,
            step: migration.step,
        }))),
    }
}
