//! A migration session: what a front end (the CLI, the demo, a test) calls to run migrations. It
//! logs in once, resolves the plan's regions into API clients that share one token, takes the
//! migration's lock, and drives the state machine. Nothing here prints: progress goes to the
//! [`Sink`], and the outcome is returned.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::state::{Entry, Plan, Step};
use super::{Ctx, Error, Event, Migration, Reach, RegionApi, Report, Sink, Store};
use crate::api::auth::Auth;
use crate::api::identity;
use crate::credentials::Credentials;
use crate::http::RetryConfig;

/// How to reach the cloud: the identity endpoint and the HTTP settings of the run.
#[derive(Debug, Clone)]
pub struct Link {
    pub identity_url: String,
    /// The longest wait for a connection or between bytes of an answer.
    pub http_timeout: Duration,
    /// The one retry policy of the run.
    pub retry: RetryConfig,
}

/// Everything a run needs besides its plan.
pub struct Session {
    link: Link,
    http: reqwest::Client,
    /// The legacy cloud's credentials; `None` when no side is a legacy region (a local VHD going
    /// to an OpenStack cloud).
    creds: Option<Credentials>,
    /// The destination account's identity endpoint and credentials, when it is another account.
    dst: Option<(String, Credentials)>,
    store: Store,
    events: Sink,
    cancel: CancellationToken,
    /// The source account's login, made once and shared by every migration of the session (a
    /// fleet logs in once, not once per member); the token refreshes itself.
    login: tokio::sync::OnceCell<(Auth, identity::Session)>,
    /// The destination account's login, when it is another account.
    dst_login: tokio::sync::OnceCell<(Auth, identity::Session)>,
    /// Transfer connections shared by every migration of the session (a fleet's --concurrency).
    budget: Option<crate::transfer::Budget>,
    /// The source and destination OpenStack clouds (`--from-cloud`, `--to-cloud`).
    src_cloud: Option<super::cloud::Login>,
    dst_cloud: Option<super::cloud::Login>,
}

/// What a resumed run may change in the saved plan.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Seconds between status checks of servers, images and tasks.
    pub poll_secs: Option<f64>,
    pub concurrency: Option<usize>,
    /// Only before any piece is transferred: the pieces are planned with it.
    pub segment_size: Option<u64>,
    /// `--no-restore-properties`: stop copying the source image's properties (a migration
    /// whose property restore keeps failing is finished without it; `vm_mode` is still set).
    pub no_restore_properties: bool,
}

impl Changes {
    fn apply(&self, m: &mut Migration) -> Result<(), Error> {
        if let Some(p) = self.poll_secs {
            m.plan.polling.server_secs = p;
            m.plan.polling.task_secs = p;
        }
        if let Some(n) = self.concurrency {
            m.plan.concurrency = n;
        }
        if self.no_restore_properties {
            m.plan.restore_properties = false;
        }
        let Some(size) = self.segment_size else {
            return Ok(());
        };
        match &m.facts.transfer {
            Some(t) if t.hashed > 0 || t.uploaded_bytes() > 0 => {
                return Err(Error::Usage(format!(
                    "migration {} has started its transfer in pieces of {}; --segment-size can \
                     only change before that (lower --concurrency instead)",
                    m.id,
                    crate::units::size(m.plan.segment_size)
                )));
            }
            Some(t) => {
                // Planned from a copy: a size the plan refuses leaves the old plan in place.
                let fresh = crate::transfer::TransferState::new(
                    t.source.clone(),
                    &t.dest_container,
                    &t.dest_name,
                    size,
                )
                .map_err(crate::transfer::Error::from)?;
                m.facts.transfer = Some(fresh);
            }
            None => {}
        }
        m.plan.segment_size = size;
        Ok(())
    }
}

/// What [`Session::start`] checks under the state directory's lock before a new migration is
/// first recorded (that no unfinished migration moves the same source: `duplicates::refuse`).
pub type StartCheck = dyn Fn(&Store, &Plan) -> Result<(), Error> + Sync;

/// The end of a run: the saved migration and, on success, its report.
pub struct Finished {
    pub migration: Migration,
    pub result: Result<Report, Error>,
    /// Whether its record stays in the state directory: a new migration refused before it
    /// created anything is not kept (there is nothing to resume or to clean up).
    pub kept: bool,
}

impl Session {
    pub fn new(
        mut link: Link,
        creds: Option<Credentials>,
        store: Store,
        events: Sink,
        cancel: CancellationToken,
    ) -> Result<Self, Error> {
        if let Some(creds) = &creds {
            creds.register_secret();
        }
        // Every request and every backoff wait of this session stops when the run is cancelled.
        link.retry.cancel = Some(cancel.clone());
        let http = crate::http::client_with_timeout(link.http_timeout).map_err(Error::Client)?;
        Ok(Self {
            link,
            http,
            creds,
            dst: None,
            store,
            events,
            cancel,
            login: tokio::sync::OnceCell::new(),
            dst_login: tokio::sync::OnceCell::new(),
            budget: None,
            src_cloud: None,
            dst_cloud: None,
        })
    }

