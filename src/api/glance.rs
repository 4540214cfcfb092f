//! Glance v2 (OpenStack Image) as a source and a destination: create an image record, stream its
//! bytes with `PUT /v2/images/{id}/file`, read them back by ranges (`GET …/file` with `Range`,
//! answered 206), find an image by a property or its name, delete it
//! (openstack/glance `api-ref/source/v2/images-images-v2.inc`, `images-data.inc`;
//! `glance/api/v2/images.py`, `image_data.py`).
//!
//! What Glance does with the bytes, and what it refuses, is in docs/openstack.md: since Glance 29
//! it inspects the stream and refuses (415) data that is not what `disk_format` declares, so the
//! label must always be what the bytes are; over `image_size_cap` it answers 413. A cut upload
//! cannot be resumed: the image goes back to `queued` and the whole file is sent again.
//!
//! Where a cloud refuses direct uploads, the interoperable import's `glance-direct` method does
//! the same in three calls: `PUT /v2/images/{id}/stage` (the image becomes `uploading`),
//! `POST /v2/images/{id}/import` (202; `importing`, then `active`), and `GET
//! /v2/images/{id}/tasks` for why an import failed (openstack/glance
//! `api-ref/source/v2/images-import.inc`, `glance/api/v2/images.py` `import_image`).

use serde::Deserialize;

use super::{Error, JsonService, segment};
use crate::http::Idempotency;

/// An image as Glance describes it (only the fields imgferry reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// md5 of the stored bytes (legacy).
    #[serde(default)]
    pub checksum: Option<String>,
    /// Glance's multihash: `os_hash_algo` (sha512 by default) and its value.
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// Every other field, the image's properties among them.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Images {
    images: Vec<Image>,
}

/// An import task of an image, as `GET /v2/images/{id}/tasks` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<Task>,
}

#[derive(Deserialize)]
struct ImportInfo {
    #[serde(rename = "import-methods")]
    methods: ImportMethods,
}

#[derive(Deserialize)]
struct ImportMethods {
    #[serde(default)]
    value: Vec<String>,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// 413: over the cloud's `image_size_cap`, which the API does not disclose.
    #[error(
        "{url}: the image service refused the image as too large (HTTP 413: {message}); its size \
         cap (Glance's image_size_cap) is not published by the API: ask the cloud's operator"
    )]
    TooLarge { url: String, message: String },
    /// 403 or 405: this cloud does not take data this way (a policy refusing `upload_image`, say).
    #[error("{url}: the image service does not take the data this way (HTTP {status}: {message})")]
    NotAllowed {
        url: String,
        status: u16,
        message: String,
    },
    /// 415: the bytes are not the declared disk format (Glance's format inspection).
    #[error("{url}: the image service found the data is not {declared} (HTTP 415: {message})")]
    WrongFormat {
        url: String,
        declared: String,
        message: String,
    },
    #[error(transparent)]
    Api(#[from] Error),
}

/// The image service of one region of an OpenStack cloud.
#[derive(Debug, Clone)]
pub struct Glance {
    pub service: JsonService,
}

impl Glance {
    pub fn new(service: JsonService) -> Self {
        Self { service }
    }

