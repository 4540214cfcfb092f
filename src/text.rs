//! Text from services made safe to print on a terminal. Names, property keys and values, task
//! messages and error bodies come from the cloud; a control character in one (a NUL, a newline,
//! an ESC sequence) could break a report line, forge one, or drive the terminal. In human output
//! each is shown escaped (`\n`, `\u{1b}`); JSON output is escaped by serde already.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1) written as an escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// [`escape_controls`], but line breaks are kept: for imgferry's own multi-line messages, whose
/// service parts are escaped whole where they enter.
pub fn escape_controls_keep_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && !(keep_lines && c == '\n');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            _ if !bad(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(escape_controls("web-1"), "web-1");
        assert_eq!(
            escape_controls("a\nb\0c\u{1b}[31md\u{9b}e\tf"),
            "a\\nb\\u{0}c\\u{1b}[31md\\u{9b}e\\tf"
        );
        assert_eq!(
            escape_controls_keep_lines("one\ntwo\u{1b}"),
            "one\ntwo\\u{1b}"
        );
    }
}