    /// The source is an OpenStack cloud (`--from-cloud`).
    pub fn with_source_cloud(mut self, cloud: crate::clouds::Cloud) -> Self {
        self.src_cloud = Some(super::cloud::Login::new(cloud));
        self
    }

    /// The destination is an OpenStack cloud (`--to-cloud`).
    pub fn with_cloud(mut self, cloud: crate::clouds::Cloud) -> Self {
        self.dst_cloud = Some(super::cloud::Login::new(cloud));
        self
    }

    /// Every migration of this session, `parallel` of them at once, shares `permits` transfer
    /// connections, a spill budget, and one rate-limit gate for the services' APIs (a fleet).
    pub fn shared(mut self, permits: usize, parallel: usize) -> Self {
        self.budget = Some(crate::transfer::Budget::new(permits, parallel));
        self.link.retry.gate = Some(Arc::new(crate::http::Gate::new()));
        self
    }

    /// The rate-limit gate shared by this session's API requests, if it is a fleet's.
    pub fn gate(&self) -> Option<&Arc<crate::http::Gate>> {
        self.link.retry.gate.as_ref()
    }

    /// The identity endpoint this session logs in at.
    pub fn identity_url(&self) -> &str {
        &self.link.identity_url
    }

    /// The destination account's identity endpoint, when it is another account.
    pub fn destination_url(&self) -> Option<&str> {
        self.dst.as_ref().map(|(url, _)| url.as_str())
    }

    /// The destination account's user, when it is another account.
    pub fn destination_username(&self) -> Option<&str> {
        self.dst.as_ref().map(|(_, c)| c.username.as_str())
    }

    /// The source account's user name (empty without legacy credentials).
    pub fn username(&self) -> &str {
        self.creds.as_ref().map_or("", |c| c.username.as_str())
    }

    /// The legacy credentials, or the error that says how to give them.
    fn legacy_creds(&self) -> Result<&Credentials, Error> {
        self.creds.as_ref().ok_or_else(|| {
            Error::Usage(
                "this migration reaches a Rackspace legacy region, whose credentials are not                  set: export RAX_USERNAME and RAX_API_KEY (or use --profile)"
                    .into(),
            )
        })
    }

    pub fn events(&self) -> &Sink {
        &self.events
    }

    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The destination is in another account: log in there at `identity_url` with `creds`.
    pub fn with_destination(mut self, identity_url: String, creds: Credentials) -> Self {
        creds.register_secret();
        self.dst = Some((identity_url, creds));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Logs in and resolves the plan's regions.
    pub async fn connect(&self, plan: &Plan) -> Result<Ctx, Error> {
        self.connect_with(plan, &self.events).await
    }

    /// [`Session::connect`] reporting to `events` (a fleet member's own sink).
    pub async fn connect_with(&self, plan: &Plan, events: &Sink) -> Result<Ctx, Error> {
        let Link {
            identity_url,
            http_timeout,
            retry,
        } = &self.link;
        // A service that asks for a long wait (a daily limit) is waited out while the step's
        // deadline allows.
        let retry = &RetryConfig {
            long_wait: Duration::from_secs_f64(plan.polling.deadline_secs),
            ..retry.clone()
        };
        let how = |servicenet: bool| Reach {
            retry,
            read_timeout: *http_timeout,
            servicenet,
            events,
        };
        let legacy_src = plan.from.is_some()
            && plan.from_cloud.is_none()
            && !matches!(plan.entry, Entry::Vhd { .. });
        // A download's API region is the source's: a cloud image's download needs none.
        let legacy_dst =
            plan.to_cloud.is_none() && !(plan.from_cloud.is_some() && plan.to_file.is_some());
        let logged_in = if legacy_src || legacy_dst {
            let creds = self.legacy_creds()?;
            Some(
                self.login
                    .get_or_try_init(|| async {
                        identity::check_transport(identity_url)?;
                        Auth::login(&self.http, identity_url, creds.clone(), retry)
                            .await
                            .map_err(Error::from)
                    })
                    .await?,
            )
        } else {
            None
        };
        let src = match (&plan.from, logged_in) {
            (Some(r), Some((auth, login))) if legacy_src => Some(RegionApi::resolve(
                &self.http,
                login,
                auth,
                r,
                &how(plan.servicenet.source()),
            )?),
            _ => None,
        };
        let src_cloud = match &plan.from_cloud {
            Some(side) => Some(
                self.connect_cloud(&self.src_cloud, side, retry, events)
                    .await?,
            ),
            None => None,
        };
        let cloud = match &plan.to_cloud {
            Some(side) => Some(
                self.connect_cloud(&self.dst_cloud, side, retry, events)
                    .await?,
            ),
            None => None,
        };
        let dst = match logged_in {
            Some(own) if legacy_dst => Some(self.resolve_dst(plan, own, &how).await?),
            _ => None,
        };
        Ok(Ctx {
            src,
            dst,
            src_cloud,
            cloud,
            store: self.store.clone(),
            events: events.clone(),
            cancel: self.cancel.clone(),
            tenant: logged_in.and_then(|(_, l)| l.tenant.clone()),
            admin_pass: Mutex::new(None),
            settle_secs: (2.0 * http_timeout.as_secs_f64()).max(2.0),
            budget: self.budget.clone(),
        })
    }

    /// The destination region, in the source's account or in another one (`with_destination`).
    async fn resolve_dst<'a>(
        &self,
        plan: &Plan,
        own: &'a (Auth, identity::Session),
        how: &dyn Fn(bool) -> Reach<'a>,
    ) -> Result<RegionApi, Error> {
        let retry = how(false).retry;
        let own_user = self.username();
        let dst_account: &(Auth, identity::Session) = match &self.dst {
            Some((url, creds)) if *url != self.link.identity_url || creds.username != own_user => {
                self.dst_login
                    .get_or_try_init(|| async {
                        identity::check_transport(url)?;
                        Auth::login(&self.http, url, creds.clone(), retry)
                            .await
                            .map_err(Error::from)
                    })
                    .await?
            }
            _ => own,
        };
        RegionApi::resolve(
            &self.http,
            &dst_account.1,
            &dst_account.0,
            &plan.to,
            &how(plan.servicenet.destination()),
        )
    }

