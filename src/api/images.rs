//! Cloud Images (Glance v2 as Rackspace runs it): images get, find by name and delete; tasks
//! create, get and list (rackerlabs/docs-cloud-images `api-docs/api-reference/methods/`).
//!
//! Quirks handled here: the images URL carries no tenant; list pages are followed through `next`
//! (which repeats the `/v2` prefix the base URL already has); a task's `message` may be `"None"`,
//! `""` or null, all meaning "no message"; list entries of tasks omit `input`, so matching a task
//! on its input takes a GET per candidate.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Error, JsonService, parse_json};
use crate::http::Idempotency;

/// The fields of an image imgferry uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub min_disk: Option<u64>,
    /// The tenant that owns it: only the owner may export an image.
    #[serde(default)]
    pub owner: Option<String>,
    /// `com.rackspace__1__options`: "0" when the image may be exported; licensed images
    /// (Windows, Red Hat) carry another value (Cloud Images FAQ).
    #[serde(rename = "com.rackspace__1__options", default)]
    pub options: Option<String>,
    /// `os_type` ("linux", "windows"): Windows images may not be exported (cloudcafe's
    /// `EXPORT_WINDOWS_MSG`).
    #[serde(default)]
    pub os_type: Option<String>,
    /// `org.openstack__1__os_distro` (`com.microsoft.server` for Windows).
    #[serde(rename = "org.openstack__1__os_distro", default)]
    pub os_distro: Option<String>,
    /// Rackspace's `flavor_classes` ("*,!io1,!onmetal"): which flavor classes may boot it.
    #[serde(default)]
    pub flavor_classes: Option<String>,
}

/// Whether an image is a Windows image, which Rackspace never exports ("The export of Windows
/// based images is not allowed", openstack-archive/cloudcafe `cloudcafe/glance/common/
/// constants.py`): its `os_type` is `windows`, or its `org.openstack__1__os_distro` is
/// `com.microsoft.*` (Rackspace's own mock serves its Windows images with the first and no
/// `com.rackspace__1__options`).
pub fn is_windows(os_type: Option<&str>, os_distro: Option<&str>) -> bool {
    os_type == Some("windows") || os_distro.is_some_and(|d| d.starts_with("com.microsoft"))
}

/// A task: an export or an import.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Task {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default, deserialize_with = "message")]
    pub message: Option<String>,
}

/// What a task's status means for a waiting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskStatus {
    Working,
    Success,
    Failure,
}

impl Task {
    /// `pending` and `processing`, and any status this version does not know, mean "still
    /// working": the API reference warns that status values can change.
    pub fn state(&self) -> TaskStatus {
        match self.status.as_str() {
            "success" => TaskStatus::Success,
            "failure" => TaskStatus::Failure,
            _ => TaskStatus::Working,
        }
    }

    /// A string field of `result` (`export_location`, `image_id`).
    pub fn result_str(&self, key: &str) -> Option<String> {
        self.result
            .as_ref()
            .and_then(|r| r[key].as_str())
            .map(str::to_string)
    }
}

/// `"None"`, `""` and null all mean "no message".
fn message<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let m: Option<String> = Option::deserialize(d)?;
    Ok(m.filter(|m| !m.trim().is_empty() && m.trim() != "None"))
}

/// The image endpoint of one region.
#[derive(Debug, Clone)]
pub struct Images {
    api: JsonService,
}

/// Follows a Glance list's `next` links, at most this many pages (a runaway `next` loop from a
/// broken service must end).
const MAX_PAGES: usize = 1000;

impl Images {
    pub fn new(api: JsonService) -> Self {
        Self { api }
    }

    pub async fn get_image(&self, id: &str) -> Result<Option<Image>, Error> {
        let url = self.api.url(&format!("images/{}", super::segment(id)));
        self.api.get("image", &url).await
    }

    /// The image as Glance returns it, every property included.
    pub async fn get_image_properties(
        &self,
        id: &str,
    ) -> Result<Option<serde_json::Map<String, Value>>, Error> {
        let url = self.api.url(&format!("images/{}", super::segment(id)));
        self.api.get("image", &url).await
    }

