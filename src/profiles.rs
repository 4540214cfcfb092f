//! Credentials where Rackspace and OpenStack users keep them: the environment (`RAX_*`; the `rack`
//! CLI's `RS_*`; the openstack CLI's `OS_*`), a profile of the official `rack` CLI
//! (`~/.rack/config`), or an OpenStack `clouds.yaml` cloud.
//!
//! Precedence, field by field, highest first (rackspace/rack `docs/configuration.rst`: flags, then
//! the profile, then the environment; openstacksdk `openstack/config/loader.py` for OS_CLOUD):
//! 1. flags (`--identity-url` and the region flags are read by the caller);
//! 2. a profile or cloud named on the command line (`--profile`, `--os-cloud`);
//! 3. the environment: `RAX_*`, `RS_*` and `OS_*` variables, then the cloud `OS_CLOUD` names;
//! 4. the implicit default: the `rack` config's default profile, or the only cloud of a
//!    `clouds.yaml` when there is no `rack` config.
//!
//! `rack configure` writes the default profile as a header-less first section (go-ini's DEFAULT);
//! a named profile falls back to it for keys it lacks; values are literal (no backslash escapes)
//! (rackspace/rack `configure.go`, `commandoptions/configfile.go`). `clouds.yaml` is found where
//! openstacksdk looks: `OS_CLIENT_CONFIG_FILE`, then `clouds.{yaml,yml,json}` in the current
//! directory, `$XDG_CONFIG_HOME/openstack` (default `~/.config/openstack`) and `/etc/openstack`,
//! the first file found winning; `secure.{yaml,yml,json}` from the same places (or
//! `OS_CLIENT_SECURE_FILE`) is merged into it; `profile: rackspace` brings the vendor's auth URL
//! (`openstack/config/vendors/rackspace.json`).
//!
//! Where each value came from is logged at `-v` (never the value of a secret), a file readable by
//! other users draws a warning, a malformed value is reported by its key alone (it may be a
//! secret), and every secret read is registered with the scrubber.

use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::credentials::{Credentials, Secret};

/// Rackspace's UK identity endpoint: UK accounts authenticate there, not at the US one.
pub const UK_IDENTITY_URL: &str = "https://lon.identity.api.rackspacecloud.com/v2.0";

/// The auth URL openstacksdk's `rackspace` vendor profile gives a cloud
/// (`openstack/config/vendors/rackspace.json`).
const RACKSPACE_VENDOR_AUTH_URL: &str = "https://identity.api.rackspacecloud.com/v2.0/";

/// Why no usable credentials were found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "RAX_USERNAME is not set: export your Rackspace user name (or RS_USERNAME, OS_USERNAME), \
         or name a profile with --profile (~/.rack/config) or --os-cloud (clouds.yaml)"
    )]
    NoUsername,
    #[error("no API key or password for user {user}: {hint}")]
    NoSecret { user: String, hint: String },
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

/// How a source spells its keys, for the hint when one is missing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    #[default]
    Environment,
    Rack,
    CloudsYaml,
}

/// What one source of credentials holds.
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
    spelling: Spelling,
}

/// The credentials found, with the region and identity endpoint when a source had them.
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
        (None, None) => {
            return Err(Error::NoSecret {
                user: username,
                hint: "export RAX_DST_API_KEY (preferred) or RAX_DST_PASSWORD".into(),
            });
        }
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

/// The environment as one source: the first of each list that is set.
fn environment(l: &Lookup<'_>) -> Profile {
    let mut origins: Vec<&'static str> = Vec::new();
    let mut take = |names: &[&'static str]| {
        names
            .iter()
            .find_map(|n| l.var(n).inspect(|_| origins.push(n)))
    };
    let mut p = Profile {
        username: take(&["RAX_USERNAME", "RS_USERNAME", "OS_USERNAME"]),
        api_key: take(&["RAX_API_KEY", "RS_API_KEY"]),
        password: take(&["RAX_PASSWORD", "OS_PASSWORD"]),
        tenant: take(&[
            "RAX_TENANT",
            "OS_PROJECT_ID",
            "OS_TENANT_ID",
            "OS_PROJECT_NAME",
        ]),
        region: take(&["RS_REGION_NAME", "OS_REGION_NAME"]),
        identity_url: take(&["RS_AUTH_URL", "OS_AUTH_URL"]),
        origin: String::new(),
        spelling: Spelling::Environment,
    };
    p.origin = format!("the environment ({})", origins.join(", "));
    p
}

