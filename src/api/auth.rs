//! The token every API client shares: authenticated once, refreshed a minute before it expires, and
//! refreshed once after a 401 (rackerlabs/docs-cloud-identity
//! `api-docs/getting-started/manage-auth-tokens.rst`), from Rackspace's Identity v2.0 or an
//! OpenStack Keystone v3.
//!
//! A 401 from any service invalidates only the token that request carried: when several parallel
//! segment uploads hit the same expiry, the first one re-authenticates and the rest reuse the new
//! token instead of each logging in again. The token is never logged and never persisted.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::Error;
use super::identity::{self, Session};
use crate::credentials::Credentials;
use crate::http::{Attempts, Idempotency, RetryConfig};

/// Refresh this long before the token's stated expiry, as ncw/swift does.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

/// A shared, refreshable token. Cloning shares it.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Current>,
    /// Serialises refreshes so concurrent 401s cause one login.
    refreshing: tokio::sync::Mutex<()>,
    login: Option<Login>,
}

#[derive(Clone)]
struct Current {
    token: String,
    expires: Option<SystemTime>,
}

/// What a refresh needs: the identity endpoint and the credentials, for Rackspace's Identity v2.0
/// or an OpenStack Keystone v3.
struct Login {
    http: reqwest::Client,
    identity_url: String,
    creds: LoginCreds,
    retry: RetryConfig,
}

enum LoginCreds {
    V2(Credentials),
    V3(super::keystone::Credentials),
}

impl Login {
    /// A new token and its expiry.
    async fn again(&self) -> Result<Current, Error> {
        Ok(match &self.creds {
            LoginCreds::V2(c) => {
                let s =
                    identity::authenticate(&self.http, &self.identity_url, c, &self.retry).await?;
                Current {
                    token: s.token,
                    expires: s.expires,
                }
            }
            LoginCreds::V3(c) => {
                let s =
                    super::keystone::authenticate(&self.http, &self.identity_url, c, &self.retry)
                        .await?;
                Current {
                    token: s.token,
                    expires: s.expires,
                }
            }
        })
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Auth {
    /// A token that cannot be refreshed (the hidden `transfer` command takes tokens from the
    /// environment); a 401 is final.
    pub fn fixed(token: &str) -> Self {
        crate::secrets::register(token);
        Self::build(
            Current {
                token: token.to_string(),
                expires: None,
            },
            None,
        )
    }

    /// Authenticates with `creds` and keeps what is needed to do it again.
    pub async fn login(
        http: &reqwest::Client,
        identity_url: &str,
        creds: Credentials,
        retry: &RetryConfig,
    ) -> Result<(Self, Session), Error> {
        let session = identity::authenticate(http, identity_url, &creds, retry).await?;
        let auth = Self::build(
            Current {
                token: session.token.clone(),
                expires: session.expires,
            },
            Some(Login {
                http: http.clone(),
                identity_url: identity_url.to_string(),
                creds: LoginCreds::V2(creds),
                retry: retry.clone(),
            }),
        );
        Ok((auth, session))
    }

    /// Logs in to a Keystone v3 at `auth_url` and keeps what is needed to do it again (a token
    /// lasts an hour by default: Keystone's `[token] expiration`).
    pub async fn login_v3(
        http: &reqwest::Client,
        auth_url: &str,
        creds: super::keystone::Credentials,
        retry: &RetryConfig,
    ) -> Result<(Self, super::keystone::Session), Error> {
        let session = super::keystone::authenticate(http, auth_url, &creds, retry).await?;
        let auth = Self::build(
            Current {
                token: session.token.clone(),
                expires: session.expires,
            },
            Some(Login {
                http: http.clone(),
                identity_url: auth_url.to_string(),
                creds: LoginCreds::V3(creds),
                retry: retry.clone(),
            }),
        );
        Ok((auth, session))
    }

    fn build(current: Current, login: Option<Login>) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: RwLock::new(current),
                refreshing: tokio::sync::Mutex::new(()),
                login,
            }),
        }
    }

    fn current(&self) -> Current {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The token to put in `X-Auth-Token` now.
    pub fn token(&self) -> String {
        self.current().token
    }

    /// Re-authenticates when the token expires within a minute.
    pub async fn ensure_fresh(&self) -> Result<(), Error> {
        let cur = self.current();
        let stale = cur
            .expires
            .is_some_and(|e| e <= SystemTime::now() + EARLY_REFRESH);
        if stale {
            self.refresh(&cur.token).await?;
        }
        Ok(())
    }

    /// Called after a 401 on a request that carried `seen`. Returns whether a different token is
    /// now available, so the caller retries once; `false` means the 401 is final.
    pub async fn refresh_after_401(&self, seen: &str) -> Result<bool, Error> {
        if self.inner.login.is_none() {
            return Ok(false);
        }
        self.refresh(seen).await?;
        Ok(self.token() != seen)
    }

    async fn refresh(&self, seen: &str) -> Result<(), Error> {
        let Some(login) = &self.inner.login else {
            return Ok(());
        };
        let _guard = self.inner.refreshing.lock().await;
        if self.token() != seen {
            // Another request refreshed it while this one waited.
            return Ok(());
        }
        tracing::info!("re-authenticating: the token expired or was refused");
        let fresh = login.again().await?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// Sends a request built by `build` (given the current token) with the retry policy; on a 401 it
/// refreshes the token once and sends once more. Every API client goes through here; all of it
/// draws on the one budget `attempts`.
pub async fn send(
    auth: &Auth,
    attempts: &mut Attempts,
    kind: Idempotency,
    mut build: impl FnMut(&str) -> reqwest::RequestBuilder,
    on_retry: &crate::http::OnRetry,
) -> Result<reqwest::Response, Error> {
    auth.ensure_fresh().await?;
    let token = auth.token();
    let resp = crate::http::send_within(attempts, kind, || build(&token), on_retry).await?;
    if resp.status() != reqwest::StatusCode::UNAUTHORIZED || !auth.refresh_after_401(&token).await?
    {
        return Ok(resp);
    }
    let token = auth.token();
    Ok(crate::http::send_within(attempts, kind, || build(&token), on_retry).await?)
}
