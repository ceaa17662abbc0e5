//! What a worker thread asks of its Redis link, whichever way the link is built.

use std::fmt;
use std::io;

/// Channel every PUBLISH in these measurements goes to.
pub const CHANNEL: &str = "ringstream:t:bench";

/// Size of one published message body.
pub const PAYLOAD_LEN: usize = 64;

/// GCRA lease renewal: take `ARGV[3]` tokens from the bucket whose theoretical arrival time
/// (µs, Redis clock) is stored in `KEYS[1]`; `ARGV[1]` is the emission interval per token (µs),
/// `ARGV[2]` the burst tolerance (µs). Replies `{1, µs of burst left}` when granted and
/// `{0, µs to wait}` when not. The key expires once the bucket is full again.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = interval * tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost
local wait = new_tat - burst - now
if wait > 0 then
  return {0, math.ceil(wait)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((new_tat - now) / 1000))
return {1, burst - (new_tat - now)}
";

/// The lease script's arguments: 10 µs per token, 1 s of burst, one token per renewal.
pub const LEASE_ARGS: [&str; 3] = ["10", "1000000", "1"];

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseReply {
    pub granted: bool,
    /// µs of burst left when granted, µs to wait when not.
    pub micros: i64,
}

impl LeaseReply {
    /// Reads the script's `{granted, micros}` reply.
    pub fn from_pair(values: &[i64]) -> Result<Self, LinkError> {
        match values {
            [granted, micros] => Ok(Self {
                granted: *granted == 1,
                micros: *micros,
            }),
            _ => Err(LinkError::Protocol(format!("lease reply {values:?}"))),
        }
    }
}

/// One ~64-byte message as a worker would publish it: a sequence number and some text.
#[derive(Debug, Clone, Copy)]
pub struct Message([u8; PAYLOAD_LEN]);

impl Message {
    pub fn new(node: u8, seq: u64) -> Self {
        let mut body =
            *b"{\"seq\":\"0000000000000000\",\"node\":\"n0\",\"ev\":\"tick\",\"pad\":\".....\"}";
        let hex = b"0123456789abcdef";
        for (i, slot) in body[8..24].iter_mut().enumerate() {
            *slot = hex[((seq >> (60 - 4 * i)) & 0xf) as usize];
        }
        body[35] = b'0' + node % 10;
        Self(body)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What the measurement does with a received message: look at it the way a handler would
/// (length and a byte), so that receiving cannot be optimised away.
pub fn consume(payload: &[u8]) -> u64 {
    payload.len() as u64 + u64::from(payload.get(8).copied().unwrap_or(0))
}

/// Why a link call failed.
#[derive(Debug)]
pub enum LinkError {
    /// No room for another command now (`try_*` calls only).
    Full,
    /// The link is closed (its connection or its I/O thread ended).
    Closed,
    /// Redis answered with an error.
    Server(String),
    /// A reply that does not parse or is not of the expected shape.
    Protocol(String),
    /// A wait took too long.
    Timeout,
    Io(io::Error),
    /// An error from the fred client.
    Fred(fred::error::Error),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("no room for another command"),
            Self::Closed => f.write_str("link closed"),
            Self::Server(e) => write!(f, "redis error: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Fred(e) => write!(f, "fred: {e}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<fred::error::Error> for LinkError {
    fn from(e: fred::error::Error) -> Self {
        Self::Fred(e)
    }
}

impl From<redis_protocol::error::RedisProtocolError> for LinkError {
    fn from(e: redis_protocol::error::RedisProtocolError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// A worker thread's side of a Redis link. Single-threaded: called from the worker's compio
/// runtime only.
pub trait Link {
    /// Queues one PUBLISH to [`CHANNEL`] without waiting; [`LinkError::Full`] when the link
    /// holds as many unanswered commands as it allows.
    fn try_publish(&self, message: &Message) -> Result<(), LinkError>;

    /// Queues one PUBLISH, waiting for room first.
    async fn publish(&self, message: &Message) -> Result<(), LinkError>;

    /// PUBLISH commands answered so far (successfully or not) on this link.
    fn publishes_answered(&self) -> u64;

    /// PUBLISH commands answered with an error so far.
    fn publish_errors(&self) -> u64;

    /// Runs the GCRA lease script on `key` and waits for its reply.
    async fn renew_lease(&self, key: &str) -> Result<LeaseReply, LinkError>;
}

/// Where a worker gets the messages of its subscription from.
pub trait MessageSource {
    /// Waits for at least one message and appends every message available now to `out`.
    async fn next_batch(&mut self, out: &mut Vec<bytes::Bytes>) -> Result<(), LinkError>;
}