/// Resolves the credentials from the sources in their order of precedence (module docs).
pub fn resolve(l: &Lookup<'_>) -> Result<Found, Error> {
    let explicit = match (l.profile, l.os_cloud) {
        (Some(name), _) => Some(rack_profile(&rack_config(l)?, name)?),
        (None, Some(name)) => Some(clouds_yaml(l, name)?),
        (None, None) => None,
    };
    let mut layers: Vec<Profile> = explicit.into_iter().collect();
    layers.push(environment(l));
    if l.profile.is_none() && l.os_cloud.is_none() {
        if let Some(name) = l.var("OS_CLOUD") {
            layers.push(clouds_yaml(l, &name)?);
        } else if let Some(implicit) = implicit_default(l)? {
            layers.push(implicit);
        }
    }
    let pick = |field: fn(&Profile) -> &Option<String>| -> Option<(String, &Profile)> {
        layers.iter().find_map(|p| field(p).clone().map(|v| (v, p)))
    };
    let (username, user_from) = pick(|p| &p.username).ok_or(Error::NoUsername)?;
    // The secret comes whole from the first source that has one (an API key before a password).
    let secret = layers.iter().find_map(|p| {
        p.api_key
            .clone()
            .map(|k| (Secret::ApiKey(k), format!("API key from {}", p.origin)))
            .or_else(|| {
                p.password
                    .clone()
                    .map(|pw| (Secret::Password(pw), format!("password from {}", p.origin)))
            })
    });
    let Some((secret, secret_from)) = secret else {
        return Err(Error::NoSecret {
            user: username,
            hint: missing_secret_hint(user_from),
        });
    };
    tracing::info!(
        "credentials: user {username} from {}, {secret_from}",
        user_from.origin
    );
    let region = pick(|p| &p.region);
    if let Some((r, from)) = &region {
        tracing::info!("default region {r} from {}", from.origin);
    }
    let identity_url = pick(|p| &p.identity_url);
    if let Some((u, from)) = &identity_url {
        tracing::info!("identity endpoint {u} from {}", from.origin);
    }
    let creds = Credentials {
        username,
        secret,
        tenant: pick(|p| &p.tenant).map(|t| t.0),
    };
    creds.register_secret();
    Ok(Found {
        creds,
        region: region.map(|r| r.0.to_uppercase()),
        identity_url: identity_url.map(|u| u.0),
    })
}

/// What to add, in the spelling of the source the user name came from.
fn missing_secret_hint(from: &Profile) -> String {
    match from.spelling {
        Spelling::Environment => {
            "export RAX_API_KEY (preferred; or RS_API_KEY) or RAX_PASSWORD (or OS_PASSWORD)".into()
        }
        Spelling::Rack => format!("add `api-key = …` to {}", from.origin),
        Spelling::CloudsYaml => format!(
            "add `api_key` (preferred) or `password` under `auth` of {}",
            from.origin
        ),
    }
}

fn rack_config(l: &Lookup<'_>) -> Result<PathBuf, Error> {
    let home = l.home.as_ref().ok_or_else(|| Error::Read {
        path: "~/.rack/config".into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"),
    })?;
    Ok(home.join(".rack").join("config"))
}

/// The source used when none is named: the `rack` config's default profile, else the only cloud
/// of a `clouds.yaml`.
fn implicit_default(l: &Lookup<'_>) -> Result<Option<Profile>, Error> {
    if let Some(home) = &l.home {
        let path = home.join(".rack").join("config");
        if path.exists() {
            return match rack_profile(&path, "default") {
                Ok(p) => Ok(Some(p)),
                Err(Error::NoProfile { .. }) => Ok(None),
                Err(e) => Err(e),
            };
        }
    }
    let Some((path, file)) = load_clouds(l)? else {
        return Ok(None);
    };
    let clouds = file.get("clouds").and_then(Value::as_mapping);
    match clouds.map(|c| c.keys().collect::<Vec<_>>()).as_deref() {
        Some([only]) => {
            let name = only.as_str().unwrap_or_default().to_string();
            let entry = cloud_entry(&path, &file, &name)?;
            // A Keystone v3 cloud (an OpenStack cloud for --to-cloud) is not a legacy account:
            // Rackspace's legacy identity is v2.0, and taking it implicitly would send its
            // credentials where they cannot work.
            if entry
                .identity_url
                .as_deref()
                .is_some_and(|u| u.trim_end_matches('/').ends_with("/v3"))
            {
                tracing::info!(
                    "clouds.yaml's only cloud {name} is Keystone v3: not a legacy account"
                );
                return Ok(None);
            }
            Ok(Some(entry))
        }
        _ => Ok(None),
    }
}

