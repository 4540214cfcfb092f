//! Clients of the Rackspace APIs, over the shared HTTP layer ([`crate::http`]).
//!
//! - [`identity`]: Identity v2.0 authentication and the service catalog.
//! - [`object_store`]: Cloud Files (Swift v1), what the transfer engine needs.
//!
//! Identity, Cloud Servers and Cloud Images clients arrive with the migration (docs/architecture.md).

pub mod identity;
pub mod object_store;

/// What an API call can fail with, by meaning rather than status code (STYLE §3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} was not found ({url})")]
    NotFound { what: String, url: String },
    #[error("the token was refused at {url}: authentication expired or is not valid")]
    Unauthorized { url: String },
    #[error("{url} answered HTTP {status}: {message}")]
    Service {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered something unexpected: {detail}")]
    Unexpected { url: String, detail: String },
    #[error(transparent)]
    Http(Box<crate::http::Error>),
}

impl From<crate::http::Error> for Error {
    fn from(e: crate::http::Error) -> Self {
        Self::Http(Box::new(e))
    }
}

impl Error {
    /// Builds the error for a final failure status, keeping the service's message (bodies may be
    /// JSON, HTML or plain text; none of that is trusted to parse).
    pub async fn from_response(what: &str, resp: reqwest::Response) -> Self {
        let url = crate::http::redact(resp.url().as_str());
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match status {
            401 => Self::Unauthorized { url },
            404 => Self::NotFound {
                what: what.to_string(),
                url,
            },
            _ => Self::Service {
                url,
                status,
                message: short_message(&body),
            },
        }
    }
}

/// A short, single-line version of an error body: the `message` of a JSON fault if there is one,
/// otherwise the text with markup removed.
pub fn short_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(m) = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|f| f["message"].as_str())
    {
        return m.to_string();
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::short_message;

    #[test]
    fn messages_from_json_html_and_text() {
        assert_eq!(
            short_message(r#"{"badRequest": {"code": 400, "message": "bad"}}"#),
            "bad"
        );
        assert_eq!(
            short_message("<html><h1>Not Found</h1><p>Gone.</p></html>"),
            "Not Found Gone."
        );
        assert_eq!(short_message("plain\ntext"), "plain text");
        assert_eq!(short_message(""), "");
    }
}
