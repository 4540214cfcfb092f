//! An OpenStack cloud of `clouds.yaml` as a Keystone v3 endpoint (`--to-cloud`, `--from-cloud`):
//! found where openstacksdk finds it, with `secure.yaml` merged in ([`crate::profiles`]), and read
//! with openstacksdk's keys (openstack/openstacksdk `doc/source/user/config/configuration.rst`):
//!
//! - `auth_type`: `password` (the default) or `v3applicationcredential`;
//! - `auth`: `auth_url`, `username` and `password` (Rackspace OpenStack Flex takes the Rackspace
//!   user name with its password or API key there; rackerlabs/genestack
//!   `docs/openstack-clouds.md`), `user_domain_name`/`user_domain_id`, `project_name` with
//!   `project_domain_name`/`project_domain_id`, or `project_id`; `domain_name`/`domain_id` stand
//!   for both domains; `application_credential_id` and `application_credential_secret`;
//! - `region_name` (or the first of `regions`) and `interface` (default `public`).
//!
//! A user or project without a domain is in the domain whose id is `default`, Keystone's own
//! (`[identity] default_domain_id`). A value of the wrong type is reported by its key only.

use std::path::Path;

use serde_norway::Value;

use crate::api::keystone::{Credentials, Domain, Project};
use crate::profiles::{Error, Lookup};

/// A cloud to log in to.
#[derive(Debug, Clone)]
pub struct Cloud {
    pub name: String,
    /// Keystone's v3 root.
    pub auth_url: String,
    pub credentials: Credentials,
    /// The region to use when `--from`/`--to` does not say.
    pub region: Option<String>,
    /// The catalog interface: `public`, `internal` or `admin`.
    pub interface: String,
    /// The file it came from, for messages.
    pub origin: String,
}

/// Who logs in with `c`: the user name, or the application credential's id (neither is secret).
pub fn user_of(c: &Credentials) -> String {
    match c {
        Credentials::Password { username, .. } => username.clone(),
        Credentials::ApplicationCredential { id, .. } => format!("application credential {id}"),
    }
}

/// Cloud `name` of the clouds.yaml `l` finds.
pub fn resolve(l: &Lookup<'_>, name: &str) -> Result<Cloud, Error> {
    let Some((path, file)) = crate::profiles::load_clouds(l)? else {
        return Err(Error::NoCloud {
            name: name.to_string(),
            looked: "clouds.yaml in the current directory, ~/.config/openstack and /etc/openstack"
                .into(),
        });
    };
    let Some(cloud) = file.get("clouds").and_then(|c| c.get(name)) else {
        return Err(Error::NoCloud {
            name: name.to_string(),
            looked: path.display().to_string(),
        });
    };
    read(&path, name, cloud)
}

/// Reads the keys of one cloud, naming the file and the key (never the value) when one is wrong.
struct Reader<'a> {
    origin: String,
    name: &'a str,
}

impl Reader<'_> {
    fn text(&self, v: &Value, key: &str, shown: &str) -> Result<Option<String>, Error> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.error(format!(
                "clouds.{}.{shown} must be a string (its value is not shown)",
                self.name
            ))),
        }
    }

    fn error(&self, detail: String) -> Error {
        Error::Parse {
            path: self.origin.clone(),
            what: "clouds.yaml",
            detail,
        }
    }

    fn missing(&self, what: &str) -> Error {
        self.error(format!("clouds.{} has no {what}", self.name))
    }

    /// `auth.KEY`.
    fn auth(&self, auth: &Value, key: &str) -> Result<Option<String>, Error> {
        self.text(auth, key, &format!("auth.{key}"))
    }

    fn domain(&self, auth: &Value, name_key: &str, id_key: &str) -> Result<Domain, Error> {
        let a = |k: &str| self.auth(auth, k);
        Ok(
            match (a(id_key)?, a(name_key)?, a("domain_id")?, a("domain_name")?) {
                (Some(id), ..) => Domain::Id(id),
                (None, Some(n), ..) => Domain::Name(n),
                (None, None, Some(id), _) => Domain::Id(id),
                (None, None, None, Some(n)) => Domain::Name(n),
                _ => Domain::Id("default".into()),
            },
        )
    }

    fn credentials(&self, cloud: &Value, auth: &Value) -> Result<Credentials, Error> {
        let a = |k: &str| self.auth(auth, k);
        let need = |k: &str| a(k)?.ok_or_else(|| self.missing(&format!("auth.{k}")));
        let auth_type = self
            .text(cloud, "auth_type", "auth_type")?
            .unwrap_or_else(|| "password".into());
        match auth_type.as_str() {
            "v3applicationcredential" | "application_credential" => {
                Ok(Credentials::ApplicationCredential {
                    id: need("application_credential_id")?,
                    secret: need("application_credential_secret")?,
                })
            }
            "password" | "v3password" => {
                let project = match (a("project_id")?, a("project_name")?) {
                    (Some(id), _) => Project::Id(id),
                    (None, Some(name)) => Project::Name {
                        name,
                        domain: self.domain(auth, "project_domain_name", "project_domain_id")?,
                    },
                    (None, None) => {
                        return Err(self.missing("auth.project_name or auth.project_id"));
                    }
                };
                Ok(Credentials::Password {
                    username: need("username")?,
                    user_domain: self.domain(auth, "user_domain_name", "user_domain_id")?,
                    password: need("password")?,
                    project,
                })
            }
            other => Err(self.error(format!(
                "clouds.{}.auth_type {other} is not supported: use password or \
                 v3applicationcredential",
                self.name
            ))),
        }
    }
}

