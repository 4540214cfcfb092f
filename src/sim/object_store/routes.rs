//! Request routing: account, container and object requests, and bulk delete.

use super::listing::listing;
use super::*;

impl Store {
    /// Serves one Cloud Files request.
    pub async fn handle(&self, req: Request<'_>, body: Body) -> Response {
        match (req.container, req.object) {
            (None, _) => self.account(&req, body).await,
            (Some(c), None) => self.container(&req, c),
            (Some(c), Some(o)) => self.object(&req, c, o, body).await,
        }
    }

    pub(super) async fn account(&self, req: &Request<'_>, body: Body) -> Response {
        match *req.method {
            Method::GET | Method::HEAD => {
                self.stats.request(req.method.as_str(), "account");
                let list: Vec<serde_json::Value> = {
                    let accounts = self.accounts();
                    let containers = accounts.get(req.region).map(|a| &a.containers);
                    containers
                        .into_iter()
                        .flatten()
                        .map(|(name, objs)| {
                            serde_json::json!({"name": name, "count": objs.len(), "bytes": objs.values().map(|o| o.bytes).sum::<u64>()})
                        })
                        .collect()
                };
                let mut resp = axum::Json(list.clone()).into_response();
                resp.headers_mut()
                    .insert("x-account-container-count", list.len().into());
                resp
            }
            Method::DELETE if req.query.contains_key("bulk-delete") => {
                self.stats.request("DELETE", "bulk-delete");
                self.bulk_delete(req.region, body).await
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    pub(super) fn container(&self, req: &Request<'_>, name: &str) -> Response {
        self.stats.request(req.method.as_str(), "container");
        let mut accounts = self.accounts();
        let account = accounts.entry(req.region.to_string()).or_default();
        match *req.method {
            Method::PUT => {
                if name.is_empty() || name.len() > 256 || name.contains('/') {
                    return swift_error(StatusCode::BAD_REQUEST, "Container name is invalid.");
                }
                if account.containers.contains_key(name) {
                    return StatusCode::ACCEPTED.into_response();
                }
                account.containers.insert(name.to_string(), BTreeMap::new());
                self.stats
                    .created("container", format!("{}/{name}", req.region));
                StatusCode::CREATED.into_response()
            }
            // Metadata updates are accepted and ignored: nothing imgferry or the tests need reads them.
            Method::POST => match account.containers.get(name) {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => not_found(),
            },
            Method::DELETE => match account.containers.get(name) {
                None => not_found(),
                Some(objs) if !objs.is_empty() => swift_error(
                    StatusCode::CONFLICT,
                    "There was a conflict when trying to complete your request.",
                ),
                Some(_) => {
                    account.containers.remove(name);
                    StatusCode::NO_CONTENT.into_response()
                }
            },
            Method::HEAD | Method::GET => {
                let Some(objs) = account.containers.get(name) else {
                    return not_found();
                };
                let count = objs.len();
                // SLO manifests count only their own (manifest) bytes, like Swift.
                let used: u64 = objs
                    .values()
                    .filter(|o| !matches!(o.kind, Kind::Slo(_)))
                    .map(|o| o.bytes)
                    .sum();
                let mut resp = if *req.method == Method::HEAD {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    listing(objs, req.query)
                };
                let h = resp.headers_mut();
                h.insert("x-container-object-count", count.into());
                h.insert("x-container-bytes-used", used.into());
                resp
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    pub(super) async fn object(
        &self,
        req: &Request<'_>,
        container: &str,
        name: &str,
        body: Body,
    ) -> Response {
        let manifest_op = req.query.get("multipart-manifest").map(String::as_str);
        match (req.method.clone(), manifest_op) {
            (Method::PUT, Some("put")) => {
                self.stats.request("PUT", "slo-manifest");
                self.put_slo(req, container, name, body).await
            }
            (Method::PUT, _) => {
                self.stats.request("PUT", "object");
                self.put_object(req, container, name, body).await
            }
            (Method::GET | Method::HEAD, op) => {
                self.stats.request(req.method.as_str(), "object");
                self.get_object(req, container, name, op == Some("get"))
            }
            (Method::POST, _) => {
                self.stats.request("POST", "object");
                match self.lookup(req.region, container, name) {
                    Some(_) => StatusCode::ACCEPTED.into_response(),
                    None => not_found(),
                }
            }
            (Method::DELETE, op) => {
                self.stats.request("DELETE", "object");
                self.delete_object(req.region, container, name, op == Some("delete"))
                    .await
            }
            _ => swift_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            ),
        }
    }

    pub(super) async fn bulk_delete(&self, region: &str, body: Body) -> Response {
        let Ok(raw) = axum::body::to_bytes(body, 10_000 * 1100).await else {
            return swift_error(StatusCode::PAYLOAD_TOO_LARGE, "Your request is too large.");
        };
        let (mut deleted, mut not_found, mut errors) = (0u64, 0u64, Vec::<(String, String)>::new());
        for line in String::from_utf8_lossy(&raw)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(10_000)
        {
            let path = percent_decode(line.trim());
            let path = path.trim_start_matches('/');
            match path.split_once('/') {
                Some((c, o)) => {
                    if self.remove(region, c, o).await.is_some() {
                        deleted += 1;
                    } else {
                        not_found += 1;
                    }
                }
                None => {
                    let mut accounts = self.accounts();
                    let account = accounts.entry(region.to_string()).or_default();
                    match account.containers.get(path) {
                        None => not_found += 1,
                        Some(objs) if !objs.is_empty() => {
                            errors.push((format!("/{path}"), "409 Conflict".into()))
                        }
                        Some(_) => {
                            account.containers.remove(path);
                            deleted += 1;
                        }
                    }
                }
            }
        }
        let status = if errors.is_empty() {
            "200 OK"
        } else {
            "400 Bad Request"
        };
        axum::Json(serde_json::json!({
            "Number Deleted": deleted, "Number Not Found": not_found,
            "Response Status": status, "Response Body": "", "Errors": errors,
        }))
        .into_response()
    }
}
