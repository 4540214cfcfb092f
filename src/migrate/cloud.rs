//! An OpenStack cloud as one side of a migration (`--from-cloud`, `--to-cloud`): logged in with
//! Keystone v3 once per session, its image service found in the catalog by the side's interface
//! and region. What is recorded of a side is [`super::state::CloudSide`]; nothing secret.

use tokio::sync::OnceCell;

use super::state::{CloudImage, CloudSide, Migration};
use super::{Ctx, Error};
use crate::api::auth::Auth;
use crate::api::compute::Compute;
use crate::api::glance::Glance;
use crate::api::neutron::Neutron;
use crate::api::{JsonService, identity, keystone};
use crate::http::RetryConfig;

/// An OpenStack cloud's image service, logged in, and its compute and network services when its
/// catalog has them (`--boot` needs both).
#[derive(Debug, Clone)]
pub struct CloudApi {
    /// `CLOUD/REGION` (or `CLOUD`), for messages.
    pub name: String,
    pub glance: Glance,
    pub compute: Result<Compute, String>,
    pub network: Result<Neutron, String>,
}

/// A cloud read from `clouds.yaml`, and its login once made (shared by every use in a session).
pub struct Login {
    pub cloud: crate::clouds::Cloud,
    once: OnceCell<(Auth, keystone::Session)>,
}

impl Login {
    pub fn new(cloud: crate::clouds::Cloud) -> Self {
        Self {
            cloud,
            once: OnceCell::new(),
        }
    }

    /// Logs in (the first time) and finds `side`'s image service.
    pub async fn connect(
        &self,
        http: &reqwest::Client,
        side: &CloudSide,
        retry: &RetryConfig,
        on_retry: crate::http::RetryHook,
    ) -> Result<CloudApi, Error> {
        let cloud = &self.cloud;
        let (auth, session) = self
            .once
            .get_or_try_init(|| async {
                identity::check_transport(&cloud.auth_url)?;
                Auth::login_v3(http, &cloud.auth_url, cloud.credentials.clone(), retry)
                    .await
                    .map_err(Error::from)
            })
            .await?;
        let url = session
            .endpoint("image", &side.interface, side.region.as_deref())
            .map_err(|why| {
                Error::Usage(format!("cloud {} ({}): {why}", side.cloud, cloud.origin))
            })?;
        let service = |url: &str| {
            JsonService::new(http.clone(), url, auth.clone(), retry.clone())
                .with_retry_hook(on_retry.clone())
        };
        let found = |kind: &str| {
            session
                .endpoint(kind, &side.interface, side.region.as_deref())
                .map_err(|why| format!("cloud {} ({}): {why}", side.cloud, cloud.origin))
        };
        Ok(CloudApi {
            name: side.shown(),
            glance: Glance::new(service(&url)),
            compute: found("compute").map(|u| Compute::new(service(&u))),
            network: found("network").map(|u| Neutron::new(service(&u))),
        })
    }

    /// Refuses a resume whose `clouds.yaml` entry now points at another endpoint or user than
    /// the one the migration started with: the ids it holds would be looked up in another project.
    pub fn same_as(&self, id: &str, side: &CloudSide) -> Result<(), Error> {
        let cloud = &self.cloud;
        let user = crate::clouds::user_of(&cloud.credentials);
        if cloud.auth_url != side.auth_url || user != side.user {
            return Err(Error::Usage(format!(
                "migration {id} uses cloud {} at {} as {}, but {} now says {} as {user}; restore \
                 that cloud's entry to resume it",
                side.cloud, side.auth_url, side.user, cloud.origin, cloud.auth_url
            )));
        }
        Ok(())
    }
}

/// The source cloud's image service (`--from-cloud`).
pub fn source_glance(ctx: &Ctx) -> Result<&Glance, Error> {
    ctx.src_cloud
        .as_ref()
        .map(|c| &c.glance)
        .ok_or(Error::Invariant("a --from-cloud step without its cloud"))
}

/// The source image as recorded when the migration began (`--from-cloud`).
pub fn source_image(m: &Migration) -> Result<&CloudImage, Error> {
    m.facts
        .source_cloud_image
        .as_ref()
        .ok_or(Error::Invariant("a --from-cloud step without its image"))
}
