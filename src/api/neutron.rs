//! Neutron (OpenStack Networking v2.0), only to find a network by id or name for `--network`:
//! Nova takes a network's id, people give its name (openstack/neutron-lib
//! `api-ref/source/networking/v2/networks.inc`: `GET /v2.0/networks?name=…` filters exactly).

use serde::Deserialize;

use super::{Error, JsonService};

/// A network as Neutron lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
struct Networks {
    networks: Vec<Network>,
}

/// The network service of one region of an OpenStack cloud.
#[derive(Debug, Clone)]
pub struct Neutron {
    api: JsonService,
}

impl Neutron {
    pub fn new(api: JsonService) -> Self {
        Self { api }
    }

    /// Every network the project sees.
    pub async fn all(&self) -> Result<Vec<Network>, Error> {
        let url = self.api.url("v2.0/networks");
        let found: Option<Networks> = self.api.get("network list", &url).await?;
        Ok(found.map(|n| n.networks).unwrap_or_default())
    }

    /// The networks whose id is `wanted` (when it has a UUID's shape: Neutron validates an `id`
    /// filter), else those named so.
    pub async fn find(&self, wanted: &str) -> Result<Vec<Network>, Error> {
        let uuid = wanted.len() == 36 && wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let keys: &[&str] = if uuid { &["id", "name"] } else { &["name"] };
        for &key in keys {
            let base = self.api.url("v2.0/networks");
            let url = reqwest::Url::parse_with_params(&base, [(key, wanted)]).map_err(|e| {
                Error::Unexpected {
                    url: base.clone(),
                    detail: e.to_string(),
                }
            })?;
            let found: Option<Networks> = self.api.get("network list", url.as_str()).await?;
            let found = found.map(|n| n.networks).unwrap_or_default();
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }
}
