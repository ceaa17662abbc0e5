use proptest::prelude::*;

use super::*;

/// What feeding a body to a decoder gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fed {
    /// The body bytes, joined.
    pub(crate) body: Vec<u8>,
    /// Whether the decoder said it was done.
    pub(crate) done: bool,
    /// Bytes not consumed at the end.
    pub(crate) leftover: Vec<u8>,
}

/// Feeds `pieces` the way the engine does: appends each to a buffer and decodes until
/// the buffer is empty or the body done, dropping what was consumed. Checks on every
/// call that something was consumed and the data lies within it.
pub(crate) fn feed(decoder: &mut BodyDecoder, pieces: &[&[u8]]) -> Result<Fed, BodyError> {
    let mut buf = Vec::new();
    let mut body = Vec::new();
    let mut done = decoder.is_done();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while !done && !buf.is_empty() {
            let decoded = decoder.decode(&buf)?;
            assert!(decoded.consumed > 0 || decoded.done, "no progress");
            assert!(decoded.consumed <= buf.len());
            assert!(decoded.data.end <= decoded.consumed || decoded.data.is_empty());
            body.extend_from_slice(&buf[decoded.data]);
            buf.drain(..decoded.consumed);
            done = decoded.done;
            assert_eq!(done, decoder.is_done());
        }
    }
    Ok(Fed {
        body,
        done,
        leftover: buf,
    })
}

fn fed(body: &[u8], leftover: &[u8]) -> Fed {
    Fed {
        body: body.to_vec(),
        done: true,
        leftover: leftover.to_vec(),
    }
}

