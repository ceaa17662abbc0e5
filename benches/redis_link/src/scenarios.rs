//! The workloads, run on the worker thread's compio runtime against either kind of link. Each
//! runs a short warm-up, then reads the CPU counters, runs the measured window, waits for every
//! reply of the window, and reads the counters again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::try_join_all;

use crate::cpu::{Snapshot, Usage};
use crate::link::{Link, LinkError, Message, MessageSource, consume};

/// Untimed traffic before each measured window.
pub const WARMUP: Duration = Duration::from_millis(300);

/// Pacing period of the fixed-rate publisher: one batch per tick.
const TICK: Duration = Duration::from_millis(1);

/// Longest wait for the replies still outstanding at the end of a window.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Node number written into published messages.
const NODE: u8 = 1;

/// How PUBLISH commands are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// This many per second, issued in batches every [`TICK`].
    Rate(u64),
    /// As fast as the link accepts them, with its bounded number in flight.
    Saturate,
}

/// What one measured window produced.
#[derive(Debug, Clone)]
pub struct Window {
    pub usage: Usage,
    /// Operations completed in the window (messages published or received, leases renewed).
    pub ops: u64,
    /// Per-operation latency in ns (lease renewals only).
    pub latencies_ns: Vec<u64>,
    /// Error replies, or refused leases, or messages lost, in the window.
    pub failures: u64,
}

/// Publishes for `duration` in `mode`.
pub async fn measure_publish<L: Link>(
    link: &L,
    mode: SendMode,
    duration: Duration,
    redis_pid: u32,
) -> Result<Window, LinkError> {
    let mut seq = 0;
    publish_for(link, mode, WARMUP, &mut seq).await?;
    drain(link, seq).await?;
    let before = Snapshot::take(redis_pid, &[])?;
    let (first, errors) = (seq, link.publish_errors());
    publish_for(link, mode, duration, &mut seq).await?;
    drain(link, seq).await?;
    let after = Snapshot::take(redis_pid, &[])?;
    Ok(Window {
        usage: before.usage_until(&after),
        ops: seq - first,
        latencies_ns: Vec::new(),
        failures: link.publish_errors() - errors,
    })
}

async fn publish_for<L: Link>(
    link: &L,
    mode: SendMode,
    duration: Duration,
    seq: &mut u64,
) -> Result<(), LinkError> {
    match mode {
        SendMode::Rate(rate) => {
            let count = (u128::from(rate) * duration.as_nanos() / 1_000_000_000) as u64;
            publish_at_rate(link, rate, count, seq).await
        }
        SendMode::Saturate => {
            let end = Instant::now() + duration;
            while Instant::now() < end {
                for _ in 0..64 {
                    link.publish(&Message::new(NODE, *seq)).await?;
                    *seq += 1;
                }
            }
            Ok(())
        }
    }
}

/// Publishes `count` messages at `rate` per second: every [`TICK`], the messages due by then,
/// each with `try_publish`. A full link leaves the rest due until the next tick.
pub async fn publish_at_rate<L: Link>(
    link: &L,
    rate: u64,
    count: u64,
    seq: &mut u64,
) -> Result<(), LinkError> {
    let first = *seq;
    let start = Instant::now();
    let mut ticks = compio::time::interval(TICK);
    while *seq - first < count {
        ticks.tick().await;
        let due = (u128::from(rate) * start.elapsed().as_nanos() / 1_000_000_000) as u64;
        while *seq - first < due.min(count) {
            match link.try_publish(&Message::new(NODE, *seq)) {
                Ok(()) => *seq += 1,
                Err(LinkError::Full) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Waits until every PUBLISH sent on `link` (`sent` in all) has been answered.
pub async fn drain<L: Link>(link: &L, sent: u64) -> Result<(), LinkError> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while link.publishes_answered() < sent {
        if Instant::now() > deadline {
            return Err(LinkError::Timeout);
        }
        compio::time::sleep(Duration::from_micros(250)).await;
    }
    Ok(())
}

/// Receives `warmup + count` messages; the window covers the last `count`. `helpers` are the
/// processes sending them (their CPU is counted apart).
pub async fn measure_receive<S: MessageSource>(
    source: &mut S,
    warmup: u64,
    count: u64,
    redis_pid: u32,
    helpers: &[u32],
) -> Result<Window, LinkError> {
    let mut batch: Vec<Bytes> = Vec::with_capacity(1024);
    let mut received = 0;
    let mut checksum = 0u64;
    let mut before = if warmup == 0 {
        Some(Snapshot::take(redis_pid, helpers)?)
    } else {
        None
    };
    while received < warmup + count {
        source.next_batch(&mut batch).await?;
        for payload in batch.drain(..) {
            checksum = checksum.wrapping_add(consume(&payload));
            received += 1;
            if received == warmup {
                before = Some(Snapshot::take(redis_pid, helpers)?);
            }
        }
    }
    let after = Snapshot::take(redis_pid, helpers)?;
    let before = before.ok_or(LinkError::Protocol("no warm-up snapshot".into()))?;
    // Every message is PAYLOAD_LEN bytes plus a hex digit: a checksum below that bound means
    // some payloads were cut short.
    if checksum < received * crate::link::PAYLOAD_LEN as u64 {
        return Err(LinkError::Protocol("short payloads received".into()));
    }
    Ok(Window {
        usage: before.usage_until(&after),
        ops: received - warmup,
        latencies_ns: Vec::new(),
        failures: 0,
    })
}

/// Renews leases for `duration` from `concurrency` callers, each awaiting its reply before
/// the next call.
pub async fn measure_lease<L: Link>(
    link: &L,
    concurrency: usize,
    duration: Duration,
    redis_pid: u32,
) -> Result<Window, LinkError> {
    renew_leases(link, concurrency, WARMUP).await?;
    let before = Snapshot::take(redis_pid, &[])?;
    let (latencies_ns, refused) = renew_leases(link, concurrency, duration).await?;
    let after = Snapshot::take(redis_pid, &[])?;
    Ok(Window {
        usage: before.usage_until(&after),
        ops: latencies_ns.len() as u64,
        latencies_ns,
        failures: refused,
    })
}

async fn renew_leases<L: Link>(
    link: &L,
    concurrency: usize,
    duration: Duration,
) -> Result<(Vec<u64>, u64), LinkError> {
    let end = Instant::now() + duration;
    let callers = (0..concurrency).map(|caller| async move {
        let key = format!("ringstream:lease:bench:{caller}");
        let mut latencies = Vec::with_capacity(1 << 16);
        let mut refused = 0;
        while Instant::now() < end {
            let start = Instant::now();
            let reply = link.renew_lease(&key).await?;
            latencies.push(start.elapsed().as_nanos() as u64);
            if !reply.granted {
                refused += 1;
            }
        }
        Ok::<_, LinkError>((latencies, refused))
    });
    let results = try_join_all(callers).await?;
    let refused = results.iter().map(|(_, r)| r).sum();
    Ok((results.into_iter().flat_map(|(l, _)| l).collect(), refused))
}
