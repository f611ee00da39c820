//! Error lines that quote untrusted text (a damaged file's field names and values, as a JSON
//! parser reports them) stay one line: control characters are escaped, so that a file can
//! neither break a log line in two nor fake the next one.

/// `message` with every control character escaped as Rust writes it (`\n`, `\u{1b}`).
pub fn escape_controls(message: &str) -> String {
    let mut escaped = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        assert_eq!(
            escape_controls("unknown field `a\nb\u{1b}[31m` é"),
            "unknown field `a\\nb\\u{1b}[31m` é"
        );
        assert!(!escape_controls("x\r\ny\u{85}").contains(['\n', '\r', '\u{85}']));
    }
}
