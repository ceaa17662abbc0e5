//! The messages of the `broadcast` load and their verification, without IO: what a publisher
//! sends, and what every member checks per publisher (in order, no gap, payload intact).
//!
//! A message's fill is derived from its publisher and sequence number, so a damaged message,
//! or one delivered in another's place, does not match; sequence numbers catch gaps, repeats
//! and reordering. A publisher ends with an end marker carrying how many messages it sent, so
//! a lost tail is caught too. Probes, sent before the run to learn when the subscribers' node
//! has joined the topic, are outside the sequence and ignored.

use std::fmt;

/// Bytes 0..8 of a message: its publisher; 8..16 its sequence number; 16..24 its send time
/// in nanoseconds since the run's start (each a little-endian `u64`). The fill follows:
/// hexadecimal text derived from the publisher and sequence number.
pub const MESSAGE_HEADER_LEN: usize = 24;
/// An end marker: the publisher and how many messages it sent (`u64` LE each). Shorter than
/// any message, so the two cannot be confused.
pub const END_MARKER_LEN: usize = 16;
/// A probe: these bytes, shorter than an end marker.
pub const PROBE: [u8; 8] = *b"probe\0\0\0";
/// Weyl increment of the fill pattern (2^64 / φ, odd).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The fixed fields of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Publisher index, `0..publishers`.
    pub publisher: u64,
    /// Per publisher, from 0.
    pub seq: u64,
    /// Nanoseconds since the run's start when the publisher built the message.
    pub sent_ns: u64,
}

/// Writes the whole payload of the message `header` describes into `out`
/// (`out.len() >= MESSAGE_HEADER_LEN`).
pub fn encode_message(header: Header, out: &mut [u8]) {
    out[..8].copy_from_slice(&header.publisher.to_le_bytes());
    out[8..16].copy_from_slice(&header.seq.to_le_bytes());
    out[16..24].copy_from_slice(&header.sent_ns.to_le_bytes());
    let seed = fill_seed(header.publisher, header.seq);
    for (i, chunk) in out[MESSAGE_HEADER_LEN..].chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&fill_word(seed, i).to_le_bytes()[..chunk.len()]);
    }
}

/// The end marker of `publisher` after `sent` messages.
pub fn encode_end_marker(publisher: u64, sent: u64) -> [u8; END_MARKER_LEN] {
    let mut marker = [0; END_MARKER_LEN];
    marker[..8].copy_from_slice(&publisher.to_le_bytes());
    marker[8..].copy_from_slice(&sent.to_le_bytes());
    marker
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Every message's fill differs: one delivered in another's place, or with its publisher or
/// sequence number damaged, does not match.
fn fill_seed(publisher: u64, seq: u64) -> u64 {
    splitmix64(splitmix64(publisher) ^ seq)
}

/// Fill bytes `8 * i..8 * i + 8`, as a little-endian word: eight lowercase hexadecimal
/// digits of a pseudo-random word. Text of 4 bits per byte, which DEFLATE (with
/// `--deflate`) compresses to a little over half, about what it does to short JSON.
fn fill_word(seed: u64, i: usize) -> u64 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = seed.wrapping_add((i as u64 + 1).wrapping_mul(GOLDEN)) >> 32;
    (0..8).fold(0u64, |text, k| {
        let digit = HEX[((random >> (4 * k)) & 0xf) as usize];
        text | u64::from(digit) << (8 * k)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Offset in the payload of the first fill byte that is not the pattern of `header`.
/// Compared a word at a time: this runs once per delivery.
fn fill_mismatch(header: Header, payload: &[u8]) -> Option<usize> {
    let seed = fill_seed(header.publisher, header.seq);
    let fill = &payload[MESSAGE_HEADER_LEN..];
    let words = fill.len() / 8;
    for i in 0..words {
        let diff = read_u64(&fill[i * 8..]) ^ fill_word(seed, i);
        if diff != 0 {
            // Little-endian: the lowest set bit is in the first differing byte.
            return Some(MESSAGE_HEADER_LEN + i * 8 + diff.trailing_zeros() as usize / 8);
        }
    }
    let tail = fill_word(seed, words).to_le_bytes();
    let at = fill[words * 8..]
        .iter()
        .zip(tail)
        .position(|(a, b)| *a != b)?;
    Some(MESSAGE_HEADER_LEN + words * 8 + at)
}

/// A verified binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The next message of its publisher, intact.
    Message(Header),
    /// The publisher's end marker; every message it sent has arrived.
    End {
        /// Publisher index.
        publisher: u64,
    },
    /// A probe from before the run.
    Probe,
}

/// What a member found wrong with a delivery: each one is an error of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Neither a message of `--size` bytes nor an end marker.
    Size(usize),
    /// A publisher index outside `0..publishers`.
    UnknownPublisher(u64),
    /// Message `seq` of `publisher` differs from what was sent from byte `at` on.
    Corrupt {
        /// Publisher index.
        publisher: u64,
        /// Sequence number the message claims.
        seq: u64,
        /// Payload offset of the first wrong byte.
        at: usize,
    },
    /// Message `got` of `publisher` arrived when `expected` was due: a gap, a repeat or a
    /// reordering.
    OutOfOrder {
        /// Publisher index.
        publisher: u64,
        /// Sequence number due.
        expected: u64,
        /// Sequence number received.
        got: u64,
    },
    /// The end marker of `publisher` says it sent `sent` messages; `received` arrived.
    Missing {
        /// Publisher index.
        publisher: u64,
        /// Messages the publisher sent.
        sent: u64,
        /// Messages this member received.
        received: u64,
    },
    /// A message of `publisher` after its end marker.
    AfterEnd(u64),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(len) => write!(f, "a message of {len} bytes"),
            Self::UnknownPublisher(p) => write!(f, "a message of unknown publisher {p}"),
            Self::Corrupt { publisher, seq, at } => {
                write!(
                    f,
                    "message {seq} of publisher {publisher} corrupt at byte {at}"
                )
            }
            Self::OutOfOrder {
                publisher,
                expected,
                got,
            } => write!(
                f,
                "publisher {publisher}: message {got} arrived when {expected} was due"
            ),
            Self::Missing {
                publisher,
                sent,
                received,
            } => write!(
                f,
                "publisher {publisher} sent {sent} messages, {received} arrived"
            ),
            Self::AfterEnd(p) => write!(f, "a message of publisher {p} after its end marker"),
        }
    }
}

