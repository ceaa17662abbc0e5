//! `Content-Disposition: attachment` with a file name any browser saves correctly
//! (RFC 6266 §4.3): a quoted ASCII fallback, and `filename*` (RFC 8187) with the exact UTF-8
//! name when the name is not plain ASCII.

/// The header value that makes a client save the response as `name`.
pub fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    if fallback == name {
        return format!("attachment; filename=\"{name}\"");
    }
    let mut encoded = String::with_capacity(name.len() * 3);
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_quoted() {
        assert_eq!(
            attachment("report 2026.pdf"),
            "attachment; filename=\"report 2026.pdf\""
        );
    }

    #[test]
    fn other_names_get_a_fallback_and_the_exact_utf8() {
        assert_eq!(
            attachment("€ rates.txt"),
            "attachment; filename=\"_ rates.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt"
        );
        assert_eq!(
            attachment("a\"b\\c\r\n.txt"),
            "attachment; filename=\"a_b_c__.txt\"; filename*=UTF-8''a%22b%5Cc%0D%0A.txt"
        );
    }
}
