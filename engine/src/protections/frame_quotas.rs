//! The per-connection frame and byte rates of a WebSocket route (`rate_limit`,
//! `messages_per_minute`, `bytes_per_minute`), on the GCRA of `ringstream-limits`.

use std::time::Duration;

use ringstream_limits::client_table::Rule;
use ringstream_limits::gcra::{Gcra, GcraState};

use crate::config::{LimitMode, Route, WsLimits};
use crate::protections::gate::{ClientGate, ClientSlot};

/// The close reason sent with 1008 when a frame breaks `rule`.
pub fn close_reason(rule: Rule) -> &'static str {
    match rule {
        Rule::FramesPerSecond => "rate limit exceeded: messages per second",
        Rule::FramesPerMinute => "rate limit exceeded: messages per minute",
        Rule::BytesPerMinute => "rate limit exceeded: bytes per minute",
        Rule::ClientMessageRate => "rate limit exceeded: client messages per minute",
        Rule::ClientByteRate => "rate limit exceeded: client bytes per minute",
        _ => "policy violation",
    }
}

/// The rate rule a frame of `bytes` breaks, if any: the connection's own quotas, then its
/// client's across connections (when `client_rates`, the gate has some). Violations are logged
/// and counted; in shadow mode the frame passes.
pub fn frame_rule(
    rates: &mut FrameRates,
    gate: &ClientGate,
    client: Option<&ClientSlot>,
    client_rates: bool,
    bytes: u64,
    route: &Route,
) -> Option<Rule> {
    let mode = route.limits.mode;
    if let Err(rule) = rates.admit(bytes) {
        if let Some(client) = client {
            gate.connection_violation(client.address(), &route.path, rule, mode);
        }
        if mode == LimitMode::Enforce {
            return Some(rule);
        }
    }
    match client {
        Some(client) if client_rates => gate.check_frame(client, bytes, &route.path, mode),
        _ => None,
    }
}

/// The quotas of one connection, with their state. Boxed, and absent when the route sets none
/// (the default): a connection without quotas keeps one word for them, and a frame reads
/// nothing more to learn that it has none.
#[derive(Debug)]
pub struct FrameRates {
    quotas: Option<Box<Quotas>>,
}

#[derive(Debug)]
struct Quotas {
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
        let quotas = Quotas {
            per_second: quota(u64::from(limits.rate_limit), second),
            per_minute: quota(u64::from(limits.messages_per_minute), minute),
            bytes: quota(limits.bytes_per_minute, minute),
        };
        let any =
            quotas.per_second.is_some() || quotas.per_minute.is_some() || quotas.bytes.is_some();
        Self {
            quotas: any.then(|| Box::new(quotas)),
        }
    }

    /// Takes one frame of `payload_len` bytes from every quota, or names the first exceeded
    /// (with no quota set, frames are not even timed).
    pub fn admit(&mut self, payload_len: u64) -> Result<(), Rule> {
        let Some(quotas) = self.quotas.as_deref_mut() else {
            return Ok(());
        };
        let now = crate::server::coarse_clock::now_ns();
        let checks = [
            (&mut quotas.per_second, 1, Rule::FramesPerSecond),
            (&mut quotas.per_minute, 1, Rule::FramesPerMinute),
            (&mut quotas.bytes, payload_len, Rule::BytesPerMinute),
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