/// One member's record of the topic: the next sequence number due from each publisher.
#[derive(Debug)]
pub struct Verifier {
    size: usize,
    next: Vec<u64>,
    ended: Vec<bool>,
    ended_count: usize,
}

impl Verifier {
    /// Nothing received yet from `publishers` publishers sending `size`-byte messages.
    pub fn new(publishers: usize, size: usize) -> Self {
        Self {
            size,
            next: vec![0; publishers],
            ended: vec![false; publishers],
            ended_count: 0,
        }
    }

    /// Checks one binary message. After a violation the next message due is the one after
    /// the offending one, so a single gap is one error, not one per message that follows.
    pub fn check(&mut self, payload: &[u8]) -> Result<Received, Violation> {
        if payload.len() == END_MARKER_LEN {
            return self.check_end(read_u64(payload), read_u64(&payload[8..]));
        }
        if payload == PROBE {
            return Ok(Received::Probe);
        }
        if payload.len() != self.size {
            return Err(Violation::Size(payload.len()));
        }
        let header = Header {
            publisher: read_u64(payload),
            seq: read_u64(&payload[8..]),
            sent_ns: read_u64(&payload[16..]),
        };
        let index = self.index(header.publisher)?;
        if self.ended[index] {
            return Err(Violation::AfterEnd(header.publisher));
        }
        let expected = self.next[index];
        self.next[index] = header.seq.wrapping_add(1);
        if let Some(at) = fill_mismatch(header, payload) {
            self.next[index] = expected + 1;
            return Err(Violation::Corrupt {
                publisher: header.publisher,
                seq: header.seq,
                at,
            });
        }
        if header.seq != expected {
            return Err(Violation::OutOfOrder {
                publisher: header.publisher,
                expected,
                got: header.seq,
            });
        }
        Ok(Received::Message(header))
    }

    fn check_end(&mut self, publisher: u64, sent: u64) -> Result<Received, Violation> {
        let index = self.index(publisher)?;
        if !self.ended[index] {
            self.ended[index] = true;
            self.ended_count += 1;
        }
        match self.next[index] {
            received if received == sent => Ok(Received::End { publisher }),
            received => Err(Violation::Missing {
                publisher,
                sent,
                received,
            }),
        }
    }