    /// Logs in to one of the plan's OpenStack clouds (once per session) and finds its image
    /// service.
    async fn connect_cloud(
        &self,
        login: &Option<super::cloud::Login>,
        side: &super::state::CloudSide,
        retry: &RetryConfig,
        events: &Sink,
    ) -> Result<super::cloud::CloudApi, Error> {
        let login = login.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "this migration uses cloud {}, which this run has not read from clouds.yaml",
                side.cloud
            ))
        })?;
        let hook = super::retry_hook(events, "image service request");
        login.connect(&self.http, side, retry, hook).await
    }

    /// Starts a new migration with `plan`. Without a `name`, the imported image is named after its
    /// source ([`super::preflight::default_name`]). `check` runs under the state directory's lock
    /// just before the migration is first recorded, so what it checks (no unfinished migration of
    /// the same source) still holds when the record is written.
    pub async fn start(
        &self,
        plan: Plan,
        name: Option<String>,
        check: &StartCheck,
    ) -> Result<Finished, Error> {
        self.start_checked(new_id(), plan, name, &self.events, Some(check))
            .await
    }

    /// [`Session::start`] with the migration id chosen by the caller (a fleet records its
    /// members' ids before any of them starts, and checked them for duplicates then), reporting
    /// to `events`.
    pub async fn start_as(
        &self,
        id: String,
        plan: Plan,
        name: Option<String>,
        events: &Sink,
    ) -> Result<Finished, Error> {
        self.start_checked(id, plan, name, events, None).await
    }

    async fn start_checked(
        &self,
        id: String,
        mut plan: Plan,
        name: Option<String>,
        events: &Sink,
        check: Option<&StartCheck>,
    ) -> Result<Finished, Error> {
        let ctx = self.connect_with(&plan, events).await?;
        // Without --name the image is named after its source in the first step, once the checks
        // have read the source: one request to a slow service, not two (docs/reliability.md).
        plan.name = name.unwrap_or_default();
        let mut m = Migration::new(id, self.link.identity_url.clone(), plan);
        m.username = self.creds.as_ref().map(|c| c.username.clone());
        m.tenant = self.creds.as_ref().and_then(|c| c.tenant.clone());
        if let Some((url, creds)) = &self.dst {
            m.dst_identity_url = Some(url.clone());
            m.dst_username = Some(creds.username.clone());
        }
        let _lock = self.store.lock(&m.id)?;
        match check {
            Some(check) => {
                // The check and the first record, as one step against other processes.
                let _dir = self.store.lock_dir_async().await?;
                check(&self.store, &m.plan)?;
                self.store.persist(&m).await?;
            }
            None => self.store.persist(&m).await?,
        }
        let mut finished = self.run(&ctx, &mut m, false).await;
        // A fleet lists its members' ids in its own record, so only a lone migration is dropped.
        if check.is_some()
            && finished.result.is_err()
            && m.step == Step::Planned
            && m.held().is_empty()
        {
            self.store.forget(&m.id)?;
            finished.kept = false;
        }
        Ok(finished)
    }

    /// Continues migration `id`, with `changes` made to its saved plan.
    pub async fn resume(&self, id: &str, changes: Changes) -> Result<Finished, Error> {
        self.resume_as(id, changes, &self.events).await
    }

    /// [`Session::resume`] reporting to `events`.
    pub async fn resume_as(
        &self,
        id: &str,
        changes: Changes,
        events: &Sink,
    ) -> Result<Finished, Error> {
        let _lock = self.store.lock(id)?;
        let mut m = self.store.load(id)?;
        if m.step == Step::Done {
            return Ok(Finished {
                result: Ok(Report::new(&m, None)),
                migration: m,
                kept: true,
            });
        }
        if let Some(f) = &m.failure
            && !f.resumable
        {
            return Err(Error::Usage(format!(
                "migration {id} stopped for good at {}: {}\n  (start a new migration once the \
                 cause is fixed)",
                f.at, f.error
            )));
        }
        self.same_login(&m)?;
        changes.apply(&mut m)?;
        let ctx = self.connect_with(&m.plan, events).await?;
        Ok(self.run(&ctx, &mut m, true).await)
    }

    /// Refuses to resume `m` as another user or against another identity endpoint than the one
    /// that started it, naming both.
    fn same_login(&self, m: &Migration) -> Result<(), Error> {
        for (side, login) in [
            (&m.plan.from_cloud, &self.src_cloud),
            (&m.plan.to_cloud, &self.dst_cloud),
        ] {
            if let Some(side) = side {
                login
                    .as_ref()
                    .ok_or(Error::Invariant(
                        "a cloud's migration resumed without its cloud",
                    ))?
                    .same_as(&m.id, side)?;
            }
        }
        if m.username.is_none() {
            // No legacy region in this migration: nothing logged in there.
            return Ok(());
        }
        if self.link.identity_url != m.identity_url {
            return Err(Error::Usage(format!(
                "migration {} was started against the identity endpoint {}, but this run would \
                 log in at {} (from --identity-url or RAX_IDENTITY_URL); unset it or set it to \
                 the saved one",
                m.id, m.identity_url, self.link.identity_url
            )));
        }
        if let Some(saved) = m.username.as_ref().filter(|u| **u != self.username()) {
            return Err(Error::Usage(format!(
                "migration {} was started by user {saved}, but RAX_USERNAME is {}; resume it \
                 with the credentials that started it",
                m.id,
                self.username()
            )));
        }
        let dst_user = self.dst.as_ref().map(|(_, c)| c.username.as_str());
        match (&m.dst_username, dst_user) {
            (Some(saved), Some(now)) if saved != now => Err(Error::Usage(format!(
                "migration {} moves into the account of user {saved}, but RAX_DST_USERNAME is \
                 {now}; resume it with the destination credentials that started it",
                m.id
            ))),
            _ => Ok(()),
        }
    }

    /// The checks and steps of `plan`, creating nothing (`migrate --dry-run`).
    pub async fn dry_run(
        &self,
        mut plan: Plan,
        name: Option<String>,
    ) -> Result<super::dry_run::DryRun, Error> {
        let ctx = self.connect(&plan).await?;
        // Without --name the image is named after its source once the checks have read it.
        plan.name = name.unwrap_or_default();
        super::dry_run::run(&ctx, &plan).await
    }

    async fn run(&self, ctx: &Ctx, m: &mut Migration, resumed: bool) -> Finished {
        ctx.emit(Event::Started {
            id: m.id.clone(),
            from: m.plan.from.clone(),
            // A download's destination is its file (its API region is the source's).
            to: m.plan.to_file.clone().unwrap_or_else(|| m.plan.to.clone()),
            source: m.plan.entry.describe(),
            state_file: self.store.path(&m.id).display().to_string(),
            resumed,
        });
        let result = super::drive(ctx, m).await;
        let pass = ctx
            .admin_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Finished {
            result: result.map(|()| Report::new(m, pass)),
            migration: m.clone(),
            kept: true,
        }
    }
}

/// A new migration id: `m-` and 10 hex digits from the process's random hasher seed and the clock.
pub fn new_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("m-{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// Logs in and resolves one region, outside any migration (`validate --remote`).
pub async fn connect_region(
    link: &Link,
    creds: Credentials,
    region: &str,
    events: &Sink,
) -> Result<RegionApi, Error> {
    creds.register_secret();
    let http = crate::http::client_with_timeout(link.http_timeout).map_err(Error::Client)?;
    identity::check_transport(&link.identity_url)?;
    let (auth, login) = Auth::login(&http, &link.identity_url, creds, &link.retry).await?;
    let how = Reach {
        retry: &link.retry,
        read_timeout: link.http_timeout,
        servicenet: false,
        events,
    };
    RegionApi::resolve(&http, &login, &auth, region, &how)
}
