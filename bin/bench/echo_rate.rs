//! The `echo --rate` load: open loop. Each connection sends its share of a fixed offered rate
//! on a schedule of its own (the connections' schedules staggered evenly), whatever the
//! echoes do; a reader checks every echo and times it from the message's scheduled send time,
//! so a server (or a client) that falls behind shows as latency, not as a lower rate that
//! hides it (no coordinated omission).
//!
//! A sender that falls behind its schedule sends the late messages at once, back to back.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use compio::BufResult;
use compio::io::AsyncWriteExt;
use futures_util::future::select;

use super::Phase;
use super::stats::Stats;
use super::ws::{Client, Payload, Target, client_frame, stamp_counter};

/// How long a connection waits, once the run ends, for the echoes still in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// One connection's schedule: a message every `interval`, the first `offset` after the
/// connection is open.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// From the connection's upgrade to its first message.
    pub offset: Duration,
    /// Time between two of this connection's messages.
    pub interval: Duration,
}

impl Schedule {
    /// Connection `index` of `connections` sharing `rate` messages per second.
    pub fn new(rate: f64, connections: usize, index: usize) -> Self {
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        Self {
            offset: interval.mul_f64(index as f64 / connections as f64),
            interval,
        }
    }
}

/// One connection of the open-loop echo: `size`-byte messages on `schedule`, each echo
/// compared with what was sent, byte for byte and frame type.
pub async fn echo_at_rate(
    target: Target,
    size: usize,
    payload: Payload,
    schedule: Schedule,
    phase: Rc<Cell<Phase>>,
    stats: Rc<RefCell<Stats>>,
) {
    let mut client = match Client::open(&target).await {
        Ok(client) => client,
        Err(e) => return stats.borrow_mut().error(format!("connect: {e}")),
    };
    let (reading, writer) = client.stream.into_split();
    client.stream = reading;
    // The scheduled send times of the messages in flight, oldest first.
    let in_flight: RefCell<VecDeque<Instant>> = RefCell::new(VecDeque::new());
    let send = async {
        // Built once; per message only the counter bytes change.
        let mut frame = client_frame(payload, size, 0);
        let mut due = Instant::now() + schedule.offset;
        let mut n: u64 = 0;
        while phase.get() != Phase::Done {
            compio::time::sleep_until(due).await;
            let at = frame.len() - size;
            stamp_counter(payload, n, &mut frame[at..]);
            in_flight.borrow_mut().push_back(due);
            let BufResult(result, returned) = (&writer).write_all(frame).await;
            frame = returned;
            if let Err(e) = result {
                return stats.borrow_mut().error(format!("write: {e}"));
            }
            n += 1;
            due += schedule.interval;
        }
        let deadline = Instant::now() + DRAIN;
        while !in_flight.borrow().is_empty() && Instant::now() < deadline {
            compio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let receive = async {
        let mut expected = vec![0u8; size];
        let mut n: u64 = 0;
        loop {
            if let Err(e) = client.read_echo(payload, n, &mut expected).await {
                return stats.borrow_mut().error(e);
            }
            let Some(due) = in_flight.borrow_mut().pop_front() else {
                return stats
                    .borrow_mut()
                    .error(format!("an echo of message {n} before it was sent"));
            };
            n += 1;
            if phase.get() == Phase::Measure {
                stats.borrow_mut().record(due.elapsed());
            }
        }
    };
    // The sender ends the connection (after the drain); a reader's error ends it too.
    select(pin!(send), pin!(receive)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_share_the_rate_and_are_staggered_evenly() {
        for i in 0..4 {
            let schedule = Schedule::new(1000.0, 4, i);
            assert_eq!(schedule.interval, Duration::from_millis(4));
            assert_eq!(schedule.offset, Duration::from_millis(i as u64));
        }
    }
}
