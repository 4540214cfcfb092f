//! Cloud Servers (Nova v2 as Rackspace runs it): create, get, find by name and delete servers, and
//! the createImage action (rackerlabs/docs-cloud-servers `api-docs/api-reference/methods/post-create-image-of-specified-server-servers-server-id-actions.rst`).
//!
//! Creating calls are not retried on timeouts (the migration settles them by name instead); the id
//! of a new image comes from the `Location` header, else a body `image_id` (Nova microversion
//! 2.45+), else the caller looks it up by name.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Error, JsonService, parse_json};
use crate::http::Idempotency;

/// A server as GET /servers/{id} describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    /// `OS-EXT-STS:task_state`: `image_snapshot`… while imaging, null when idle.
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub addresses: Value,
    #[serde(rename = "accessIPv4", default)]
    pub access_ipv4: Option<String>,
    /// `{"id": …}`, or `""` for a server that boots from a volume.
    #[serde(default)]
    pub image: Value,
    /// `{"id": …}`.
    #[serde(default)]
    pub flavor: Value,
}

/// A flavor: what `--boot` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Flavor {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The local system disk in GB; 0 for flavors that must boot from a volume.
    #[serde(default)]
    pub disk: u64,
}

#[derive(Deserialize)]
struct FlavorEnvelope {
    flavor: Flavor,
}

#[derive(Deserialize)]
struct FlavorList {
    flavors: Vec<Flavor>,
}

/// The fault embedded in a server in ERROR.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
}

impl Server {
    /// The image the server was built from; `None` when it boots from a volume.
    pub fn image_id(&self) -> Option<&str> {
        self.image["id"].as_str().filter(|s| !s.is_empty())
    }

    pub fn flavor_id(&self) -> Option<&str> {
        self.flavor["id"].as_str()
    }

    /// Every IP address, public first, for the final report.
    pub fn ip_addresses(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(ip) = self.access_ipv4.as_deref().filter(|ip| !ip.is_empty()) {
            out.push(ip.to_string());
        }
        if let Some(nets) = self.addresses.as_object() {
            for addrs in nets.values() {
                for a in addrs.as_array().into_iter().flatten() {
                    if let Some(ip) = a["addr"].as_str()
                        && !out.iter().any(|o| o == ip)
                    {
                        out.push(ip.to_string());
                    }
                }
            }
        }
        out
    }
}

/// What POST /servers answers.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    /// Shown once to the user; never stored.
    pub admin_pass: Option<String>,
}

/// The compute endpoint of one region.
#[derive(Debug, Clone)]
pub struct Compute {
    api: JsonService,
}

#[derive(Deserialize)]
struct ServerEnvelope {
    server: Server,
}

#[derive(Deserialize)]
struct ServerList {
    servers: Vec<ServerRef>,
    /// Nova's pagination: a `next` link when more servers follow.
    #[serde(default)]
    servers_links: Vec<Value>,
}

#[derive(Deserialize)]
struct ServerRef {
    id: String,
    #[serde(default)]
    name: String,
}

impl Compute {
    pub fn new(api: JsonService) -> Self {
        Self { api }
    }

    pub async fn get_server(&self, id: &str) -> Result<Option<Server>, Error> {
        let url = self.api.url(&format!("servers/{}", super::segment(id)));
        Ok(self
            .api
            .get::<ServerEnvelope>("server", &url)
            .await?
            .map(|e| e.server))
    }

    /// `GET /flavors/{id}`; `None` when the region has no such flavor.
    pub async fn get_flavor(&self, id: &str) -> Result<Option<Flavor>, Error> {
        let url = self.api.url(&format!("flavors/{}", super::segment(id)));
        Ok(self
            .api
            .get::<FlavorEnvelope>("flavor", &url)
            .await?
            .map(|e| e.flavor))
    }

