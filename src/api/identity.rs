//! Identity v2.0: authenticate with an API key or password and read the service catalog
//! (rackerlabs/docs-cloud-identity `api-docs/api-reference/methods/token/post-authenticate-as-user-with-password-or-api-key-v2.0-tokens.rst`).
//!
//! Regions are matched case-insensitively; an unknown region is an error that lists the regions the
//! catalog offers. Endpoints must be https, except on loopback addresses (the simulator and a local
//! Swift), so a typo can never send a token in clear text across a network.

use std::time::SystemTime;

use serde::Deserialize;

use super::Error;
use crate::credentials::{Credentials, Secret};
use crate::http::{self, RetryConfig};

/// The default Rackspace identity endpoint.
pub const DEFAULT_URL: &str = "https://identity.api.rackspacecloud.com/v2.0";

/// One service's endpoint in one region.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Endpoint {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(rename = "publicURL")]
    pub public_url: String,
    /// ServiceNet: reachable only from inside the region, and not billed for bandwidth.
    #[serde(rename = "internalURL", default)]
    pub internal_url: Option<String>,
    #[serde(rename = "tenantId", default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub endpoints: Vec<Endpoint>,
}

/// An authenticated session: the token (never logged), its expiry, and the catalog.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub expires: Option<SystemTime>,
    pub catalog: Vec<Service>,
    /// The account's tenant id (`access.token.tenant.id`): the owner of its own images.
    pub tenant: Option<String>,
    /// The user's name and roles (`access.user`): what the user may do, read before anything is
    /// created.
    pub user: Option<String>,
    pub roles: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Why a service endpoint cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("the catalog has no {kind} service")]
    NoService { kind: String },
    #[error("region {region} is not in the catalog for {kind}; available: {}{}", available.join(", "), realm_hint(region, available))]
    UnknownRegion {
        region: String,
        kind: String,
        available: Vec<String>,
    },
    #[error("{url} is not https; plain http is allowed only for loopback addresses")]
    Insecure { url: String },
    #[error(
        "the catalog has no ServiceNet (internalURL) endpoint for {kind} in {region}; run without \
         --servicenet"
    )]
    NoInternalUrl { kind: String, region: String },
}

/// Rackspace's UK region is in UK accounts only, and the US regions in US accounts only: one
/// account's catalog never lists the other's (rackerlabs/docs-cloud-identity
/// `api-docs/general-api-info/service-access.rst` lists one global endpoint for both).
fn realm_hint(region: &str, available: &[String]) -> String {
    let uk = |r: &str| r.eq_ignore_ascii_case("LON");
    let asked_uk = uk(region);
    let has_uk = available.iter().any(|r| uk(r));
    if asked_uk == has_uk {
        return String::new();
    }
    let (realm, other) = if asked_uk {
        (
            "LON belongs to Rackspace's UK accounts",
            "this is a US account",
        )
    } else {
        (
            "the US regions belong to Rackspace's US accounts",
            "this is a UK account",
        )
    };
    format!(
        "\n  {realm}, and {other}; give the other account's credentials for the destination \
         (RAX_DST_USERNAME with RAX_DST_API_KEY or RAX_DST_PASSWORD; both accounts log in at the \
         global identity endpoint), or run as that account"
    )
}

/// The roles that may create image tasks and image properties: the "customer admin" roles of the
/// Cloud Images FAQ (rackerlabs/rackspace-how-to `content/cloud-images/cloud-images-faq.md`).
pub const IMAGE_ADMIN_ROLES: &[&str] = &["identity:user-admin", "admin", "cloudImages:admin"];

/// The catalog names of Rackspace's own compute, image and object-store services.
const RACKSPACE_NAMES: &[&str] = &["cloudServersOpenStack", "cloudImages", "cloudFiles"];

/// Refuses plain http to anything but loopback.
pub fn check_transport(url: &str) -> Result<(), CatalogError> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err(CatalogError::Insecure {
            url: url.to_string(),
        });
    };
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(CatalogError::Insecure {
            url: http::redact(url),
        }),
    }
}

impl Session {
    /// The public URL of service `kind` (`compute`, `image`, `object-store`) in `region`.
    pub fn endpoint(&self, kind: &str, region: &str) -> Result<String, CatalogError> {
        self.endpoint_of(kind, region, false)
    }

    /// The service's ServiceNet URL (`internalURL`) in `region`.
    pub fn internal_endpoint(&self, kind: &str, region: &str) -> Result<String, CatalogError> {
        self.endpoint_of(kind, region, true)
    }

