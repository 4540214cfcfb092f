//! The run's secrets, and the scrubber every output passes through. The API key or password is
//! registered when the credentials are read, and every token when it is issued; any text about to
//! be printed, logged or saved (error messages, events, log lines, a failure recorded in a state
//! file) has each of them replaced by `<redacted>`, as has the `user:password@` part of any URL.
//! This holds even when a service or a proxy echoes a secret back in an answer.

use std::sync::RwLock;

/// Secrets shorter than this are not registered: they could not be told apart from ordinary
/// words, and no real key, password or token is this short.
const MIN_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `secret` for the rest of the process.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret and every URL password replaced by `<redacted>`.
pub fn scrub(text: &str) -> String {
    let mut out = userinfo_scrubbed(text);
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

/// Replaces `user:password@` after `://` (up to the next `/`, space or quote) with `<redacted>@`.
fn userinfo_scrubbed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// A writer for log lines that scrubs each one before it reaches stderr.
pub struct ScrubbingStderr;

impl std::io::Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_url_passwords_are_scrubbed() {
        register("k3y-0123456789abcdef");
        register("tok");
        let text = r#"401: {"apiKey": "k3y-0123456789abcdef"} via https://bob:hunter2@proxy.example/v2 tok"#;
        let clean = scrub(text);
        assert!(!clean.contains("k3y-0123456789abcdef"), "{clean}");
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(
            clean.contains("https://<redacted>@proxy.example/v2"),
            "{clean}"
        );
        // Too short to be a secret, so ordinary words survive.
        assert!(clean.ends_with(" tok"), "{clean}");
        assert_eq!(scrub("http://host/path@x"), "http://host/path@x");
    }
}
