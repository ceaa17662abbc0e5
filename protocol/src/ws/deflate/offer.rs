//! Negotiating permessage-deflate (RFC 7692 §5, §7.1): reading the client's offers in
//! `Sec-WebSocket-Extensions` and choosing the parameters the server answers with.
//!
//! The first offer the server can honour wins. An offer with an unknown parameter, a parameter
//! twice, or a value out of range is declined (§5.1) and the next one is looked at; with none
//! left, the connection goes on uncompressed.

/// What the server allows (a route's `permessage_deflate` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Compress each message on its own (no memory of earlier messages between them): less
    /// memory per connection, worse ratios.
    pub server_no_context_takeover: bool,
    /// Ask clients to do the same, so the server keeps no inflate window between messages.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (2^bits bytes) the server compresses with, 9 to 15.
    pub server_max_window_bits: u8,
    /// The largest window the server asks clients to compress with (when they let it), 9 to 15.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The parameters both sides agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message (the server may reset its
    /// decompressor).
    pub client_no_context_takeover: bool,
    /// The server's compression window, in bits.
    pub server_max_window_bits: u8,
    /// The client's compression window, in bits (the server's decompression window).
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// Appends the `Sec-WebSocket-Extensions` value that answers the offer.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"permessage-deflate");
        if self.server_no_context_takeover {
            out.extend_from_slice(b"; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.extend_from_slice(b"; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            out.extend_from_slice(b"; server_max_window_bits=");
            push_bits(out, self.server_max_window_bits);
        }
        if self.client_max_window_bits < 15 {
            out.extend_from_slice(b"; client_max_window_bits=");
            push_bits(out, self.client_max_window_bits);
        }
    }
}

fn push_bits(out: &mut Vec<u8>, bits: u8) {
    if bits >= 10 {
        out.push(b'1');
    }
    out.push(b'0' + bits % 10);
}

/// A window size parameter's value: 8 to 15, a token or a quoted string (RFC 7692 §7.1.2).
fn window_bits(value: Option<&str>) -> Option<u8> {
    let value = value?.trim().trim_matches('"');
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if !value.starts_with('0') => Some(bits),
        _ => None,
    }
}

/// One offer's parameters, if they are all known, each at most once, with valid values.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value (the server may choose).
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value)),
            None => (param.trim(), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover"
                if value.is_none() && !offer.server_no_context_takeover =>
            {
                offer.server_no_context_takeover = true;
            }
            "client_no_context_takeover"
                if value.is_none() && !offer.client_no_context_takeover =>
            {
                offer.client_no_context_takeover = true;
            }
            "server_max_window_bits" if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(value)?);
            }
            "client_max_window_bits" if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match value {
                    None => None,
                    Some(_) => Some(window_bits(value)?),
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// The parameters to answer the first acceptable permessage-deflate offer among `headers`
/// (each a `Sec-WebSocket-Extensions` value), under `config`; `None`: no offer can be taken.
pub fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Option<DeflateParams> {
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for extension in text.split(',') {
            let mut parts = extension.split(';');
            let name = parts.next().unwrap_or_default().trim();
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                continue;
            }
            let Some(offer) = parse_offer(parts) else {
                continue;
            };
            if let Some(params) = accept(&offer, config) {
                return Some(params);
            }
        }
    }
    None
}

/// The answer to `offer` under `config`, if the server can honour it.
fn accept(offer: &Offer, config: &DeflateConfig) -> Option<DeflateParams> {
    let mut server_bits = config.server_max_window_bits.clamp(9, 15);
    if let Some(limit) = offer.server_max_window_bits {
        // Deflate compresses with a window of at least 9 bits (zlib raises 8 to 9): an offer
        // of 8 cannot be honoured.
        if limit < 9 {
            return None;
        }
        server_bits = server_bits.min(limit);
    }
    // The client's window: 15 unless the offer lets the server choose (then the server's
    // wish), or names its own (then the smaller of the two).
    let wish = config.client_max_window_bits.clamp(9, 15);
    let client_bits = match offer.client_max_window_bits {
        None => 15,
        Some(None) => wish,
        Some(Some(bits)) => bits.min(wish),
    };
    Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn answer(offers: &[&str], config: &DeflateConfig) -> Option<String> {
        let params = negotiate(offers.iter().map(|o| o.as_bytes()), config)?;
        let mut out = Vec::new();
        params.write_response(&mut out);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_plain_offer_is_taken_with_the_servers_settings() {
        let default = DeflateConfig::default();
        assert_eq!(
            answer(&["permessage-deflate"], &default).as_deref(),
            Some("permessage-deflate")
        );
        // What browsers send.
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"], &default).as_deref(),
            Some("permessage-deflate")
        );
        let frugal = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 10,
        };
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits"], &frugal).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=10"
            )
        );
    }

    #[test]
    fn the_clients_limits_are_honoured() {
        let default = DeflateConfig::default();
        assert_eq!(
            answer(
                &["permessage-deflate; server_max_window_bits=12; client_max_window_bits=11"],
                &default
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=11")
        );
        assert_eq!(
            answer(
                &["permessage-deflate; server_no_context_takeover"],
                &default
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // A server window of 8 cannot be honoured (deflate raises it to 9): the next offer wins.
        assert_eq!(
            answer(
                &["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
                &default
            )
            .as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn bad_offers_are_declined_and_others_ignored() {
        let default = DeflateConfig::default();
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(answer(&[bad], &default), None, "{bad}");
        }
        assert_eq!(
            answer(
                &["foo, permessage-deflate; mystery", "permessage-deflate"],
                &default
            )
            .as_deref(),
            Some("permessage-deflate"),
            "the offer in the second header"
        );
        assert_eq!(
            answer(
                &["permessage-deflate; client_max_window_bits=\"10\""],
                &default
            )
            .as_deref(),
            Some("permessage-deflate; client_max_window_bits=10"),
            "a quoted value (RFC 7692 §7.1: a token or a quoted string)"
        );
    }
}