    fn endpoint_of(
        &self,
        kind: &str,
        region: &str,
        internal: bool,
    ) -> Result<String, CatalogError> {
        // First-generation `cloudServers` entries are skipped, as pyrax does. When a type has
        // several services (rackerlabs/mimic lists `cloudServersBehavior`, its control API, as a
        // second `compute`), Rackspace's own name comes first.
        let mut services: Vec<&Service> = self
            .catalog
            .iter()
            .filter(|s| s.kind == kind && s.name != "cloudServers")
            .collect();
        services.sort_by_key(|s| !RACKSPACE_NAMES.contains(&s.name.as_str()));
        if services.is_empty() {
            return Err(CatalogError::NoService {
                kind: kind.to_string(),
            });
        }
        let found = services.iter().flat_map(|s| &s.endpoints).find(|e| {
            e.region
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(region))
        });
        match found {
            Some(e) => {
                let url = if internal {
                    e.internal_url
                        .as_deref()
                        .ok_or_else(|| CatalogError::NoInternalUrl {
                            kind: kind.to_string(),
                            region: region.to_string(),
                        })?
                } else {
                    &e.public_url
                };
                check_transport(url)?;
                Ok(url.trim_end_matches('/').to_string())
            }
            None => {
                let mut available: Vec<String> = services
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    .filter_map(|e| e.region.clone())
                    .collect();
                available.sort();
                available.dedup();
                Err(CatalogError::UnknownRegion {
                    region: region.to_string(),
                    kind: kind.to_string(),
                    available,
                })
            }
        }
    }
}

#[derive(Deserialize)]
struct Response {
    access: Access,
}

