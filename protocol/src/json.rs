//! JSON string escaping (RFC 8259 §7), for the answers and lines the server writes as JSON.

/// Escapes `text` as the inside of a JSON string, handing the pieces to `push` in order: runs
/// of `text` that need no escape, and escapes (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, and
/// `\u00XX` for the other control characters). Everything else stays literal UTF-8.
pub fn escape_str(text: &str, mut push: impl FnMut(&str)) {
    const HEX: &str = "0123456789abcdef";
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "\\u00",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        push(&text[start..i]);
        push(escaped);
        if escaped == "\\u00" {
            let (high, low) = (usize::from(b >> 4), usize::from(b & 0xf));
            push(&HEX[high..=high]);
            push(&HEX[low..=low]);
        }
        start = i + 1;
    }
    push(&text[start..]);
}

/// Appends `text` escaped as the inside of a JSON string to `out`.
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    escape_str(text, |piece| out.extend_from_slice(piece.as_bytes()));
}

/// Appends `text` as a JSON string literal, quotes included, to `out`.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    escape_str(text, |piece| out.push_str(piece));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, text);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(escaped("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(escaped("\n\r\t\u{8}\u{c}"), "\\n\\r\\t\\b\\f");
        assert_eq!(escaped("\u{0}\u{1f}x"), "\\u0000\\u001fx");
        assert_eq!(escaped("é ✓ \u{7f}"), "é ✓ \u{7f}");
    }

    #[test]
    fn push_string_quotes() {
        let mut s = String::new();
        push_string(&mut s, "a\"\n");
        assert_eq!(s, "\"a\\\"\\n\"");
    }

    #[test]
    fn every_escaped_string_is_json_a_parser_reads_back() {
        for text in ["", "x", "\u{0}\u{1}\u{2}\"\\/", "mixed é \u{1b}[0m"] {
            let mut literal = String::new();
            push_string(&mut literal, text);
            let decoded: String = serde_json::from_str(&literal).unwrap_or_default();
            assert_eq!(decoded, text);
        }
    }
}
