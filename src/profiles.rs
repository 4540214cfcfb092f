//! Credentials where Rackspace users keep them: the environment (`RAX_*`, and the `rack` CLI's
//! `RS_USERNAME`/`RS_API_KEY`), a profile of the official `rack` CLI (`~/.rack/config`, INI sections
//! with `username`, `api-key`, `region`; `--profile NAME`, else `[default]`), or an OpenStack
//! `clouds.yaml` entry (`--os-cloud NAME` or `OS_CLOUD`, found where openstacksdk looks:
//! `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
//! `/etc/openstack/clouds.yaml`).
//!
//! Precedence, field by field: flags, then the environment, then the profile. Where each value came
//! from is logged at `-v` (never the value of a secret), a file readable by other users draws a
//! warning, and every secret read is registered with the scrubber.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::credentials::{Credentials, Secret};

/// Rackspace's UK identity endpoint: UK accounts authenticate there, not at the US one.
pub const UK_IDENTITY_URL: &str = "https://lon.identity.api.rackspacecloud.com/v2.0";

/// Why no usable credentials were found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "RAX_USERNAME is not set: export your Rackspace user name (or RS_USERNAME), or name a \
         profile with --profile (~/.rack/config) or --os-cloud (clouds.yaml)"
    )]
    NoUsername,
    #[error(
        "neither RAX_API_KEY nor RAX_PASSWORD is set for user {0}: export your API key \
         (preferred; or RS_API_KEY) or password, or add `api-key` to the profile"
    )]
    NoSecret(String),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what} file: {detail}")]
    Parse {
        path: String,
        what: &'static str,
        detail: String,
    },
    #[error("{path} has no profile [{name}]")]
    NoProfile { path: String, name: String },
    #[error("no clouds.yaml defines cloud {name} (looked in {looked})")]
    NoCloud { name: String, looked: String },
}

/// What to look for, and where.
pub struct Lookup<'a> {
    /// `--profile NAME` (a `rack` profile).
    pub profile: Option<&'a str>,
    /// `--os-cloud NAME` (a `clouds.yaml` cloud).
    pub os_cloud: Option<&'a str>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub home: Option<PathBuf>,
    pub cwd: PathBuf,
}

impl Lookup<'_> {
    fn var(&self, k: &str) -> Option<String> {
        (self.env)(k).filter(|v| !v.is_empty())
    }
}

/// What a profile holds.
#[derive(Debug, Default, Clone)]
struct Profile {
    username: Option<String>,
    api_key: Option<String>,
    password: Option<String>,
    tenant: Option<String>,
    region: Option<String>,
    identity_url: Option<String>,
    /// Where it came from, for messages.
    origin: String,
}

/// The credentials found, with the profile's region and identity endpoint when it had them.
#[derive(Debug)]
pub struct Found {
    pub creds: Credentials,
    /// The default `--from`.
    pub region: Option<String>,
    pub identity_url: Option<String>,
}

/// The destination account's credentials, when they differ from the source's:
/// `RAX_DST_USERNAME` with `RAX_DST_API_KEY` or `RAX_DST_PASSWORD` (and `RAX_DST_TENANT`).
pub fn destination(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Credentials>, Error> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let Some(username) = var("RAX_DST_USERNAME") else {
        return Ok(None);
    };
    let secret = match (var("RAX_DST_API_KEY"), var("RAX_DST_PASSWORD")) {
        (Some(k), _) => Secret::ApiKey(k),
        (None, Some(p)) => Secret::Password(p),
        (None, None) => return Err(Error::NoSecret(username)),
    };
    tracing::info!("destination credentials: user {username} from RAX_DST_*");
    let creds = Credentials {
        username,
        secret,
        tenant: var("RAX_DST_TENANT"),
    };
    creds.register_secret();
    Ok(Some(creds))
}

