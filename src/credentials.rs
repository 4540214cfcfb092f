//! Credentials from the environment, with a `Debug` that never shows the secret.
//!
//! Where they are read from (the environment, a `rack` profile, `clouds.yaml`) is
//! [`crate::profiles`]'s business. Secrets are never printed, logged or written to state files;
//! this type is the only place they live.

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

impl Credentials {
    /// Registers the key or password with the scrubber ([`crate::secrets`]), so no output can
    /// carry it even if a service echoes it.
    pub fn register_secret(&self) {
        match &self.secret {
            Secret::ApiKey(s) | Secret::Password(s) => crate::secrets::register(s),
        }
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
}