/// A profile of the `rack` CLI's config: a named section with the default profile under it.
fn rack_profile(path: &Path, name: &str) -> Result<Profile, Error> {
    let shown = path.display().to_string();
    warn_if_shared(path);
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    // Values are literal: go-ini, which rack uses, reads no backslash escapes.
    let ini = ini::Ini::load_from_str_opt(
        &text,
        ini::ParseOption {
            enabled_escape: false,
            ..ini::ParseOption::default()
        },
    )
    .map_err(|e| Error::Parse {
        path: shown.clone(),
        what: "rack config",
        detail: e.to_string(),
    })?;
    // `rack configure` writes the default profile without a header (go-ini's DEFAULT section).
    let headerless = ini.section(None::<String>).filter(|s| !s.is_empty());
    let default = ini.section(Some("default")).or(headerless);
    let named = if name == "default" {
        default
    } else {
        ini.section(Some(name))
    };
    let Some(section) = named else {
        return Err(Error::NoProfile {
            path: shown,
            name: name.to_string(),
        });
    };
    let get = |k: &str| {
        section
            .get(k)
            .or_else(|| default.and_then(|d| d.get(k)))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    Ok(Profile {
        username: get("username"),
        api_key: get("api-key"),
        password: get("password"),
        tenant: get("tenant-id"),
        region: get("region"),
        identity_url: get("auth-url"),
        origin: format!("{shown} [{name}]"),
        spelling: Spelling::Rack,
    })
}

/// Where openstacksdk looks for `stem.{yaml,yml,json}`, the override variable's file first.
fn config_places(l: &Lookup<'_>, stem: &str, override_var: &str) -> Vec<PathBuf> {
    let mut dirs = vec![l.cwd.clone()];
    match l.var("XDG_CONFIG_HOME") {
        Some(x) => dirs.push(PathBuf::from(x).join("openstack")),
        None => dirs.extend(l.home.iter().map(|h| h.join(".config/openstack"))),
    }
    dirs.push("/etc/openstack".into());
    let mut places: Vec<PathBuf> = l.var(override_var).map(PathBuf::from).into_iter().collect();
    for d in dirs {
        for suffix in ["yaml", "yml", "json"] {
            places.push(d.join(format!("{stem}.{suffix}")));
        }
    }
    places
}

/// Reads the first file of `places` that exists, as YAML (JSON is read the same way).
fn first_file(places: &[PathBuf]) -> Result<Option<(PathBuf, Value)>, Error> {
    let Some(path) = places.iter().find(|p| p.is_file()) else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    warn_if_shared(path);
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let value: Value = serde_norway::from_str(&text).map_err(|e| Error::Parse {
        path: shown,
        what: "clouds.yaml",
        // The position only: the parser's message can quote the text, which may be a secret.
        detail: e.location().map_or_else(
            || "not valid YAML".to_string(),
            |at| {
                format!(
                    "not valid YAML at line {}, column {}",
                    at.line(),
                    at.column()
                )
            },
        ),
    })?;
    Ok(Some((path.clone(), value)))
}

/// The `clouds.yaml` that openstacksdk would read, with its `secure.yaml` merged in.
pub(crate) fn load_clouds(l: &Lookup<'_>) -> Result<Option<(PathBuf, Value)>, Error> {
    let Some((path, mut clouds)) =
        first_file(&config_places(l, "clouds", "OS_CLIENT_CONFIG_FILE"))?
    else {
        return Ok(None);
    };
    if let Some((_, secure)) = first_file(&config_places(l, "secure", "OS_CLIENT_SECURE_FILE"))? {
        merge(&mut clouds, secure);
    }
    Ok(Some((path, clouds)))
}

/// Merges `over` into `base`, mappings key by key (openstacksdk's `_merge_clouds`).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A cloud of an OpenStack `clouds.yaml`, found where openstacksdk looks.
fn clouds_yaml(l: &Lookup<'_>, name: &str) -> Result<Profile, Error> {
    if let Some((path, file)) = load_clouds(l)? {
        let has = file.get("clouds").and_then(|c| c.get(name)).is_some();
        if has {
            return cloud_entry(&path, &file, name);
        }
        return Err(Error::NoCloud {
            name: name.to_string(),
            looked: path.display().to_string(),
        });
    }
    let looked: Vec<String> = config_places(l, "clouds", "OS_CLIENT_CONFIG_FILE")
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Err(Error::NoCloud {
        name: name.to_string(),
        looked: looked.join(", "),
    })
}

/// Reads cloud `name` of a parsed `clouds.yaml`. A value of the wrong type is reported by its key
/// alone: it may be a secret.
fn cloud_entry(path: &Path, file: &Value, name: &str) -> Result<Profile, Error> {
    let shown = path.display().to_string();
    let cloud = &file["clouds"][name];
    let text = |v: &Value, key: &str| -> Result<Option<String>, Error> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Error::Parse {
                path: shown.clone(),
                what: "clouds.yaml",
                detail: format!("clouds.{name}.{key} must be a string (its value is not shown)"),
            }),
        }
    };
    let auth = cloud.get("auth").cloned().unwrap_or(Value::Null);
    let auth_text = |key: &str| {
        text(&auth, key).map_err(|e| match e {
            Error::Parse { path, what, .. } => Error::Parse {
                path,
                what,
                detail: format!(
                    "clouds.{name}.auth.{key} must be a string (its value is not shown)"
                ),
            },
            other => other,
        })
    };
    let vendor = text(cloud, "profile")?.or(text(cloud, "cloud")?);
    let mut identity_url = auth_text("auth_url")?;
    if identity_url.is_none() && vendor.as_deref() == Some("rackspace") {
        identity_url = Some(RACKSPACE_VENDOR_AUTH_URL.to_string());
    }
    let region = match text(cloud, "region_name")? {
        Some(r) => Some(r),
        None => cloud
            .get("regions")
            .and_then(Value::as_sequence)
            .and_then(|r| r.first())
            .and_then(|r| r.as_str().or_else(|| r.get("name").and_then(Value::as_str)))
            .map(str::to_string),
    };
    Ok(Profile {
        username: auth_text("username")?,
        api_key: auth_text("api_key")?,
        password: auth_text("password")?,
        tenant: auth_text("project_id")?
            .or(auth_text("tenant_id")?)
            .or(auth_text("project_name")?)
            .or(auth_text("tenant_name")?),
        region,
        identity_url,
        origin: format!("{shown} (cloud {name})"),
        spelling: Spelling::CloudsYaml,
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
        // A profile named on the command line beats the environment; the environment beats the
        // implicit default profile.
        let env = |k: &str| (k == "RS_USERNAME").then(|| "carol".to_string());
        let found = resolve(&lookup(&env, home.path(), Some("uk"), None)).unwrap();
        assert_eq!(found.creds.username, "bob");
        let found = resolve(&lookup(&env, home.path(), None, None)).unwrap();
        assert_eq!(found.creds.username, "carol");
        assert!(found.creds.secret == Secret::ApiKey("KEY-alice-0001".into()));
        // OS_CLOUD in the environment does not beat an explicit --profile either.
        let env = |k: &str| (k == "OS_CLOUD").then(|| "nowhere".to_string());
        let found = resolve(&lookup(&env, home.path(), Some("uk"), None)).unwrap();
        assert_eq!(found.creds.username, "bob");
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
            Err(Error::NoSecret { .. })
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
        // Its only cloud is the implicit default, as in openstacksdk.
        let found = resolve(&lookup(&none, home.path(), None, None)).unwrap();
        assert_eq!(found.creds.username, "dave");
    }

    #[test]
    fn rack_configure_writes_a_headerless_default_with_literal_values() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".rack")).unwrap();
        // As `rack configure` writes it: the default profile first, without a header.
        std::fs::write(
            home.path().join(".rack/config"),
            "username = erin\napi-key = ab\\cd\\ef\nregion = ORD\n\n[staging]\nusername = frank\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let found = resolve(&lookup(&none, home.path(), None, None)).unwrap();
        assert_eq!(found.creds.username, "erin");
        assert!(
            found.creds.secret == Secret::ApiKey("ab\\cd\\ef".into()),
            "backslashes are literal"
        );
        assert_eq!(found.region.as_deref(), Some("ORD"));
        // A named profile takes what it lacks from the default one.
        let found = resolve(&lookup(&none, home.path(), Some("staging"), None)).unwrap();
        assert_eq!(found.creds.username, "frank");
        assert!(found.creds.secret == Secret::ApiKey("ab\\cd\\ef".into()));
        // The rack CLI's region and endpoint variables.
        let env = |k: &str| match k {
            "RS_REGION_NAME" => Some("iad".to_string()),
            "RS_AUTH_URL" => Some("https://id.example/v2.0".to_string()),
            _ => None,
        };
        let found = resolve(&lookup(&env, home.path(), None, None)).unwrap();
        assert_eq!(found.region.as_deref(), Some("IAD"));
        assert_eq!(
            found.identity_url.as_deref(),
            Some("https://id.example/v2.0")
        );
    }

    #[test]
    fn clouds_yaml_is_found_and_merged_where_openstacksdk_looks() {
        let home = tempfile::tempdir().unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let xdg = home.path().join("xdg");
        std::fs::create_dir_all(xdg.join("openstack")).unwrap();
        // clouds.yml (not .yaml) under $XDG_CONFIG_HOME, the secret in secure.yaml.
        std::fs::write(
            xdg.join("openstack/clouds.yml"),
            "clouds:\n  rax:\n    profile: rackspace\n    auth:\n      username: gina\n      \
             project_id: 654321\n    region_name: DFW\n",
        )
        .unwrap();
        std::fs::write(
            xdg.join("openstack/secure.yaml"),
            "clouds:\n  rax:\n    auth:\n      api_key: KEY-gina-0004\n",
        )
        .unwrap();
        let xdg_s = xdg.display().to_string();
        let env = |k: &str| (k == "XDG_CONFIG_HOME").then(|| xdg_s.clone());
        let l = Lookup {
            profile: None,
            os_cloud: Some("rax"),
            env: &env,
            home: Some(home.path().to_path_buf()),
            cwd: cwd.path().to_path_buf(),
        };
        let found = resolve(&l).unwrap();
        assert_eq!(found.creds.username, "gina");
        assert!(found.creds.secret == Secret::ApiKey("KEY-gina-0004".into()));
        assert_eq!(found.creds.tenant.as_deref(), Some("654321"));
        assert_eq!(
            found.identity_url.as_deref(),
            Some(RACKSPACE_VENDOR_AUTH_URL),
            "the rackspace vendor profile's auth_url"
        );
        // The only cloud is used when none is named; OS_* variables fill in around it.
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some(xdg_s.clone()),
            "OS_REGION_NAME" => Some("IAD".to_string()),
            _ => None,
        };
        let l = Lookup {
            env: &env,
            os_cloud: None,
            ..l
        };
        let found = resolve(&l).unwrap();
        assert_eq!(found.creds.username, "gina");
        assert_eq!(
            found.region.as_deref(),
            Some("IAD"),
            "the environment beats the implicit cloud"
        );
    }

    #[test]
    fn a_malformed_value_is_named_by_its_key_and_never_shown() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("clouds.yaml"),
            "clouds:\n  c:\n    auth:\n      username: hal\n      password: [SECRET-PW-0005, x]\n",
        )
        .unwrap();
        let none = |_: &str| None;
        let err = resolve(&lookup(&none, home.path(), None, Some("c")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("clouds.c.auth.password"), "{err}");
        assert!(!err.contains("SECRET-PW-0005"), "{err}");
        // A missing secret is asked for in the file's own spelling.
        std::fs::write(
            home.path().join("clouds.yaml"),
            "clouds:\n  c:\n    auth:\n      username: hal\n",
        )
        .unwrap();
        let err = resolve(&lookup(&none, home.path(), None, Some("c")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`api_key`"), "{err}");
        // Broken YAML: the position, never the text.
        std::fs::write(home.path().join("clouds.yaml"), "clouds: [SECRET-PW-0006\n").unwrap();
        let err = resolve(&lookup(&none, home.path(), None, Some("c")))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SECRET-PW-0006") && err.contains("line"),
            "{err}"
        );
    }
}
