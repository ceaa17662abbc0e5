//! Per-client rates across nodes: the link's book of leases, and the script that grants them.
//!
//! A shared rule's bucket holds a lease (`ringstream_limits::gcra::Leased`): workers decide
//! from it and ask for more through [`super::Cluster::renew`]. The link keeps one entry per
//! client and bucket that asked, takes cells from the client's GCRA state in Redis with
//! [`LEASE_SCRIPT`] (Redis's own clock: nodes' clocks never meet), adds what it got to the
//! bucket, and asks again after the wait Redis answered while the lease is short. While Redis
//! is away it tops each lease up at the rate divided by the nodes it last knew, which is the
//! `local` policy for rates.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ringstream_limits::client_table::ClientState;
use ringstream_limits::gcra::Gcra;
use ringstream_limits::identity::ClientKey;

use super::wire;

/// Takes up to ARGV[4] cells of a GCRA quota of ARGV[1] cells per ARGV[2] µs (tolerance
/// ARGV[3] µs) from the state in KEYS[1], at Redis's time; answers the cells taken and, when
/// fewer than asked, the microseconds until the rest would be there (asking again sooner would
/// get a cell or two per call). The rate is given as a fraction, not a whole number of
/// microseconds a cell: a byte rate of 100 MiB a minute is 0.57 µs a byte. The state is kept
/// in whole microseconds, rounded up, so a grant never runs ahead of the rate.
pub const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local tau = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local cells = math.floor((now + tau - tat) / interval)
if cells > want then cells = want end
if cells < 0 then cells = 0 end
tat = math.ceil(tat + cells * interval)
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
local wait = 0
if cells < want then wait = math.ceil(tat + (want - cells) * interval - now - tau) end
if wait < 0 then wait = 0 end
return {cells, wait}
";

/// A worker's request for more of a lease.
#[derive(Debug)]
pub struct Renewal {
    /// The client.
    pub client: Arc<ClientState>,
    /// The bucket holding the lease.
    pub bucket: usize,
    /// The rule's name, the same on every node (`requests`, `requests:/api/`, ...).
    pub rule: Arc<str>,
    /// The rule's quota.
    pub quota: Gcra,
    /// Cells wanted.
    pub want: u64,
}

/// Shortest wait before asking again after Redis granted too little.
const MIN_RETRY: Duration = Duration::from_millis(10);
/// An entry nobody asked about for this long is dropped, wanting or not (its lease stays in
/// the bucket; the client's next renewal files it again).
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    client: Weak<ClientState>,
    key: ClientKey,
    bucket: usize,
    rule: Arc<str>,
    quota: Gcra,
    /// Cells still wanted (0: satisfied).
    want: u64,
    retry_at: Instant,
    touched: Instant,
    /// Time earned towards the next cell while Redis is away, in nanoseconds.
    credit_ns: u64,
}

/// One ask for Redis: the entry, its key and the script's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The entry's id in the book.
    pub id: (usize, usize),
    /// `ringstream:rate:RULE:CLIENT`.
    pub key: String,
    /// Cells per period, the period and the tolerance in µs, and cells wanted: the script's
    /// arguments.
    pub args: [u64; 4],
}

/// The leases the link looks after.
#[derive(Debug, Default)]
pub struct LeaseBook {
    entries: HashMap<(usize, usize), Entry>,
}

impl LeaseBook {
    /// Records `renewal` of the client kept under `key`, at `now`.
    pub fn ask(&mut self, renewal: Renewal, key: ClientKey, now: Instant) {
        let id = (Arc::as_ptr(&renewal.client) as usize, renewal.bucket);
        let entry = self.entries.entry(id).or_insert_with(|| Entry {
            client: Arc::downgrade(&renewal.client),
            key,
            bucket: renewal.bucket,
            rule: Arc::clone(&renewal.rule),
            quota: renewal.quota,
            want: 0,
            retry_at: now,
            touched: now,
            credit_ns: 0,
        });
        entry.want = entry.want.max(renewal.want);
        entry.touched = now;
    }

    /// The asks due at `now`.
    pub fn due(&self, now: Instant) -> Vec<Ask> {
        self.entries
            .iter()
            .filter(|(_, e)| e.want > 0 && e.retry_at <= now)
            .map(|(&id, e)| {
                let (count, period_ns) = e.quota.rate();
                let tau_us = e.quota.time_of(e.quota.burst()).div_ceil(1_000);
                Ask {
                    id,
                    key: format!(
                        "{}rate:{}:{}",
                        wire::PREFIX,
                        e.rule,
                        wire::client_text(e.key)
                    ),
                    args: [count, (period_ns / 1_000).max(1), tau_us, e.want],
                }
            })
            .collect()
    }