#[derive(Deserialize)]
struct Access {
    token: Token,
    #[serde(rename = "serviceCatalog", default)]
    catalog: Vec<Service>,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    roles: Vec<Role>,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

#[derive(Deserialize)]
struct Token {
    id: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    tenant: Option<Tenant>,
}

#[derive(Deserialize)]
struct Tenant {
    id: String,
}

/// Authenticates and returns a session.
pub async fn authenticate(
    client: &reqwest::Client,
    identity_url: &str,
    creds: &Credentials,
    retry: &RetryConfig,
) -> Result<Session, Error> {
    check_transport(identity_url)?;
    let url = format!("{}/tokens", identity_url.trim_end_matches('/'));
    let credential = match &creds.secret {
        Secret::ApiKey(key) => {
            serde_json::json!({"RAX-KSKEY:apiKeyCredentials": {"username": creds.username, "apiKey": key}})
        }
        Secret::Password(pw) => {
            serde_json::json!({"passwordCredentials": {"username": creds.username, "password": pw}})
        }
    };
    let mut body = serde_json::json!({ "auth": credential });
    if let Some(t) = &creds.tenant {
        body["auth"]["tenantId"] = serde_json::json!(t);
    }
    // Authentication creates nothing, so retrying it (and re-reading a cut answer) is safe.
    let fetched =
        super::fetch_anonymous(retry, 8 << 20, || client.post(&url).json(&body), &|_| {}).await?;
    match fetched.status {
        200..=299 => {}
        // Bad credentials: Identity answers 401, and 400 or 403 for malformed or disabled users.
        status @ (400 | 401 | 403) => {
            return Err(Error::LoginRefused {
                url: fetched.url,
                status,
                message: super::short_message(&String::from_utf8_lossy(&fetched.body)),
            });
        }
        _ => return Err(fetched.into_error("identity")),
    }
    let text = String::from_utf8_lossy(&fetched.body);
    parse_session(&text).map_err(|detail| Error::Unexpected {
        url: url.clone(),
        detail,
    })
}

/// Parses a token response. Both expiry forms are read: `2016-08-11T20:00:44.526Z` and the older
/// `2012-05-02T14:27:40.000-05:00` (rackerlabs/docs-cloud-identity `api-docs/api-reference/methods/samples/auth-response.json`); an unreadable expiry means
/// "refresh only after a 401".
pub fn parse_session(text: &str) -> Result<Session, String> {
    let parsed: Response = serde_json::from_str(text)
        .map_err(|e| format!("the token response is not the expected JSON ({e})"))?;
    let expires = parsed
        .access
        .token
        .expires
        .as_deref()
        .and_then(parse_expiry);
    crate::secrets::register(&parsed.access.token.id);
    let (user, roles) = parsed.access.user.map_or((None, Vec::new()), |u| {
        (u.name, u.roles.into_iter().map(|r| r.name).collect())
    });
    Ok(Session {
        user,
        roles,
        tenant: parsed.access.token.tenant.map(|t| t.id),
        token: parsed.access.token.id,
        expires,
        catalog: parsed.access.catalog,
    })
}

fn parse_expiry(s: &str) -> Option<SystemTime> {
    crate::http::retry::parse_time(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let svc = |name: &str, kind: &str, urls: &[(&str, &str)]| Service {
            name: name.into(),
            kind: kind.into(),
            endpoints: urls
                .iter()
                .map(|(r, u)| Endpoint {
                    region: Some(r.to_string()),
                    public_url: u.to_string(),
                    internal_url: None,
                    tenant_id: None,
                })
                .collect(),
        };
        Session {
            tenant: None,
            user: None,
            roles: Vec::new(),
            token: "t".into(),
            expires: None,
            catalog: vec![
                svc(
                    "cloudFiles",
                    "object-store",
                    &[
                        ("DFW", "https://dfw.example/v1/x"),
                        ("IAD", "https://iad.example/v1/x"),
                    ],
                ),
                svc("cloudServers", "compute", &[("DFW", "https://old")]),
                svc(
                    "cloudServersOpenStack",
                    "compute",
                    &[("DFW", "http://10.0.0.1/v2/1")],
                ),
            ],
        }
    }

    #[test]
    fn rackspaces_own_service_wins_over_another_of_the_same_type() {
        // rackerlabs/mimic lists its control API as a second `compute` service, first.
        let mut s = session();
        s.catalog.insert(
            0,
            Service {
                name: "cloudServersBehavior".into(),
                kind: "compute".into(),
                endpoints: vec![Endpoint {
                    region: Some("DFW".into()),
                    public_url: "http://127.0.0.1/control".into(),
                    internal_url: None,
                    tenant_id: None,
                }],
            },
        );
        // cloudServersOpenStack's http URL is not loopback, so choosing it is an Insecure error
        // naming its URL; the control API would have been accepted.
        match s.endpoint("compute", "DFW") {
            Err(CatalogError::Insecure { url }) => assert!(url.contains("10.0.0.1"), "{url}"),
            other => panic!("expected cloudServersOpenStack's endpoint, got {other:?}"),
        }
    }

    #[test]
    fn regions_match_case_insensitively_and_unknown_ones_list_the_rest() {
        let s = session();
        assert_eq!(
            s.endpoint("object-store", "iad").unwrap(),
            "https://iad.example/v1/x"
        );
        let err = s.endpoint("object-store", "LON").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "region LON is not in the catalog for object-store; available: DFW, IAD\n"
            ),
            "{shown}"
        );
        // LON asked of a US account: say whose region it is and how to give that account.
        assert!(
            shown.contains("UK accounts") && shown.contains("RAX_DST_USERNAME"),
            "{shown}"
        );
        let ord = s.endpoint("object-store", "ORD").unwrap_err().to_string();
        assert!(!ord.contains("UK"), "{ord}");
        assert!(matches!(
            s.endpoint("image", "DFW"),
            Err(CatalogError::NoService { .. })
        ));
    }

    #[test]
    fn expiry_in_both_documented_forms() {
        use std::time::{Duration, UNIX_EPOCH};
        let z = parse_expiry("2016-08-11T20:00:44.526Z").unwrap();
        assert_eq!(
            z.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_470_945_644
        );
        let offset = parse_expiry("2012-05-02T14:27:40.000-05:00").unwrap();
        let utc = parse_expiry("2012-05-02T19:27:40.000Z").unwrap();
        assert_eq!(offset, utc);
        let plus = parse_expiry("2012-05-02T20:27:40+01:00").unwrap();
        assert_eq!(plus.duration_since(utc).unwrap_or_default(), Duration::ZERO);
        assert_eq!(parse_expiry("tomorrow"), None);
        // Found by cargo fuzz: an absurd offset once overflowed the arithmetic.
        assert_eq!(
            parse_expiry("9950-01-02T14:27:40.000-02:000000000000000000001283807368777302"),
            None
        );
        assert_eq!(parse_expiry("2012-05-02T14:27:40.000-99:00"), None);
        assert_eq!(parse_expiry(""), None);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_transport("https://x.example/v2").is_ok());
        assert!(check_transport("http://127.0.0.1:5000/v2").is_ok());
        assert!(check_transport("http://[::1]:5000/v2").is_ok());
        assert!(check_transport("http://localhost/v2").is_ok());
        assert!(check_transport("http://10.0.0.1/v2").is_err());
        assert!(check_transport("ftp://x").is_err());
        assert!(matches!(
            session().endpoint("compute", "DFW"),
            Err(CatalogError::Insecure { .. })
        ));
    }
}