    /// The flavor whose id is `wanted`, else those named so (`GET /flavors/detail`): an OpenStack
    /// cloud's flavors are usually given by name.
    pub async fn find_flavors(&self, wanted: &str) -> Result<Vec<Flavor>, Error> {
        if let Some(f) = self.get_flavor(wanted).await? {
            return Ok(vec![f]);
        }
        let url = self.api.url("flavors/detail");
        let list: Option<FlavorList> = self.api.get("flavor list", &url).await?;
        Ok(list
            .map(|l| l.flavors)
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.name == wanted)
            .collect())
    }

    /// Ids of the servers named exactly `name`. Nova's `?name=` is a pattern match, so the exact
    /// comparison is made here.
    pub async fn find_servers(&self, name: &str) -> Result<Vec<String>, Error> {
        let url = reqwest::Url::parse_with_params(&self.api.url("servers"), [("name", name)])
            .map_err(|e| Error::Unexpected {
                url: self.api.url("servers"),
                detail: e.to_string(),
            })?;
        let list: ServerList = self
            .api
            .get("server list", url.as_str())
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "the server list".into(),
                url: self.api.url("servers"),
            })?;
        Ok(list
            .servers
            .into_iter()
            .filter(|s| s.name == name)
            .map(|s| s.id)
            .collect())
    }

    /// Every server of the region as (id, name), following Nova's pagination (`limit` and
    /// `marker`, a page at most `osapi_max_limit` long, a `servers_links` "next" link while more
    /// follow).
    pub async fn list_servers(&self) -> Result<Vec<(String, String)>, Error> {
        let base = self.api.url("servers");
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            let mut params = vec![("limit", "1000".to_string())];
            if let Some((last, _)) = out.last() {
                params.push(("marker", last.clone()));
            }
            let url =
                reqwest::Url::parse_with_params(&base, &params).map_err(|e| Error::Unexpected {
                    url: base.clone(),
                    detail: e.to_string(),
                })?;
            let page: ServerList = self
                .api
                .get("server list", url.as_str())
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: "the server list".into(),
                    url: base.clone(),
                })?;
            let more = page
                .servers_links
                .iter()
                .any(|l| l["rel"].as_str() == Some("next"));
            let empty = page.servers.is_empty();
            out.extend(page.servers.into_iter().map(|s| (s.id, s.name)));
            if !more || empty {
                return Ok(out);
            }
        }
    }

    /// POST /servers. Not retried on timeout: the caller persisted an intent with `name` first.
    pub async fn create_server(
        &self,
        name: &str,
        image_ref: &str,
        flavor_ref: &str,
    ) -> Result<Created, Error> {
        self.create_server_on(name, image_ref, flavor_ref, None)
            .await
    }

    /// [`Compute::create_server`] attached to the network `network` (an id), as an OpenStack
    /// cloud with several networks requires (`networks: [{"uuid": …}]`).
    pub async fn create_server_on(
        &self,
        name: &str,
        image_ref: &str,
        flavor_ref: &str,
        network: Option<&str>,
    ) -> Result<Created, Error> {
        let url = self.api.url("servers");
        let mut body =
            json!({"server": {"name": name, "imageRef": image_ref, "flavorRef": flavor_ref}});
        if let Some(uuid) = network {
            body["server"]["networks"] = json!([{ "uuid": uuid }]);
        }
        let resp = self.api.create("server", &url, &body).await?;
        #[derive(Deserialize)]
        struct Body {
            server: CreatedServer,
        }
        #[derive(Deserialize)]
        struct CreatedServer {
            id: String,
            #[serde(rename = "adminPass", default)]
            admin_pass: Option<String>,
        }
        let b: Body = parse_json("server creation", resp).await?;
        Ok(Created {
            id: b.server.id,
            admin_pass: b.server.admin_pass,
        })
    }

    /// createImage. Returns the new image's id when the answer carries it (`Location`, or a body
    /// `image_id`); `None` means the caller must look the image up by name.
    pub async fn create_image(&self, server_id: &str, name: &str) -> Result<Option<String>, Error> {
        let url = self
            .api
            .url(&format!("servers/{}/action", super::segment(server_id)));
        let body = json!({"createImage": {"name": name}});
        let resp = self.api.create("server", &url, &body).await?;
        let from_location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(image_id_from_location);
        if from_location.is_some() {
            return Ok(from_location);
        }
        // Nova 2.45+ answers {"image_id": …}; an empty body (Content-Length: 0) is also normal.
        let text = resp.text().await.unwrap_or_default();
        Ok(serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["image_id"].as_str().map(str::to_string)))
    }

    /// DELETE /servers/{id}; a server that is already gone counts as deleted.
    pub async fn delete_server(&self, id: &str) -> Result<(), Error> {
        let url = self.api.url(&format!("servers/{}", super::segment(id)));
        let resp = self
            .api
            .request(Method::DELETE, &url, None, Idempotency::Idempotent)
            .await?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(Error::from_response("server", resp).await),
        }
    }
}