    /// Creates an image record (status `queued`) with `disk_format` and `container_format`
    /// `bare`, and `properties` (strings). Not retried where Glance may have acted: a caller
    /// settles a lost answer by [`Glance::find`] on a property it set.
    pub async fn create(
        &self,
        name: &str,
        disk_format: &str,
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Image, Error> {
        let mut body = serde_json::json!({
            "name": name,
            "disk_format": disk_format,
            "container_format": "bare",
        });
        if let Some(o) = body.as_object_mut() {
            o.extend(properties.clone());
        }
        let url = self.service.url("v2/images");
        let resp = self.service.create("image", &url, &body).await?;
        super::parse_json("image", resp).await
    }

    /// Streams `body` as the image's data (`Content-Length` given when known). Sent once: a
    /// streamed body cannot be sent again, and Glance cannot resume an upload.
    pub async fn upload(
        &self,
        id: &str,
        body: reqwest::Body,
        declared: &str,
    ) -> Result<(), UploadError> {
        self.put_data(id, "file", body, declared).await
    }

    /// Streams `body` into the image's staging area (`glance-direct`): the image becomes
    /// `uploading`, and [`Glance::import`] then makes it `active`.
    pub async fn stage(
        &self,
        id: &str,
        body: reqwest::Body,
        declared: &str,
    ) -> Result<(), UploadError> {
        self.put_data(id, "stage", body, declared).await
    }

    /// `PUT /v2/images/{id}/{to}` with a streamed body.
    async fn put_data(
        &self,
        id: &str,
        to: &str,
        body: reqwest::Body,
        declared: &str,
    ) -> Result<(), UploadError> {
        let url = self.service.url(&format!("v2/images/{}/{to}", segment(id)));
        let resp = self
            .service
            .http
            .put(&url)
            .header("X-Auth-Token", self.service.auth.token())
            .header("Content-Type", "application/octet-stream")
            // A refused upload (415, 413) is answered before its body is read, and the server
            // then closes the connection: never return it to the pool for the next request.
            .header("Connection", "close")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Unexpected {
                url: crate::http::redact(&url),
                detail: format!(
                    "the upload did not complete: {}",
                    crate::http::root_cause(&e)
                ),
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(());
        }
        let shown = crate::http::redact(&url);
        let message = super::short_message(&resp.text().await.unwrap_or_default());
        Err(match status {
            413 => UploadError::TooLarge {
                url: shown,
                message,
            },
            403 | 405 => UploadError::NotAllowed {
                url: shown,
                status,
                message,
            },
            415 => UploadError::WrongFormat {
                url: shown,
                declared: declared.to_string(),
                message,
            },
            _ => UploadError::Api(Error::from_parts("image upload", shown, status, &message)),
        })
    }

    /// The import methods the cloud offers (`GET /v2/info/import`); none when it has no
    /// interoperable import (404).
    pub async fn import_methods(&self) -> Result<Vec<String>, Error> {
        let url = self.service.url("v2/info/import");
        let info: Option<ImportInfo> = self.service.get("import methods", &url).await?;
        Ok(info.map(|i| i.methods.value).unwrap_or_default())
    }

    /// Starts the import of what is staged (`glance-direct`). Not retried where Glance may have
    /// acted: the caller reads the image's status to learn whether the import began.
    pub async fn import(&self, id: &str, method: &str) -> Result<(), Error> {
        let url = self
            .service
            .url(&format!("v2/images/{}/import", segment(id)));
        let body = serde_json::json!({"method": {"name": method}});
        self.service.create("image import", &url, &body).await?;
        Ok(())
    }

    /// The image's import tasks, newest last as Glance lists them; empty when the cloud does not
    /// show them (404, or a policy's 403).
    pub async fn tasks(&self, id: &str) -> Result<Vec<Task>, Error> {
        let url = self
            .service
            .url(&format!("v2/images/{}/tasks", segment(id)));
        match self.service.get::<Tasks>("image tasks", &url).await {
            Ok(t) => Ok(t.map(|t| t.tasks).unwrap_or_default()),
            Err(Error::Service { status: 403, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The image, or `None` if there is none with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Image>, Error> {
        let url = self.service.url(&format!("v2/images/{}", segment(id)));
        self.service.get("image", &url).await
    }

    /// `len` bytes at `offset` of the image's data, whole. Only a 206 is accepted (a 200 would be
    /// the whole image); an answer cut short is fetched again within the retry budget.
    pub async fn fetch_range(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let url = self.service.url(&format!("v2/images/{}/file", segment(id)));
        let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
        let cap = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1);
        let mut attempts = crate::http::Attempts::new(&self.service.retry);
        loop {
            let sent = std::time::Instant::now();
            let resp = super::auth::send(
                &self.service.auth,
                &mut attempts,
                Idempotency::Idempotent,
                |t| {
                    self.service
                        .http
                        .get(&url)
                        .header("X-Auth-Token", t)
                        .header("Range", &range)
                },
                &*self.service.on_retry,
            )
            .await?;
            match resp.status().as_u16() {
                206 => {}
                200 => {
                    return Err(Error::Unexpected {
                        url: crate::http::redact(&url),
                        detail: format!("asked for {range} and got the whole image (200, not 206)"),
                    });
                }
                _ => return Err(Error::from_response("image data", resp).await),
            }
            let read =
                super::read_or_retry(&mut attempts, resp, cap, sent, &*self.service.on_retry)
                    .await?;
            if let Some(fetched) = read {
                if fetched.body.len() as u64 != len {
                    return Err(Error::Unexpected {
                        url: crate::http::redact(&url),
                        detail: format!(
                            "asked for {range} ({len} bytes) and got {} bytes",
                            fetched.body.len()
                        ),
                    });
                }
                return Ok(fetched.body);
            }
        }
    }

    /// The image with id `id_or_name`, or else the images named so (the caller decides what
    /// several of one name mean).
    pub async fn resolve(&self, id_or_name: &str) -> Result<Vec<Image>, Error> {
        if let Some(image) = self.get(id_or_name).await? {
            return Ok(vec![image]);
        }
        self.find("name", id_or_name).await
    }

    /// The images whose property `key` is `value` (Glance filters on any property).
    pub async fn find(&self, key: &str, value: &str) -> Result<Vec<Image>, Error> {
        let mut url =
            reqwest::Url::parse(&self.service.url("v2/images")).map_err(|e| Error::Unexpected {
                url: self.service.base.clone(),
                detail: e.to_string(),
            })?;
        url.query_pairs_mut().append_pair(key, value);
        let found: Option<Images> = self.service.get("image list", url.as_str()).await?;
        Ok(found.map(|i| i.images).unwrap_or_default())
    }

    /// Deletes the image; one that is already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let url = self.service.url(&format!("v2/images/{}", segment(id)));
        let resp = self
            .service
            .request(reqwest::Method::DELETE, &url, None, Idempotency::Idempotent)
            .await?;
        match resp.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(Error::from_response("image delete", resp).await),
        }
    }
}
