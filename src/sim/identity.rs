//! Identity v2.0 as the simulator serves it: `POST /identity/v2.0/tokens` with API-key or password
//! credentials, a service catalog for every region, and tokens that expire
//! (rackerlabs/docs-cloud-identity `api-docs/api-reference/methods/token/post-authenticate-as-user-with-password-or-api-key-v2.0-tokens.rst`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{Value, json};

/// The simulated account's credentials.
#[derive(Clone)]
pub struct Account {
    pub username: String,
    pub api_key: String,
    pub password: String,
    /// The user's roles in the login answer besides the per-service defaults [default:
    /// `identity:user-admin`, the account owner]. Without one of
    /// [`crate::api::identity::IMAGE_ADMIN_ROLES`] the image
    /// service refuses tasks and property changes.
    pub roles: Vec<String>,
}

impl Account {
    /// Whether this user may create image tasks and change image properties.
    pub fn may_manage_images(&self) -> bool {
        self.roles
            .iter()
            .any(|r| crate::api::identity::IMAGE_ADMIN_ROLES.contains(&r.as_str()))
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("api_key", &"<redacted>")
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Account {
    /// The credentials a client logs in with (by API key).
    pub fn credentials(&self) -> crate::credentials::Credentials {
        crate::credentials::Credentials {
            username: self.username.clone(),
            secret: crate::credentials::Secret::ApiKey(self.api_key.clone()),
            tenant: None,
        }
    }
}

impl Default for Account {
    fn default() -> Self {
        Self {
            username: "demo".into(),
            api_key: "0123456789abcdef0123456789abcdef".into(),
            password: "demo-password".into(),
            roles: vec!["identity:user-admin".into()],
        }
    }
}

/// Issued tokens and when each expires.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Each token's expiry and the tenant it was issued for.
    issued: Mutex<HashMap<String, (SystemTime, String)>>,
}

impl Tokens {
    fn issued(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SystemTime, String)>> {
        self.issued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a new token for the first account, valid for `ttl`.
    pub fn issue(&self, ttl: Duration) -> (String, SystemTime) {
        self.issue_for(ttl, super::TENANT)
    }

    /// Issues a new token for `tenant`, valid for `ttl`.
    pub fn issue_for(&self, ttl: Duration, tenant: &str) -> (String, SystemTime) {
        let mut issued = self.issued();
        let seed = format!("{:?}-{}-{:p}", SystemTime::now(), issued.len(), &issued);
        let token = hex::encode(Md5::digest(seed.as_bytes()));
        let expires = SystemTime::now() + ttl;
        issued.insert(token.clone(), (expires, tenant.to_string()));
        (token, expires)
    }

    /// Whether `token` was issued for `tenant` and has not expired.
    pub fn valid_for(&self, token: &str, tenant: &str) -> bool {
        self.issued()
            .get(token)
            .is_some_and(|(exp, t)| *exp > SystemTime::now() && t == tenant)
    }

    /// The tenant (or project) `token` was issued for, while it has not expired.
    pub fn tenant_of(&self, token: &str) -> Option<String> {
        self.issued()
            .get(token)
            .filter(|(exp, _)| *exp > SystemTime::now())
            .map(|(_, t)| t.clone())
    }

    /// Whether `token` was issued and has not expired.
    pub fn valid(&self, token: &str) -> bool {
        self.issued()
            .get(token)
            .is_some_and(|(exp, _)| *exp > SystemTime::now())
    }

    /// Every token issued so far (tests scan output for them).
    pub fn all(&self) -> Vec<String> {
        self.issued().keys().cloned().collect()
    }

    /// Expires every token now, as a fault.
    pub fn expire_all(&self) {
        let now = SystemTime::now();
        for (exp, _) in self.issued().values_mut() {
            *exp = now;
        }
    }
}

/// Where each service of each region lives, for the catalog.
pub struct Catalog<'a> {
    pub regions: &'a [String],
    pub tenant: &'a str,
    pub compute_url: &'a dyn Fn(&str) -> String,
    pub images_url: &'a dyn Fn(&str) -> String,
    pub files_url: &'a dyn Fn(&str) -> String,
    /// Cloud Files over ServiceNet, where the region has it.
    pub files_internal_url: &'a dyn Fn(&str) -> Option<String>,
}

/// Cloud Files' endpoints: `publicURL`, and `internalURL` (ServiceNet) where the region has one.
fn files_endpoints(catalog: &Catalog<'_>, tenant: &str) -> Vec<Value> {
    catalog
        .regions
        .iter()
        .map(|r| {
            let mut e =
                json!({"region": super::region_name(r), "tenantId": tenant, "publicURL": (catalog.files_url)(r)});
            if let Some(internal) = (catalog.files_internal_url)(r) {
                e["internalURL"] = json!(internal);
            }
            e
        })
        .collect()
}

fn fault(status: StatusCode, name: &str, message: &str) -> Response {
    let body = json!({ name: { "code": status.as_u16(), "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Handles `POST /v2.0/tokens`.
pub fn authenticate(
    body: &[u8],
    account: &Account,
    tokens: &Tokens,
    ttl: Duration,
    catalog: &Catalog<'_>,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Invalid request body: unable to parse Auth data. Please review XML or JSON formatting.",
        );
    };
    let auth = &req["auth"];
    let by_key = &auth["RAX-KSKEY:apiKeyCredentials"];
    let by_password = &auth["passwordCredentials"];
    let (user, secret, expected, method) = if by_key.is_object() {
        (
            &by_key["username"],
            &by_key["apiKey"],
            &account.api_key,
            "APIKEY",
        )
    } else if by_password.is_object() {
        (
            &by_password["username"],
            &by_password["password"],
            &account.password,
            "PASSWORD",
        )
    } else {
        return fault(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Invalid request body: no credentials given.",
        );
    };
    if user.as_str() != Some(account.username.as_str())
        || secret.as_str() != Some(expected.as_str())
    {
        return fault(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate user with credentials provided.",
        );
    }
    let (token, expires) = tokens.issue_for(ttl, catalog.tenant);
    let files_tenant = format!("MossoCloudFS_{}", catalog.tenant);
    let endpoints = |url: &dyn Fn(&str) -> String, tenant: &str| -> Vec<Value> {
        catalog
            .regions
            .iter()
            .map(|r| json!({"region": super::region_name(r), "tenantId": tenant, "publicURL": url(r)}))
            .collect()
    };
    let mut roles = vec![
        json!({"id": "6", "name": "compute:default", "tenantId": catalog.tenant}),
        json!({"id": "5", "name": "object-store:default", "tenantId": files_tenant}),
    ];
    roles.extend(account.roles.iter().enumerate().map(|(i, r)| {
        json!({"id": format!("{}", 100 + i), "name": r, "description": "A role of the simulated user"})
    }));
    let body = json!({"access": {
        "token": {
            "id": token,
            "expires": humantime::format_rfc3339_millis(expires).to_string(),
            "tenant": {"id": catalog.tenant, "name": catalog.tenant},
            "RAX-AUTH:authenticatedBy": [method],
        },
        "user": {
            "id": "10001", "name": account.username, "RAX-AUTH:defaultRegion": catalog.regions.first().map(|r| super::region_name(r)),
            "roles": roles,
        },
        "serviceCatalog": [
            {"name": "cloudServersOpenStack", "type": "compute", "endpoints": endpoints(catalog.compute_url, catalog.tenant)},
            {"name": "cloudImages", "type": "image", "endpoints": endpoints(catalog.images_url, catalog.tenant)},
            {"name": "cloudFiles", "type": "object-store", "endpoints": files_endpoints(catalog, &files_tenant)},
        ],
    }});
    axum::Json(body).into_response()
}
