//! Credentials from the environment, with a `Debug` that never shows the secret.
//!
//! `RAX_USERNAME` with `RAX_API_KEY` (or `RAX_PASSWORD`), optional `RAX_TENANT`. Secrets are never
//! printed, logged or written to state files; this type is the only place they live.

/// The secret half of the credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    ApiKey(String),
    Password(String),
}

/// Who to authenticate as.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: Secret,
    pub tenant: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ApiKey(_) => "ApiKey(<redacted>)",
            Self::Password(_) => "Password(<redacted>)",
        })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.secret {
            Secret::ApiKey(_) => "api key <redacted>",
            Secret::Password(_) => "password <redacted>",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &kind)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// What is missing from the environment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("RAX_USERNAME is not set: export your Rackspace user name")]
    NoUsername,
    #[error(
        "neither RAX_API_KEY nor RAX_PASSWORD is set: export your API key (preferred) or password"
    )]
    NoSecret,
}

impl Credentials {
    /// Reads the credentials from the environment through `get` (injectable for tests).
    pub fn from_env_with(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let present = |k: &str| get(k).filter(|v| !v.is_empty());
        let username = present("RAX_USERNAME").ok_or(Error::NoUsername)?;
        let secret = match (present("RAX_API_KEY"), present("RAX_PASSWORD")) {
            (Some(key), _) => Secret::ApiKey(key),
            (None, Some(pw)) => Secret::Password(pw),
            (None, None) => return Err(Error::NoSecret),
        };
        let creds = Self {
            username,
            secret,
            tenant: present("RAX_TENANT"),
        };
        creds.register_secret();
        Ok(creds)
    }

    /// Registers the key or password with the scrubber ([`crate::secrets`]), so no output can
    /// carry it even if a service echoes it.
    pub fn register_secret(&self) {
        match &self.secret {
            Secret::ApiKey(s) | Secret::Password(s) => crate::secrets::register(s),
        }
    }

    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials {
            username: "u".into(),
            secret: Secret::ApiKey("s3cr3t-key".into()),
            tenant: None,
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t-key") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn environment_rules() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Credentials::from_env_with(env(&[])), Err(Error::NoUsername));
        assert_eq!(
            Credentials::from_env_with(env(&[("RAX_USERNAME", "u")])),
            Err(Error::NoSecret)
        );
        let c = Credentials::from_env_with(env(&[
            ("RAX_USERNAME", "u"),
            ("RAX_PASSWORD", "p"),
            ("RAX_API_KEY", "k"),
        ]))
        .unwrap();
        assert!(c.secret == Secret::ApiKey("k".into()), "the API key wins");
    }
}
