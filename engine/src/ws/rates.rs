//! The per-connection frame and byte rates of a WebSocket route (`rate_limit`,
//! `messages_per_minute`, `bytes_per_minute`), on the GCRA of `ringstream-limits`.

use std::time::{Duration, Instant};

use ringstream_limits::gcra::{Gcra, GcraState};

use crate::config::WsLimits;

/// Which quota a frame exceeded; the text is the close reason the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// `rate_limit` (frames per second).
    FramesPerSecond,
    /// `messages_per_minute`.
    FramesPerMinute,
    /// `bytes_per_minute`.
    BytesPerMinute,
}

impl Exceeded {
    /// The close reason sent with 1008.
    pub fn reason(self) -> &'static str {
        match self {
            Self::FramesPerSecond => "rate limit exceeded: messages per second",
            Self::FramesPerMinute => "rate limit exceeded: messages per minute",
            Self::BytesPerMinute => "rate limit exceeded: bytes per minute",
        }
    }
}

/// The quotas of one connection, with their state; empty when the route sets none.
#[derive(Debug)]
pub struct FrameRates {
    /// Time zero of the quotas' clock.
    epoch: Instant,
    per_second: Option<(Gcra, GcraState)>,
    per_minute: Option<(Gcra, GcraState)>,
    bytes: Option<(Gcra, GcraState)>,
}

impl FrameRates {
    /// The quotas `limits` asks for. Each allows its whole budget at once (a second's worth of
    /// frames, a minute's worth of frames or bytes) and refills evenly.
    pub fn new(limits: &WsLimits) -> Self {
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        let quota =
            |count: u64, period| Gcra::new(count, period, count).map(|q| (q, GcraState::default()));
        Self {
            epoch: Instant::now(),
            per_second: quota(u64::from(limits.rate_limit), second),
            per_minute: quota(u64::from(limits.messages_per_minute), minute),
            bytes: quota(limits.bytes_per_minute, minute),
        }
    }

    /// Whether any quota is set (when none is, frames are not even timed).
    pub fn is_active(&self) -> bool {
        self.per_second.is_some() || self.per_minute.is_some() || self.bytes.is_some()
    }

    /// Takes one frame of `payload_len` bytes from every quota, or names the first exceeded.
    pub fn admit(&mut self, payload_len: u64) -> Result<(), Exceeded> {
        if !self.is_active() {
            return Ok(());
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let checks = [
            (&mut self.per_second, 1, Exceeded::FramesPerSecond),
            (&mut self.per_minute, 1, Exceeded::FramesPerMinute),
            (&mut self.bytes, payload_len, Exceeded::BytesPerMinute),
        ];
        for (quota, cost, exceeded) in checks {
            if let Some((gcra, state)) = quota
                && cost > 0
                && !gcra.check(state, now, cost).is_allowed()
            {
                return Err(exceeded);
            }
        }
        Ok(())
    }
}