    fn index(&self, publisher: u64) -> Result<usize, Violation> {
        usize::try_from(publisher)
            .ok()
            .filter(|&i| i < self.next.len())
            .ok_or(Violation::UnknownPublisher(publisher))
    }

    /// Whether every publisher's end marker has arrived.
    pub fn all_ended(&self) -> bool {
        self.ended_count == self.ended.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn message(publisher: u64, seq: u64, size: usize) -> Vec<u8> {
        let mut payload = vec![0; size];
        encode_message(
            Header {
                publisher,
                seq,
                sent_ns: 1234,
            },
            &mut payload,
        );
        payload
    }

    fn end_marker(publisher: u64, sent: u64) -> Vec<u8> {
        encode_end_marker(publisher, sent).to_vec()
    }

    #[test]
    fn messages_in_order_pass_and_the_end_marker_closes_the_publisher() {
        for size in [24, 25, 31, 64, 1000] {
            let mut verifier = Verifier::new(2, size);
            for seq in 0..3 {
                for publisher in [1, 0] {
                    assert_eq!(
                        verifier.check(&message(publisher, seq, size)),
                        Ok(Received::Message(Header {
                            publisher,
                            seq,
                            sent_ns: 1234
                        }))
                    );
                }
            }
            assert_eq!(
                verifier.check(&end_marker(0, 3)),
                Ok(Received::End { publisher: 0 })
            );
            assert!(!verifier.all_ended());
            verifier.check(&end_marker(1, 3)).unwrap();
            assert!(verifier.all_ended());
        }
    }

    #[test]
    fn every_corrupted_byte_is_detected() {
        // 61: the fill ends in a partial word.
        for size in [64, 61] {
            let good = message(3, 17, size);
            for at in 0..size {
                // The send time (16..24) is not covered: it only feeds the latency.
                if (16..24).contains(&at) {
                    continue;
                }
                for flip in [0x01, 0x80] {
                    let mut bad = good.clone();
                    bad[at] ^= flip;
                    let mut verifier = Verifier::new(4, size);
                    verifier.next[3] = 17;
                    let outcome = verifier.check(&bad);
                    assert!(outcome.is_err(), "size {size}, byte {at}: {outcome:?}");
                    if at >= MESSAGE_HEADER_LEN {
                        assert_eq!(
                            outcome,
                            Err(Violation::Corrupt {
                                publisher: 3,
                                seq: 17,
                                at
                            })
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_gap_a_repeat_and_a_lost_tail_are_detected_once_each() {
        let mut verifier = Verifier::new(1, 32);
        verifier.check(&message(0, 0, 32)).unwrap();
        assert_eq!(
            verifier.check(&message(0, 2, 32)),
            Err(Violation::OutOfOrder {
                publisher: 0,
                expected: 1,
                got: 2
            })
        );
        // After the gap the stream continues from the message that arrived.
        verifier.check(&message(0, 3, 32)).unwrap();
        assert_eq!(
            verifier.check(&message(0, 3, 32)),
            Err(Violation::OutOfOrder {
                publisher: 0,
                expected: 4,
                got: 3
            })
        );
        verifier.check(&message(0, 4, 32)).unwrap();
        assert_eq!(
            verifier.check(&end_marker(0, 7)),
            Err(Violation::Missing {
                publisher: 0,
                sent: 7,
                received: 5
            })
        );
        assert_eq!(
            verifier.check(&message(0, 5, 32)),
            Err(Violation::AfterEnd(0))
        );
    }

    #[test]
    fn wrong_sizes_and_unknown_publishers_are_violations() {
        let mut verifier = Verifier::new(2, 64);
        assert_eq!(verifier.check(&message(0, 0, 65)), Err(Violation::Size(65)));
        // A probe is not a message; eight other bytes are neither.
        assert_eq!(verifier.check(&PROBE), Ok(Received::Probe));
        assert_eq!(verifier.check(b"probe\0\0\x01"), Err(Violation::Size(8)));
        verifier.check(&message(0, 0, 64)).unwrap();
        assert_eq!(
            verifier.check(&message(2, 0, 64)),
            Err(Violation::UnknownPublisher(2))
        );
        // A message delivered to the wrong publisher's stream does not match its fill.
        let mut moved = message(0, 0, 64);
        moved[..8].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(
            verifier.check(&moved),
            Err(Violation::Corrupt { publisher: 1, .. })
        ));
    }
}