/// The last path segment of a `Location` URL, if the URL is an image's (`…/images/{id}`) and the
/// segment looks like an id. Anything else (rackerlabs/mimic answers `www.someurl.com`) yields
/// `None`, and the caller finds the image by its name instead.
pub fn image_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next()?;
    if segments.next() != Some("images") {
        return None;
    }
    (!last.is_empty()
        && last.len() <= 64
        && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    .then(|| last.to_string())
}

/// A flavor's class as Rackspace's image property `flavor_classes` names them (rackerlabs/mimic
/// `mimic/model/rackspace_images.py` lists `io1`, `memory1`, `compute1`, `onmetal`): the id
/// before its last `-` (`general1-2` → `general1`, `onmetal-io1` → `onmetal`), `standard1` for
/// the numbered ones.
pub fn flavor_class(flavor_id: &str) -> String {
    if flavor_id.starts_with("onmetal") {
        return "onmetal".into();
    }
    match flavor_id.rsplit_once('-') {
        Some((class, _)) => class.to_string(),
        None => "standard1".into(),
    }
}

/// Whether an image's `flavor_classes` ("*,!io1,!onmetal", or a list such as "onmetal") lets
/// `flavor_id` boot it: a listed `!class` excludes, `*` admits every other class, and without `*`
/// only the listed classes are admitted. No property admits every flavor.
pub fn flavor_class_allowed(classes: Option<&str>, flavor_id: &str) -> bool {
    let Some(classes) = classes.filter(|c| !c.trim().is_empty()) else {
        return true;
    };
    let class = flavor_class(flavor_id);
    let entries: Vec<&str> = classes.split(',').map(str::trim).collect();
    if entries
        .iter()
        .any(|e| e.strip_prefix('!') == Some(class.as_str()))
    {
        return false;
    }
    entries.iter().any(|e| *e == "*" || *e == class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_come_from_the_location_path() {
        assert_eq!(
            image_id_from_location("https://dfw.servers/v2/1/images/ab-12").as_deref(),
            Some("ab-12")
        );
        assert_eq!(
            image_id_from_location("https://x/images/ab-12/?q=1").as_deref(),
            Some("ab-12")
        );
        assert_eq!(image_id_from_location("https://x/images/a b"), None);
        // Rackspace's own mock answers with a Location that is no image URL.
        assert_eq!(image_id_from_location("www.someurl.com"), None);
        assert_eq!(image_id_from_location("https://x/servers/ab-12"), None);
    }

    #[test]
    fn addresses_are_listed_once_public_first() {
        let s: Server = serde_json::from_value(json!({
            "id": "1", "accessIPv4": "203.0.113.1",
            "addresses": {"public": [{"addr": "203.0.113.1"}, {"addr": "2001:db8::1"}],
                          "private": [{"addr": "10.0.0.1"}]}
        }))
        .unwrap();
        // accessIPv4 first, then each network's addresses, without repeats.
        assert_eq!(
            s.ip_addresses(),
            vec!["203.0.113.1", "10.0.0.1", "2001:db8::1"]
        );
    }
}
