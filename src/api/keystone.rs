//! Keystone v3 (OpenStack Identity): a token for a project, and its service catalog.
//!
//! `POST /v3/auth/tokens` with the `password` method (a user and a project, each with its domain)
//! or the `application_credential` method; the token comes back in the `X-Subject-Token` header
//! and the body holds its expiry, roles and catalog (openstack/keystone
//! `api-ref/source/v3/authenticate-v3.inc`, `keystone/api/auth.py`). Rackspace's OpenStack Flex
//! takes the Rackspace user name with its password or API key in the password method, in the
//! domain `rackspace_cloud_domain` (rackerlabs/genestack `docs/openstack-clouds.md`).

use std::time::SystemTime;

use serde::Deserialize;

use super::Error;
use super::identity::check_transport;
use crate::http::RetryConfig;

/// A domain (of a user or a project), by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    Name(String),
    Id(String),
}

impl Domain {
    fn json(&self) -> serde_json::Value {
        match self {
            Domain::Name(n) => serde_json::json!({"name": n}),
            Domain::Id(i) => serde_json::json!({"id": i}),
        }
    }
}

/// The project a token is scoped to: by id, or by name within its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    Id(String),
    Name { name: String, domain: Domain },
}

/// How to log in to a Keystone v3.
#[derive(Clone)]
pub enum Credentials {
    /// A user (by name within `user_domain`) and its password, scoped to a project.
    Password {
        username: String,
        user_domain: Domain,
        password: String,
        project: Project,
    },
    /// An application credential: its id and secret; the project is the credential's own.
    ApplicationCredential { id: String, secret: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password {
                username, project, ..
            } => write!(
                f,
                "Password {{ user: {username}, project: {project:?}, .. }}"
            ),
            Credentials::ApplicationCredential { id, .. } => {
                write!(f, "ApplicationCredential {{ id: {id}, .. }}")
            }
        }
    }
}

/// A token and what came with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub expires: Option<SystemTime>,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    pub catalog: Vec<Service>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

impl Session {
    /// The URL of service `kind` (`image`, `compute`…) at `interface` (`public` by default in
    /// clouds.yaml) in `region`, or the only region when `region` is `None`.
    pub fn endpoint(
        &self,
        kind: &str,
        interface: &str,
        region: Option<&str>,
    ) -> Result<String, String> {
        let service = self
            .catalog
            .iter()
            .find(|s| s.kind == kind)
            .ok_or_else(|| format!("the catalog has no {kind} service"))?;
        let at: Vec<&Endpoint> = service
            .endpoints
            .iter()
            .filter(|e| e.interface == interface)
            .collect();
        let region_of = |e: &Endpoint| {
            e.region_id
                .clone()
                .or_else(|| e.region.clone())
                .unwrap_or_default()
        };
        let chosen = match region {
            Some(r) => at.iter().find(|e| region_of(e).eq_ignore_ascii_case(r)),
            None if at.len() == 1 => at.first(),
            None => None,
        };
        match chosen {
            Some(e) => Ok(e.url.trim_end_matches('/').to_string()),
            None => {
                let mut regions: Vec<String> = at.iter().map(|e| region_of(e)).collect();
                regions.sort();
                regions.dedup();
                Err(format!(
                    "the catalog's {kind} service has no {interface} endpoint in {}; its regions: {}",
                    region.unwrap_or("a single region"),
                    regions.join(", ")
                ))
            }
        }
    }
}

#[derive(Deserialize)]
struct Response {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    user: Option<Named>,
    #[serde(default)]
    roles: Vec<Named>,
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The request body for `creds`.
fn body(creds: &Credentials) -> serde_json::Value {
    use serde_json::json;
    match creds {
        Credentials::Password {
            username,
            user_domain,
            password,
            project,
        } => {
            let scope = match project {
                Project::Id(id) => json!({"project": {"id": id}}),
                Project::Name { name, domain } => {
                    json!({"project": {"name": name, "domain": domain.json()}})
                }
            };
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": username, "domain": user_domain.json(), "password": password}}},
                "scope": scope}})
        }
        Credentials::ApplicationCredential { id, secret } => json!({"auth": {
            "identity": {"methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret}}}}),
    }
}

/// Logs in at `auth_url` (the Keystone v3 root, such as `https://keystone.example/v3`).
pub async fn authenticate(
    client: &reqwest::Client,
    auth_url: &str,
    creds: &Credentials,
    retry: &RetryConfig,
) -> Result<Session, Error> {
    check_transport(auth_url)?;
    if let Credentials::Password { password, .. } = creds {
        crate::secrets::register(password);
    }
    if let Credentials::ApplicationCredential { secret, .. } = creds {
        crate::secrets::register(secret);
    }
    let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
    let body = body(creds);
    // Logging in creates nothing a second try would duplicate.
    let fetched =
        super::fetch_anonymous(retry, 8 << 20, || client.post(&url).json(&body), &|_| {}).await?;
    match fetched.status {
        200..=299 => {}
        status @ (400 | 401 | 403 | 404) => {
            return Err(Error::LoginRefused {
                url: fetched.url,
                status,
                message: super::short_message(&String::from_utf8_lossy(&fetched.body)),
            });
        }
        _ => return Err(fetched.into_error("identity")),
    }
    let token = fetched
        .subject_token
        .clone()
        .ok_or_else(|| Error::Unexpected {
            url: url.clone(),
            detail: "the token answer has no X-Subject-Token header".into(),
        })?;
    let parsed: Response = fetched.json("token")?;
    let t = parsed.token;
    Ok(Session {
        token,
        expires: t
            .expires_at
            .as_deref()
            .and_then(crate::http::retry::parse_time),
        project_id: t.project.and_then(|p| p.id),
        user_id: t.user.and_then(|u| u.id),
        roles: t.roles.into_iter().filter_map(|r| r.name).collect(),
        catalog: t.catalog,
    })
}