fn read(path: &Path, name: &str, cloud: &Value) -> Result<Cloud, Error> {
    let r = Reader {
        origin: path.display().to_string(),
        name,
    };
    let auth = cloud.get("auth").cloned().unwrap_or(Value::Null);
    let auth_url = r
        .auth(&auth, "auth_url")?
        .ok_or_else(|| r.missing("auth.auth_url"))?;
    let credentials = r.credentials(cloud, &auth)?;
    match &credentials {
        Credentials::Password { password, .. } => crate::secrets::register(password),
        Credentials::ApplicationCredential { secret, .. } => crate::secrets::register(secret),
    }
    let region = match r.text(cloud, "region_name", "region_name")? {
        Some(region) => Some(region),
        None => cloud
            .get("regions")
            .and_then(Value::as_sequence)
            .and_then(|list| list.first())
            .and_then(|v| v.as_str().or_else(|| v.get("name").and_then(Value::as_str)))
            .map(str::to_string),
    };
    let interface = r
        .text(cloud, "interface", "interface")?
        .unwrap_or_else(|| "public".into());
    Ok(Cloud {
        name: name.to_string(),
        auth_url,
        credentials,
        region,
        interface,
        origin: r.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(yaml: &str, name: &str) -> Result<Cloud, Error> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clouds.yaml"), yaml).unwrap();
        let none = |_: &str| None;
        resolve(
            &Lookup {
                profile: None,
                os_cloud: None,
                env: &none,
                home: Some(dir.path().to_path_buf()),
                cwd: dir.path().to_path_buf(),
            },
            name,
        )
    }

    #[test]
    fn a_flex_cloud_reads_as_openstacksdk_reads_it() {
        // As rackerlabs/genestack docs/openstack-clouds.md writes a Flex cloud.
        let c = cloud(
            "clouds:\n  rxt-sjc-flex:\n    auth:\n      auth_url: https://keystone.api.sjc3.rackspacecloud.com/v3\n      \
             project_name: 123456_Flex\n      project_domain_name: rackspace_cloud_domain\n      \
             username: rackuser\n      password: s3cret-or-api-key\n      user_domain_name: \
             rackspace_cloud_domain\n    region_name: SJC3\n    interface: public\n    \
             identity_api_version: \"3\"\n",
            "rxt-sjc-flex",
        )
        .unwrap();
        assert_eq!(
            c.auth_url,
            "https://keystone.api.sjc3.rackspacecloud.com/v3"
        );
        assert_eq!(c.region.as_deref(), Some("SJC3"));
        match c.credentials {
            Credentials::Password {
                username,
                user_domain,
                project,
                ..
            } => {
                assert_eq!(username, "rackuser");
                assert_eq!(user_domain, Domain::Name("rackspace_cloud_domain".into()));
                assert_eq!(
                    project,
                    Project::Name {
                        name: "123456_Flex".into(),
                        domain: Domain::Name("rackspace_cloud_domain".into())
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn application_credentials_domains_by_default_and_errors_that_hide_values() {
        let c = cloud(
            "clouds:\n  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: \
             http://127.0.0.1:5000/v3\n      application_credential_id: abc\n      \
             application_credential_secret: xyz-secret\n",
            "app",
        )
        .unwrap();
        assert!(
            matches!(c.credentials, Credentials::ApplicationCredential { ref id, .. } if id == "abc")
        );
        assert_eq!(c.interface, "public");
        // No domain anywhere: Keystone's default domain, by id.
        let c = cloud(
            "clouds:\n  p:\n    auth:\n      auth_url: http://k/v3\n      username: u\n      \
             password: p\n      project_name: alpha\n",
            "p",
        )
        .unwrap();
        assert!(matches!(
            c.credentials,
            Credentials::Password { user_domain: Domain::Id(ref d), .. } if d == "default"
        ));
        let e = cloud(
            "clouds:\n  p:\n    auth:\n      auth_url: http://k/v3\n      username: u\n      \
             password: [hunter2]\n      project_id: x\n",
            "p",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth.password") && !e.contains("hunter2"), "{e}");
        let e = cloud("clouds:\n  p:\n    auth:\n      username: u\n", "p").unwrap_err();
        assert!(e.to_string().contains("auth.auth_url"), "{e}");
        assert!(matches!(
            cloud("clouds: {}\n", "nope"),
            Err(Error::NoCloud { .. })
        ));
    }
}