    /// Applies a JSON patch (`application/openstack-images-v2.1-json-patch`) to image `id`. Not
    /// retried where the service may have acted: an `add` that went through answers 409 the second
    /// time, so callers compare with what the image has instead.
    pub async fn patch_image(&self, id: &str, ops: &Value) -> Result<(), Error> {
        let url = self.api.url(&format!("images/{}", super::segment(id)));
        let body = bytes::Bytes::from(serde_json::to_vec(ops).unwrap_or_default());
        let resp = self
            .api
            .send_body(
                Method::PATCH,
                &url,
                "application/openstack-images-v2.1-json-patch",
                body,
                Idempotency::Creating,
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("image", resp).await)
        }
    }

    /// Images named exactly `name`.
    pub async fn find_images(&self, name: &str) -> Result<Vec<Image>, Error> {
        let first = reqwest::Url::parse_with_params(&self.api.url("images"), [("name", name)])
            .map_err(|e| Error::Unexpected {
                url: self.api.url("images"),
                detail: e.to_string(),
            })?;
        let images: Vec<Image> = self.list_pages("images", first.to_string()).await?;
        Ok(images
            .into_iter()
            .filter(|i| i.name.as_deref() == Some(name))
            .collect())
    }

    /// DELETE /images/{id}; an image that is already gone counts as deleted.
    pub async fn delete_image(&self, id: &str) -> Result<(), Error> {
        let url = self.api.url(&format!("images/{}", super::segment(id)));
        let resp = self
            .api
            .request(Method::DELETE, &url, None, Idempotency::Idempotent)
            .await?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(Error::from_response("image", resp).await),
        }
    }

    /// POST /tasks. Not retried on timeout: the caller persisted an intent first and settles it by
    /// [`Images::find_task`].
    pub async fn create_task(&self, kind: &str, input: &Value) -> Result<Task, Error> {
        let url = self.api.url("tasks");
        let body = serde_json::json!({"type": kind, "input": input});
        let resp = self
            .api
            .create(&format!("{kind} task"), &url, &body)
            .await?;
        parse_json("task creation", resp).await
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<Task>, Error> {
        let url = self.api.url(&format!("tasks/{}", super::segment(id)));
        self.api.get("task", &url).await
    }

    /// The most recent task of `kind` whose input equals `input`, if any: how an intent whose POST
    /// may or may not have happened is settled.
    ///
    /// Upstream Glance accepts `type=import` as a list filter and refuses every other type with
    /// 400 ("Invalid type value"), so export tasks are found in the unfiltered list, by type on
    /// this side. List entries carry no `input` (upstream's partial schema): each candidate is read
    /// in full to compare it.
    pub async fn find_task(&self, kind: &str, input: &Value) -> Result<Option<Task>, Error> {
        let base = self.api.url("tasks");
        let first = if kind == "import" {
            reqwest::Url::parse_with_params(&base, [("type", kind)])
                .map_err(|e| Error::Unexpected {
                    url: base.clone(),
                    detail: e.to_string(),
                })?
                .to_string()
        } else {
            base
        };
        #[derive(Deserialize)]
        struct Listed {
            id: String,
            #[serde(rename = "type", default)]
            kind: String,
        }
        let listed: Vec<Listed> = self.list_pages("tasks", first).await?;
        for l in listed
            .iter()
            .filter(|l| l.kind == kind || l.kind.is_empty())
        {
            if let Some(task) = self.get_task(&l.id).await?
                && task.kind == kind
                && &task.input == input
            {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    /// Reads a paginated Glance collection `key` from `first`, following `next`.
    async fn list_pages<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        first: String,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut url = Some(first);
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::Unexpected {
                    url: crate::http::redact(&u),
                    detail: format!("more than {MAX_PAGES} pages of {key}"),
                });
            }
            let page: Value = self
                .api
                .get(key, &u)
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("the {key} list"),
                    url: crate::http::redact(&u),
                })?;
            let items = page[key].as_array().ok_or_else(|| Error::Unexpected {
                url: crate::http::redact(&u),
                detail: format!("the answer has no {key} list"),
            })?;
            for item in items {
                out.push(
                    serde_json::from_value(item.clone()).map_err(|e| Error::Unexpected {
                        url: crate::http::redact(&u),
                        detail: format!("an entry of the {key} list is not as expected ({e})"),
                    })?,
                );
            }
            url = page["next"].as_str().map(|n| self.next_url(n));
        }
        Ok(out)
    }

    /// Resolves a `next` link such as `/v2/images?marker=…` against the base URL, which already
    /// ends in `/v2` (pyrax strips the prefix the same way).
    fn next_url(&self, next: &str) -> String {
        if next.starts_with("http://") || next.starts_with("https://") {
            return next.to_string();
        }
        let path = next.strip_prefix("/v2").unwrap_or(next);
        self.api.url(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_messages_in_all_their_forms_are_none() {
        for m in [json!("None"), json!(""), json!(null), json!(" ")] {
            let t: Task = serde_json::from_value(json!({"id": "1", "message": m})).unwrap();
            assert_eq!(t.message, None);
        }
        let t: Task =
            serde_json::from_value(json!({"id": "1", "message": "396: not a VHD"})).unwrap();
        assert_eq!(t.message.as_deref(), Some("396: not a VHD"));
        let t: Task = serde_json::from_value(json!({"id": "1"})).unwrap();
        assert_eq!(t.message, None);
    }

    #[test]
    fn unknown_statuses_count_as_working() {
        let t = |s: &str| Task {
            id: "1".into(),
            kind: "import".into(),
            status: s.into(),
            input: Value::Null,
            result: None,
            message: None,
        };
        assert_eq!(t("pending").state(), TaskStatus::Working);
        assert_eq!(t("queued_for_review").state(), TaskStatus::Working);
        assert_eq!(t("success").state(), TaskStatus::Success);
        assert_eq!(t("failure").state(), TaskStatus::Failure);
    }

    #[test]
    fn next_links_resolve_against_a_base_that_ends_in_v2() {
        let images = Images::new(JsonService::new(
            reqwest::Client::new(),
            "https://iad.images.example/v2",
            crate::api::auth::Auth::fixed("t"),
            crate::http::RetryConfig::default(),
        ));
        assert_eq!(
            images.next_url("/v2/images?marker=abc"),
            "https://iad.images.example/v2/images?marker=abc"
        );
    }
}