/// A body that must decode: framing, bytes (with a pipelined request after some), the
/// body, the bytes left.
type Case = (BodyKind, &'static [u8], &'static [u8], &'static [u8]);

const VALID: &[Case] = &[
    (BodyKind::Length(5), b"hello", b"hello", b""),
    (
        BodyKind::Length(5),
        b"helloGET / HTTP/1.1\r\n",
        b"hello",
        b"GET / HTTP/1.1\r\n",
    ),
    (BodyKind::Length(0), b"GET", b"", b"GET"),
    (BodyKind::None, b"GET", b"", b"GET"),
    (
        BodyKind::Chunked,
        b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        b"Wikipedia",
        b"",
    ),
    (
        BodyKind::Chunked,
        b"4;a=b\r\nWiki\r\n5 ; c ; d=\"e;f\"\r\npedia\r\n0;last\r\n\r\nGET",
        b"Wikipedia",
        b"GET",
    ),
    (
        BodyKind::Chunked,
        b"3\t;x\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:\t1\r\n\r\n",
        b"abc",
        b"",
    ),
    (
        BodyKind::Chunked,
        b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0000\r\n\r\n",
        b"0123456789abcdefghij",
        b"",
    ),
    (BodyKind::Chunked, b"0\r\n\r\n\r\n", b"", b"\r\n"),
];

#[test]
fn valid_bodies_in_one_piece() {
    for &(kind, bytes, body, leftover) in VALID {
        let mut decoder = BodyDecoder::new(kind, 1 << 20);
        assert_eq!(
            feed(&mut decoder, &[bytes]),
            Ok(fed(body, leftover)),
            "{kind:?} {bytes:?}"
        );
    }
}

#[test]
fn every_split_gives_the_same_body() {
    for &(kind, bytes, body, leftover) in VALID {
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let mut decoder = BodyDecoder::new(kind, 1 << 20);
            assert_eq!(
                feed(&mut decoder, &[a, b]),
                Ok(fed(body, leftover)),
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = bytes.chunks(1).collect();
        let mut decoder = BodyDecoder::new(kind, 1 << 20);
        assert_eq!(
            feed(&mut decoder, &bytes),
            Ok(fed(body, leftover)),
            "byte by byte"
        );
    }
}

#[test]
fn chunk_data_is_not_copied_and_comes_with_done() {
    let input = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
    let first = decoder.decode(input).expect("first chunk");
    assert_eq!(first.data, 3..7);
    assert!(!first.done);
    // Framing after the piece is consumed too, up to the next piece.
    assert_eq!(first.consumed, 12);
    let rest = &input[first.consumed..];
    let second = decoder.decode(rest).expect("second chunk");
    assert_eq!(&rest[second.data.clone()], b"pedia");
    assert!(second.done);
    assert_eq!(second.consumed, rest.len());
}

#[test]
fn length_body_stops_at_its_length() {
    let mut decoder = BodyDecoder::new(BodyKind::Length(3), 3);
    let decoded = decoder.decode(b"ab").expect("part");
    assert_eq!(
        decoded,
        Decoded {
            consumed: 2,
            data: 0..2,
            done: false
        }
    );
    let decoded = decoder.decode(b"cd").expect("rest");
    assert_eq!(
        decoded,
        Decoded {
            consumed: 1,
            data: 0..1,
            done: true
        }
    );
    assert_eq!(
        decoder.decode(b"d").expect("after"),
        Decoded {
            consumed: 0,
            data: 0..0,
            done: true
        }
    );
}

#[test]
fn empty_bodies_are_done_at_once() {
    for kind in [BodyKind::None, BodyKind::Length(0)] {
        let mut decoder = BodyDecoder::new(kind, 0);
        assert!(decoder.is_done());
        assert_eq!(
            decoder.decode(b"").expect("empty"),
            Decoded {
                consumed: 0,
                data: 0..0,
                done: true
            }
        );
    }
}

#[test]
fn length_above_the_cap_is_refused_before_reading() {
    let mut decoder = BodyDecoder::new(BodyKind::Length(11), 10);
    assert_eq!(decoder.decode(b""), Err(BodyError::TooLarge));
    assert_eq!(decoder.decode(b"hello"), Err(BodyError::TooLarge));
    assert_eq!(BodyError::TooLarge.status(), 413);
    let mut decoder = BodyDecoder::new(BodyKind::Length(10), 10);
    assert_eq!(
        feed(&mut decoder, &[b"0123456789"]),
        Ok(fed(b"0123456789", b""))
    );
}

/// Encodes `body` chunked, cutting it at `sizes` (cycled), with extensions and trailers
/// when asked, in upper or lower case hex.
fn encode_chunked(
    body: &[u8],
    sizes: &[usize],
    extensions: bool,
    trailers: bool,
    upper: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(size);
        let line = if upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        out.extend_from_slice(line.as_bytes());
        if extensions {
            out.extend_from_slice(b" ;name=\"v;a\\\"l\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(if extensions {
        &b"0;end\r\n"[..]
    } else {
        b"0\r\n"
    });
    if trailers {
        out.extend_from_slice(b"Digest: sha-256=abc\r\nX-Empty:\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn any_kind() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::None),
        Just(BodyKind::Chunked),
        any::<u64>().prop_map(BodyKind::Length),
        (0u64..600).prop_map(BodyKind::Length),
    ]
}

/// `bytes` cut at the given fractions of its length.
fn split<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[start..point]);
        start = point;
    }
    pieces
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        kind in any_kind(),
        max_body in prop_oneof![Just(0), Just(u64::MAX), any::<u64>(), 0u64..1000],
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let mut decoder = BodyDecoder::new(kind, max_body);
        let _ = feed(&mut decoder, &split(&bytes, &cuts));
    }

    #[test]
    fn never_panics_on_near_chunked_bytes(
        bytes in prop::collection::vec(
            prop::sample::select(&b"0123456789abcdefABCDEFgx \t;=\"\\\r\n:"[..]), 0..300),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, 1000);
        let _ = feed(&mut decoder, &split(&bytes, &cuts));
    }

    #[test]
    fn chunked_round_trip(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 1..8),
        extensions in any::<bool>(),
        trailers in any::<bool>(),
        upper in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut encoded = encode_chunked(&body, &sizes, extensions, trailers, upper);
        encoded.extend_from_slice(b"GET /next");
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, body.len() as u64);
        let got = feed(&mut decoder, &split(&encoded, &cuts));
        prop_assert_eq!(got, Ok(fed(&body, b"GET /next")));
    }

    #[test]
    fn chunked_over_the_cap_is_refused(
        body in prop::collection::vec(any::<u8>(), 1..2000),
        sizes in prop::collection::vec(1usize..700, 1..8),
    ) {
        let encoded = encode_chunked(&body, &sizes, false, false, false);
        let mut decoder = BodyDecoder::new(BodyKind::Chunked, body.len() as u64 - 1);
        prop_assert_eq!(feed(&mut decoder, &[&encoded]), Err(BodyError::TooLarge));
    }

    #[test]
    fn length_round_trip(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut input = body.clone();
        input.extend_from_slice(b"next");
        let mut decoder = BodyDecoder::new(BodyKind::Length(body.len() as u64), u64::MAX);
        prop_assert_eq!(feed(&mut decoder, &split(&input, &cuts)), Ok(fed(&body, b"next")));
    }
}
