//! Download bandwidth caps: before each piece is sent, every cap that applies is asked for
//! its bytes; a cap that says "not yet" names the wait, and the download sleeps on a timer
//! (never blocking its worker) and asks again.
//!
//! Each cap is a GCRA byte budget with a burst of one piece and 1 ms of its rate (a piece sent
//! late by a timer's slack is caught up by the next, and two pieces never leave back to back
//! from a full allowance): per connection (its state lives as long as the connection, so the
//! responses of one keep-alive connection share it), per client (a bucket in the client's
//! shared state, exact across cores) and per route (one atomic state shared by every
//! connection). A budget granted for a piece is not asked again while a later cap makes the
//! piece wait. The first `rate_after` bytes of a response go out uncapped.
//!
//! A piece under a cap is at most 256 KiB, however large the route's pieces are otherwise:
//! TCP then sends each piece as it comes, where a larger one fills the congestion window and
//! the kernel paces the rest itself (BENCHMARKS.md, "Capped downloads and TCP pacing").

use std::time::Duration;

use ringstream_limits::gcra::{Decision, Gcra, GcraState};

use crate::config::Bandwidth;
use crate::protections::gate::{ClientGate, ClientSlot};
use crate::routes::state::SharedRate;

/// The smallest piece sent under a cap.
const MIN_PIECE: usize = 4 * 1024;
/// The largest piece sent under a cap: small enough for TCP to send it at once. A piece that
/// fills the congestion window makes BBR leave its start-up phase and pace the rest of every
/// piece itself, with a timer interrupt per segment: pieces of 3.2 MiB cost three times
/// nginx's CPU per GiB on loopback.
const MAX_PIECE: usize = 256 * 1024;
/// Pieces per second at least, under the tightest cap (smoother pacing than whole chunks).
const PIECES_PER_SECOND: u64 = 32;
/// A cap's burst holds a piece and this share of a second of its rate (1 ms): the pacing
/// timers wake on a 1 ms grid (`send`), and a piece that waited for the grid is caught up
/// rather than lost to the rate.
const SLACK_PER_SECOND: u64 = 1000;

/// The largest piece a download asks a cap of `rate` bytes per second for: 1/32 s of it, at
/// least 4 KiB and at most [`MAX_PIECE`] (another, tighter cap of the same download, or a
/// smaller `chunk_size`, only makes pieces smaller).
fn largest_piece(rate: u64) -> u64 {
    (rate / PIECES_PER_SECOND).clamp(MIN_PIECE as u64, MAX_PIECE as u64)
}

/// The burst of a cap of `rate` bytes per second: the largest piece it is asked for and 1 ms
/// of the rate. A piece larger than a cap's burst could never be granted, and is let through
/// (`wait_for`): the burst must hold every piece, or the cap does nothing.
pub fn cap_burst(rate: u64) -> u64 {
    largest_piece(rate).saturating_add(rate / SLACK_PER_SECOND)
}

/// The caps of one response.
#[derive(Debug)]
pub struct Pacer<'a> {
    connection: Option<(Gcra, &'a mut GcraState)>,
    client: Option<(&'a ClientGate, &'a ClientSlot, usize)>,
    global: Option<&'a SharedRate>,
    rate_after: u64,
    sent: u64,
    /// The largest piece: `chunk_size`, or less under a low cap.
    piece: usize,
    /// Which caps granted the piece being asked for: connection, client, route.
    granted: [bool; 3],
}

impl<'a> Pacer<'a> {
    /// The caps of `bandwidth` for a response on route `route`; `connection` is the
    /// connection's own budget state, `client` its client (whose shared budget applies only
    /// to clients the limits track).
    pub fn new(
        bandwidth: &Bandwidth,
        chunk_size: usize,
        connection: &'a mut GcraState,
        client: Option<(&'a ClientGate, &'a ClientSlot, usize)>,
        global: Option<&'a SharedRate>,
    ) -> Self {
        let tightest = [
            bandwidth.per_connection,
            bandwidth.per_client,
            bandwidth.global,
        ]
        .into_iter()
        .filter(|&rate| rate > 0)
        .min();
        let piece = match tightest {
            Some(rate) => usize::try_from(largest_piece(rate))
                .unwrap_or(MAX_PIECE)
                .min(chunk_size),
            None => chunk_size,
        };
        let connection = Gcra::new(
            bandwidth.per_connection,
            Duration::from_secs(1),
            cap_burst(bandwidth.per_connection),
        )
        .map(|quota| (quota, connection));
        Self {
            connection,
            client: client.filter(|_| bandwidth.per_client > 0),
            global,
            rate_after: bandwidth.rate_after,
            sent: 0,
            piece,
            granted: [false; 3],
        }
    }

    /// Whether any cap applies.
    pub fn is_capped(&self) -> bool {
        self.connection.is_some() || self.client.is_some() || self.global.is_some()
    }

    /// The size of the next piece, at most `remaining`: one piece, cut at `rate_after` so the
    /// uncapped part ends exactly there.
    pub fn next_piece(&self, remaining: u64) -> usize {
        let mut piece = self.piece as u64;
        if self.sent < self.rate_after {
            piece = piece.min(self.rate_after - self.sent);
        }
        usize::try_from(piece.min(remaining)).unwrap_or(self.piece)
    }

