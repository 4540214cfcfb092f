//! Reading a documented import code out of a failed import task's `message`.
//!
//! Rackspace documents the codes (111, 396, 413, 523, 609, 614, 721) and writes them at the start
//! of the message ("`609`: The image cannot be imported. …", rackerlabs/docs-cloud-images
//! `post-task-to-import-image-tasks.rst`), not the wording around them. A number counts only as a
//! whole token where the service puts a code: at the start of the message, or right after the word
//! "code". So a UUID or a hex string that happens to contain 413 or 721 (`…-0721-…`, `a413b`) is
//! never read as a rejection, which would be final.

use crate::vhd::ImportCode;

/// The documented import code the message states, if any.
pub fn find(message: &str) -> Option<u16> {
    let text = message.trim_start_matches(|c: char| c.is_whitespace() || "`'\"([".contains(c));
    if let Some(code) = leading_code(text) {
        return Some(code);
    }
    // "Error code 721", "code: 413", "code=609" (any case).
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("code") {
        let at = from + i;
        let word_start = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        let after = &text[at + 4..];
        let after = after.trim_start_matches(|c: char| c.is_whitespace() || ":=`'\"#".contains(c));
        if word_start && let Some(code) = leading_code(after) {
            return Some(code);
        }
        from = at + 4;
    }
    None
}

/// A documented code that is the whole first token of `text`.
fn leading_code(text: &str) -> Option<u16> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    // A whole token: not followed by a letter, digit, `-` or `_` (a UUID group, a hex run).
    if let Some(next) = text[digits..].chars().next()
        && (next.is_ascii_alphanumeric() || next == '-' || next == '_')
    {
        return None;
    }
    let n: u16 = text[..digits].parse().ok()?;
    ImportCode::from_number(n).map(|_| n)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn codes_are_read_where_the_service_puts_them() {
        assert_eq!(find("413: The image cannot be imported."), Some(413));
        assert_eq!(find("`609`: The image cannot be imported."), Some(609));
        assert_eq!(find("Error code 721 - has a parent"), Some(721));
        assert_eq!(find("import failed (code: 396)"), Some(396));
        assert_eq!(find("failed after 4130 s"), None);
        assert_eq!(find("Image not found for import"), None);
        assert_eq!(find("4130: no such code"), None);
    }

    #[test]
    fn ids_that_contain_a_code_are_not_rejections() {
        for message in [
            "Image c0a80721-9a0e-4e1b-8f2e-0413deadbeef could not be read; try again",
            "swift object a413b/0721.vhd-00001 was not found",
            "task 12 failed: 609-byte header unreadable",
            "Unsupported element in image_properties: 413",
            "checksum 721b0e9f differs",
            "decode 413 failed",
        ] {
            assert_eq!(find(message), None, "{message}");
        }
    }
}