    /// Redis granted `cells` to entry `id` and, when short, said the next cell comes in
    /// `wait_us`.
    pub fn granted(&mut self, id: (usize, usize), cells: u64, wait_us: u64, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(client) = entry.client.upgrade() else {
            self.entries.remove(&id);
            return;
        };
        client.grant(entry.bucket, i64::try_from(cells).unwrap_or(i64::MAX));
        entry.want = entry.want.saturating_sub(cells);
        entry.retry_at = now + Duration::from_micros(wait_us).max(MIN_RETRY);
    }

    /// Redis is away: each lease gets the cells its rate divided by `nodes` earned since it was
    /// last topped up (up to its share of the burst), and nothing is owed to Redis for them.
    pub fn top_up_alone(&mut self, nodes: u32, since: Duration) {
        let nodes = u64::from(nodes.max(1));
        for entry in self.entries.values_mut() {
            let Some(client) = entry.client.upgrade() else {
                continue;
            };
            let per_cell = entry
                .quota
                .emission_interval_ns()
                .max(1)
                .saturating_mul(nodes);
            let since_ns = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
            entry.credit_ns = entry.credit_ns.saturating_add(since_ns);
            let earned = entry.credit_ns / per_cell;
            entry.credit_ns %= per_cell;
            let cap = (entry.quota.burst() / nodes).max(1);
            let balance = client.lease_balance(entry.bucket).unwrap_or(0);
            let room = i64::try_from(cap)
                .unwrap_or(i64::MAX)
                .saturating_sub(balance);
            let add = i64::try_from(earned).unwrap_or(i64::MAX).min(room);
            if add > 0 {
                client.grant(entry.bucket, add);
            }
        }
    }

    /// Drops entries whose client is gone or that nobody asked about for a while.
    pub fn sweep(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| e.client.strong_count() > 0 && now.duration_since(e.touched) < IDLE);
    }

    /// Entries kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use ringstream_limits::client_table::{ClientTable, ConnectionPolicy};
    use ringstream_limits::gcra::{LeaseTerms, Leased};

    #[test]
    fn grants_repay_the_debt_and_short_ones_are_asked_again_after_the_wait() {
        let table = ClientTable::new(10, 1_000_000_000, 1);
        let key = ClientKey::V4(1);
        let client = table.client(key, 0);
        let pass = table.admit_connection(key, &client, &ConnectionPolicy::default(), 0, 0);
        let terms = LeaseTerms {
            chunk: 4,
            interval_ns: 1_000_000_000,
        };
        assert!(matches!(
            client.take_leased(0, 1, terms),
            Leased::Allow { renew: Some(5), .. }
        ));
        let mut book = LeaseBook::default();
        let now = Instant::now();
        let renewal = Renewal {
            client: Arc::clone(&client),
            bucket: 0,
            rule: "requests".into(),
            quota: Gcra::new(60, Duration::from_secs(60), 10).unwrap(),
            want: 4,
        };
        book.ask(renewal, key, now);
        let asks = book.due(now);
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].key, "ringstream:rate:requests:4.1");
        assert_eq!(asks[0].args, [60, 60_000_000, 10_000_000, 4]);
        // A byte rate of 100 MiB a minute is 0.57 µs a byte: Redis is given the fraction, not
        // a whole number of microseconds a byte (which would be 1 µs, 57% of the rate).
        let bytes = Gcra::new(100 << 20, Duration::from_secs(60), 1 << 20).unwrap();
        let mut book_of_bytes = LeaseBook::default();
        let renewal = Renewal {
            client: Arc::clone(&client),
            bucket: 1,
            rule: "bytes".into(),
            quota: bytes,
            want: 65_536,
        };
        book_of_bytes.ask(renewal, key, now);
        // The tolerance: 1 MiB's time, 0.6 s, in µs.
        assert_eq!(
            book_of_bytes.due(now)[0].args,
            [100 << 20, 60_000_000, 600_000, 65_536]
        );
        book.granted(asks[0].id, 2, 1_000_000, now);
        assert_eq!(
            client.lease_balance(0),
            Some(1),
            "a debt of 1, then 2 granted"
        );
        assert!(book.due(now).is_empty(), "asked again after the wait");
        let later = now + Duration::from_secs(1);
        assert_eq!(book.due(later)[0].args[3], 2);
        book.top_up_alone(2, Duration::from_secs(3));
        assert_eq!(
            client.lease_balance(0),
            Some(2),
            "1 earned at half the rate"
        );
        book.top_up_alone(2, Duration::from_secs(1));
        assert_eq!(client.lease_balance(0), Some(3), "the odd second is kept");
        drop((pass, client));
        book.sweep(later);
        assert_eq!(book.len(), 1, "the table still knows the client");
        book.sweep(now + IDLE);
        assert_eq!(book.len(), 0, "nobody asked for a minute");
    }
}