    /// Asks every cap for `bytes` at `now` (nanoseconds of the coarse clock): `Ok` when they
    /// may be sent now, or how long to wait before asking again.
    pub fn ask(&mut self, bytes: usize, now: u64) -> Result<(), Duration> {
        if self.sent < self.rate_after || !self.is_capped() {
            self.sent += bytes as u64;
            return Ok(());
        }
        let cost = bytes as u64;
        if !self.granted[0]
            && let Some((quota, state)) = &mut self.connection
        {
            wait_for(quota.check(state, now, cost))?;
        }
        self.granted[0] = true;
        if !self.granted[1]
            && let Some((gate, slot, route)) = self.client
        {
            wait_for(gate.check_bandwidth(slot, route, cost, now))?;
        }
        self.granted[1] = true;
        if !self.granted[2]
            && let Some(global) = self.global
        {
            wait_for(global.state.check(&global.quota, now, cost))?;
        }
        self.granted = [false; 3];
        self.sent += cost;
        Ok(())
    }
}

/// `Err(wait)` when a cap says "not yet". A piece is never larger than a cap's burst; a
/// denial that could never turn into an allowance is let through rather than waited on.
fn wait_for(decision: Decision) -> Result<(), Duration> {
    match decision {
        Decision::Deny {
            retry_after: Some(wait),
        } => Err(wait),
        Decision::Allow { .. } | Decision::Deny { retry_after: None } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const MS: u64 = 1_000_000;

    /// Sends `total` bytes through `pacer` on a fake clock; returns the seconds it took.
    fn run(pacer: &mut Pacer<'_>, total: u64) -> f64 {
        let mut now = 0u64;
        let mut sent = 0u64;
        while sent < total {
            let piece = pacer.next_piece(total - sent);
            loop {
                match pacer.ask(piece, now) {
                    Ok(()) => break,
                    Err(wait) => now += u64::try_from(wait.as_nanos()).unwrap(),
                }
            }
            sent += piece as u64;
        }
        now as f64 / 1e9
    }

    #[test]
    fn a_connection_cap_holds_within_a_piece() {
        let bandwidth = Bandwidth {
            per_connection: 4_000_000,
            ..Bandwidth::default()
        };
        let mut state = GcraState::default();
        let mut pacer = Pacer::new(&bandwidth, 64 * 1024, &mut state, None, None);
        assert_eq!(pacer.next_piece(u64::MAX), 64 * 1024);
        // 10 MB at 4 MB/s: 2.5 s, less the burst (the cap's largest piece, 1/32 s, and 1 ms).
        let seconds = run(&mut pacer, 10_000_000);
        assert!((2.465..=2.5).contains(&seconds), "{seconds}");
    }

    #[test]
    fn a_fast_cap_sends_small_pieces_one_at_a_time_at_its_exact_rate() {
        let rate = 100 * 1024 * 1024;
        let bandwidth = Bandwidth {
            per_connection: rate,
            ..Bandwidth::default()
        };
        let mut state = GcraState::default();
        // sendfile's pieces are 4 MiB; under a cap they are 256 KiB.
        let mut pacer = Pacer::new(&bandwidth, 4 * 1024 * 1024, &mut state, None, None);
        let piece = pacer.next_piece(u64::MAX);
        assert_eq!(piece, MAX_PIECE);
        assert_eq!(pacer.ask(piece, 0), Ok(()));
        let wait = pacer.ask(piece, 0).unwrap_err();
        assert!(
            wait > Duration::from_millis(1),
            "the second piece waits: {wait:?}"
        );
        // 1 GiB more at 100 MiB/s: 10.24 s, less the burst's 1 ms; not a whole nanosecond a
        // byte, which would be 6% fast.
        let seconds = run(&mut pacer, 1 << 30);
        assert!((10.238..=10.2401).contains(&seconds), "{seconds}");
    }

    #[test]
    fn rate_after_goes_out_first_and_low_caps_use_small_pieces() {
        let bandwidth = Bandwidth {
            per_connection: 80_000,
            rate_after: 1_000_000,
            ..Bandwidth::default()
        };
        let mut state = GcraState::default();
        let mut pacer = Pacer::new(&bandwidth, 64 * 1024, &mut state, None, None);
        let piece = pacer.next_piece(u64::MAX);
        assert_eq!(piece, 4096);
        let mut free = 0u64;
        while free < 1_000_000 {
            let piece = pacer.next_piece(u64::MAX);
            assert_eq!(pacer.ask(piece, 0), Ok(()));
            free += piece as u64;
        }
        assert_eq!(
            free, 1_000_000,
            "the uncapped part ends exactly at rate_after"
        );
        // Past rate_after the cap applies: 80 kB more (and the 4 KiB burst) take one second.
        let seconds = run(&mut pacer, 80_000 + 4096);
        assert!((0.99..=1.01).contains(&seconds), "{seconds}");
    }

    #[test]
    fn a_route_budget_is_shared_and_a_granted_cap_is_not_asked_twice() {
        let bandwidth = Bandwidth {
            per_connection: 10_000_000,
            global: 1_000_000,
            ..Bandwidth::default()
        };
        let (mut state_a, mut state_b) = (GcraState::default(), GcraState::default());
        let a = Pacer::new(&bandwidth, 64 * 1024, &mut state_a, None, None);
        let piece = a.next_piece(u64::MAX);
        assert_eq!(piece, 31_250, "a piece is 1/32 s of the tightest cap");
        let global = SharedRate::new(1_000_000, cap_burst(1_000_000)).unwrap();
        let mut a = Pacer::new(&bandwidth, 64 * 1024, &mut state_a, None, Some(&global));
        let mut b = Pacer::new(&bandwidth, 64 * 1024, &mut state_b, None, Some(&global));
        assert_eq!(a.ask(piece, 0), Ok(()));
        // The route's budget is spent: b waits, and its connection budget, granted, is kept.
        let wait = b.ask(piece, 0).unwrap_err();
        assert!(wait > Duration::from_millis(25), "{wait:?}");
        let later = u64::try_from(wait.as_nanos()).unwrap();
        assert_eq!(b.ask(piece, later), Ok(()));
        assert!(a.ask(piece, later + MS).is_err());
    }
}
