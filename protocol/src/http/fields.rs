//! The header fields that decide framing and connection reuse, read in one pass over the head.

use super::body::BodyKind;
use super::error::RequestError;
use super::request::Version;
use httparse::Header;

/// What the framing and connection fields of one head say, before they are judged.
#[derive(Debug, Default)]
pub(crate) struct Fields<'b> {
    /// The first `Host` value.
    pub(crate) host: Option<&'b [u8]>,
    /// Set when a second `Host` appears.
    pub(crate) duplicate_host: bool,
    /// Every `Content-Length` seen, reduced to one value or the first error.
    pub(crate) content_length: Option<Result<u64, RequestError>>,
    /// Every `Transfer-Encoding` member seen, in order.
    pub(crate) codings: Codings,
    /// `Connection` lists `close`.
    pub(crate) close: bool,
    /// `Connection` lists `keep-alive`.
    pub(crate) keep_alive: bool,
    /// `Expect` lists `100-continue`.
    pub(crate) expect_continue: bool,
    /// The first `Upgrade` value.
    pub(crate) upgrade: Option<&'b [u8]>,
}

/// The transfer codings of a request, summarised as much as RFC 9112 §6.1 needs.
#[derive(Debug, Default)]
pub(crate) struct Codings {
    /// A `Transfer-Encoding` field was present, even an empty one.
    seen: bool,
    /// The final coding is `chunked`.
    last_is_chunked: bool,
    /// How many times `chunked` appears.
    chunked: u32,
    /// How many codings other than `chunked` appear.
    others: u32,
}

impl<'b> Fields<'b> {
    /// Reads the fields that matter from `headers`; names are compared by length first
    /// so most fields cost one integer comparison.
    pub(crate) fn read(headers: &[Header<'b>]) -> Self {
        let mut fields = Fields::default();
        for header in headers {
            let name = header.name.as_bytes();
            let value = header.value;
            match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => {
                    if fields.host.is_some() {
                        fields.duplicate_host = true;
                    } else {
                        fields.host = Some(value);
                    }
                }
                6 if name.eq_ignore_ascii_case(b"expect") => {
                    // RFC 9110 §10.1.1: the expectation is compared case-insensitively.
                    fields.expect_continue |=
                        list_members(value).any(|m| m.eq_ignore_ascii_case(b"100-continue"));
                }
                7 if name.eq_ignore_ascii_case(b"upgrade") => {
                    fields.upgrade.get_or_insert(value);
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    for option in list_members(value) {
                        fields.close |= option.eq_ignore_ascii_case(b"close");
                        fields.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    fields.add_content_length(value);
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    fields.codings.add(value);
                }
                _ => {}
            }
        }
        fields
    }

    /// Folds one `Content-Length` value into what was seen before; the first error sticks.
    fn add_content_length(&mut self, value: &[u8]) {
        let parsed = parse_content_length(value);
        self.content_length = Some(match (self.content_length, parsed) {
            (None, parsed) => parsed,
            (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
            (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
            (Some(Ok(_)), Ok(_)) => Err(RequestError::ConflictingContentLength),
        });
    }

    /// Decides how the body is delimited (RFC 9112 §6.3), refusing every ambiguity a
    /// front-end proxy could read differently.
    pub(crate) fn body_kind(&self, version: Version) -> Result<BodyKind, RequestError> {
        if self.codings.seen {
            // RFC 9112 §6.1: "A server that receives a request message with a
            // transfer coding it does not understand SHOULD respond with 501" comes after
            // the framing checks, which protect against smuggling.
            if version == Version::Http10 {
                return Err(RequestError::TransferEncodingInHttp10);
            }
            if self.content_length.is_some() {
                return Err(RequestError::ContentLengthWithTransferEncoding);
            }
            return self.codings.judge();
        }
        match self.content_length {
            None => Ok(BodyKind::None),
            Some(Ok(n)) => Ok(BodyKind::Length(n)),
            Some(Err(e)) => Err(e),
        }
    }
}

impl Codings {
    /// Whether a `Transfer-Encoding` field was present.
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }

    /// Whether the codings are exactly one `chunked`.
    pub(crate) fn is_chunked_only(&self) -> bool {
        self.last_is_chunked && self.chunked == 1 && self.others == 0
    }

    /// Adds the members of one `Transfer-Encoding` value.
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        for coding in list_members(value) {
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            if chunked {
                self.chunked += 1;
            } else {
                self.others += 1;
            }
            self.last_is_chunked = chunked;
        }
    }

    /// RFC 9112 §6.3 item 4: if `chunked` is not the final coding the length cannot be
    /// known, so the request is refused; §6.1 forbids applying `chunked` twice.
    fn judge(&self) -> Result<BodyKind, RequestError> {
        if !self.last_is_chunked || self.chunked > 1 {
            Err(RequestError::InvalidTransferEncoding)
        } else if self.others > 0 {
            Err(RequestError::UnsupportedTransferCoding)
        } else {
            Ok(BodyKind::Chunked)
        }
    }
}

/// The non-empty members of a comma-separated list value, without their optional
/// whitespace (RFC 9110 §5.6.1: empty members are ignored).
pub(crate) fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|member| !member.is_empty())
}

/// One `Content-Length` value: `1*DIGIT`, or a list whose members are all the same
/// number (RFC 9110 §8.6 allows taking such a list as that number). Unlike other lists,
/// an empty member is an error here: nobody sends one by accident.
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    let mut length = None;
    for member in value.split(|&b| b == b',') {
        let n = parse_decimal(member.trim_ascii()).ok_or(RequestError::InvalidContentLength)?;
        match length {
            Some(m) if m != n => return Err(RequestError::ConflictingContentLength),
            _ => length = Some(n),
        }
    }
    length.ok_or(RequestError::InvalidContentLength)
}

/// `1*DIGIT` as a `u64`: no sign, no whitespace, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_rejects_signs_spaces_and_overflow() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+5", b"-5", b"5 5", b"0x5", b"5a", b" 5"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_length_lists_must_agree() {
        assert_eq!(parse_content_length(b"5"), Ok(5));
        assert_eq!(parse_content_length(b"5, 5"), Ok(5));
        assert_eq!(parse_content_length(b"5,5 ,\t5"), Ok(5));
        assert_eq!(
            parse_content_length(b"5, 6"),
            Err(RequestError::ConflictingContentLength)
        );
        assert_eq!(
            parse_content_length(b"5,"),
            Err(RequestError::InvalidContentLength)
        );
        assert_eq!(
            parse_content_length(b""),
            Err(RequestError::InvalidContentLength)
        );
    }

    #[test]
    fn list_members_skip_empty_and_trim() {
        let members: Vec<&[u8]> = list_members(b" a ,, b\t,").collect();
        assert_eq!(members, [&b"a"[..], b"b"]);
    }
}