/// Resolves the credentials, field by field: environment first, then the profile.
pub fn resolve(l: &Lookup<'_>) -> Result<Found, Error> {
    let profile = load_profile(l)?.unwrap_or_default();
    let from_env = |names: &[&'static str]| names.iter().find_map(|n| l.var(n).map(|v| (v, *n)));
    let pick = |names: &[&'static str], fallback: &Option<String>| -> Option<(String, String)> {
        from_env(names)
            .map(|(v, n)| (v, n.to_string()))
            .or_else(|| fallback.clone().map(|v| (v, profile.origin.clone())))
    };
    let (username, user_from) =
        pick(&["RAX_USERNAME", "RS_USERNAME"], &profile.username).ok_or(Error::NoUsername)?;
    let secret = match (
        pick(&["RAX_API_KEY", "RS_API_KEY"], &profile.api_key),
        pick(&["RAX_PASSWORD"], &profile.password),
    ) {
        (Some((key, from)), _) => (Secret::ApiKey(key), format!("API key from {from}")),
        (None, Some((pw, from))) => (Secret::Password(pw), format!("password from {from}")),
        (None, None) => return Err(Error::NoSecret(username)),
    };
    tracing::info!(
        "credentials: user {username} from {user_from}, {}",
        secret.1
    );
    let creds = Credentials {
        username,
        secret: secret.0,
        tenant: l.var("RAX_TENANT").or(profile.tenant),
    };
    creds.register_secret();
    Ok(Found {
        creds,
        region: profile.region.map(|r| r.to_uppercase()),
        identity_url: profile.identity_url,
    })
}

fn load_profile(l: &Lookup<'_>) -> Result<Option<Profile>, Error> {
    let os_cloud = l.os_cloud.map(str::to_string).or_else(|| l.var("OS_CLOUD"));
    if let Some(name) = os_cloud {
        return clouds_yaml(l, &name).map(Some);
    }
    let Some(home) = &l.home else {
        return Ok(None);
    };
    let path = home.join(".rack").join("config");
    match l.profile {
        Some(name) => rack_profile(&path, name).map(Some),
        // Without --profile, a [default] section is used when the file has one.
        None if path.exists() => match rack_profile(&path, "default") {
            Ok(p) => Ok(Some(p)),
            Err(Error::NoProfile { .. }) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

/// A section of the `rack` CLI's INI config.
fn rack_profile(path: &Path, name: &str) -> Result<Profile, Error> {
    let shown = path.display().to_string();
    warn_if_shared(path);
    let ini = ini::Ini::load_from_file(path).map_err(|e| match e {
        ini::Error::Io(source) => Error::Read {
            path: shown.clone(),
            source,
        },
        ini::Error::Parse(p) => Error::Parse {
            path: shown.clone(),
            what: "rack config",
            detail: p.to_string(),
        },
    })?;
    let section = ini.section(Some(name)).ok_or_else(|| Error::NoProfile {
        path: shown.clone(),
        name: name.to_string(),
    })?;
    let get = |k: &str| section.get(k).map(str::to_string).filter(|v| !v.is_empty());
    Ok(Profile {
        username: get("username"),
        api_key: get("api-key"),
        password: get("password"),
        tenant: get("tenant-id"),
        region: get("region"),
        identity_url: get("auth-url"),
        origin: format!("{shown} [{name}]"),
    })
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: std::collections::BTreeMap<String, Cloud>,
}

#[derive(Deserialize)]
struct Cloud {
    #[serde(default)]
    auth: CloudAuth,
    #[serde(default)]
    region_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct CloudAuth {
    username: Option<String>,
    password: Option<String>,
    api_key: Option<String>,
    project_id: Option<String>,
    tenant_id: Option<String>,
    auth_url: Option<String>,
}

/// A cloud of an OpenStack `clouds.yaml`, found where openstacksdk looks.
fn clouds_yaml(l: &Lookup<'_>, name: &str) -> Result<Profile, Error> {
    let mut places: Vec<PathBuf> = Vec::new();
    if let Some(f) = l.var("OS_CLIENT_CONFIG_FILE") {
        places.push(f.into());
    }
    places.push(l.cwd.join("clouds.yaml"));
    if let Some(home) = &l.home {
        places.push(home.join(".config/openstack/clouds.yaml"));
    }
    places.push("/etc/openstack/clouds.yaml".into());
    for path in places.iter().filter(|p| p.exists()) {
        let shown = path.display().to_string();
        warn_if_shared(path);
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let file: CloudsFile = serde_norway::from_str(&text).map_err(|e| Error::Parse {
            path: shown.clone(),
            what: "clouds.yaml",
            detail: e.to_string(),
        })?;
        if let Some(c) = file.clouds.get(name) {
            return Ok(Profile {
                username: c.auth.username.clone(),
                api_key: c.auth.api_key.clone(),
                password: c.auth.password.clone(),
                tenant: c.auth.project_id.clone().or(c.auth.tenant_id.clone()),
                region: c.region_name.clone(),
                identity_url: c.auth.auth_url.clone(),
                origin: format!("{shown} (cloud {name})"),
            });
        }
    }
    let looked: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
    Err(Error::NoCloud {
        name: name.to_string(),
        looked: looked.join(", "),
    })
}

/// Warns when a file holding credentials can be read by other users.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} holds credentials and is readable by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(
        env: &'a dyn Fn(&str) -> Option<String>,
        home: &Path,
        profile: Option<&'a str>,
        os_cloud: Option<&'a str>,
    ) -> Lookup<'a> {
        Lookup {
            profile,
            os_cloud,
            env,
            home: Some(home.to_path_buf()),
            cwd: home.to_path_buf(),
        }
    }

    #[test]
    fn rack_profiles_and_precedence() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".rack")).unwrap();
        std::fs::write(
            home.path().join(".rack/config"),
            "[default]\nusername = alice\napi-key = KEY-alice-0001\nregion = dfw\n\n\
             [uk]\nusername = bob\napi-key = KEY-bob-0002\nregion = LON\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let found = resolve(&lookup(&none, home.path(), None, None)).unwrap();
        assert_eq!(found.creds.username, "alice");
        assert_eq!(found.region.as_deref(), Some("DFW"));
        let found = resolve(&lookup(&none, home.path(), Some("uk"), None)).unwrap();
        assert_eq!(found.creds.username, "bob");
        assert!(found.creds.secret == Secret::ApiKey("KEY-bob-0002".into()));
        // The environment beats the profile, field by field.
        let env = |k: &str| (k == "RS_USERNAME").then(|| "carol".to_string());
        let found = resolve(&lookup(&env, home.path(), Some("uk"), None)).unwrap();
        assert_eq!(found.creds.username, "carol");
        assert!(found.creds.secret == Secret::ApiKey("KEY-bob-0002".into()));
        assert!(matches!(
            resolve(&lookup(&none, home.path(), Some("nope"), None)),
            Err(Error::NoProfile { .. })
        ));
    }

    #[test]
    fn environment_rules() {
        let home = tempfile::tempdir().unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let run = |e: &dyn Fn(&str) -> Option<String>| resolve(&lookup(e, home.path(), None, None));
        assert!(matches!(run(&env(&[])), Err(Error::NoUsername)));
        assert!(matches!(
            run(&env(&[("RAX_USERNAME", "u")])),
            Err(Error::NoSecret(_))
        ));
        let c = run(&env(&[
            ("RAX_USERNAME", "u"),
            ("RAX_PASSWORD", "pw-0001"),
            ("RAX_API_KEY", "key-0001"),
        ]))
        .unwrap()
        .creds;
        assert!(
            c.secret == Secret::ApiKey("key-0001".into()),
            "the API key wins"
        );
    }

    #[test]
    fn clouds_yaml_entries() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("clouds.yaml"),
            "clouds:\n  rax-iad:\n    auth:\n      username: dave\n      api_key: KEY-dave-0003\n      \
             project_id: '123456'\n      auth_url: https://identity.api.rackspacecloud.com/v2.0\n    \
             region_name: IAD\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let found = resolve(&lookup(&none, home.path(), None, Some("rax-iad"))).unwrap();
        assert_eq!(found.creds.username, "dave");
        assert_eq!(found.creds.tenant.as_deref(), Some("123456"));
        assert_eq!(found.region.as_deref(), Some("IAD"));
        assert!(matches!(
            resolve(&lookup(&none, home.path(), None, Some("other"))),
            Err(Error::NoCloud { .. })
        ));
        assert!(matches!(
            resolve(&lookup(&none, home.path(), None, None)),
            Err(Error::NoUsername)
        ));
    }
}
