//! The per-client state every worker shares: concurrent connections, the connection rate,
//! bans, and any number of rate buckets (request and message quotas), exact across cores.
//!
//! A client's state is a handful of atomics behind an `Arc`. Looking a client up takes one
//! lock of one of [`SHARDS`] table shards, once per connection; after that a connection holds
//! its client's `Arc` and every check (a request, a WebSocket message) is a compare-and-swap on
//! one integer, with no lock and no cross-core traffic unless the same client is busy on two
//! cores at once. Each shard is a [`KeyedTable`]: bounded, least recently seen forgotten first,
//! and clients with open connections pinned so their counts survive. [`ranking`] finds the
//! busiest clients for reports.

mod ranking;
mod watch;

pub use ranking::{ClientRank, RateBudget, TopClients};
pub use watch::CountWatcher;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use crate::bans::{BanPolicy, BanState};
use crate::gcra::{AtomicGcraState, Decision, Gcra, LeaseTerms, Leased};
use crate::identity::ClientKey;
use crate::table::KeyedTable;
use watch::TableShared;

/// Shards of the client table: enough that two cores rarely wait on the same lock.
pub const SHARDS: usize = 64;

/// `Retry-After` for a client at its concurrent-connection cap: connections come and go.
const RETRY_CONCURRENT: Duration = Duration::from_secs(1);

/// Which protection refused (or, in shadow mode, would have refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `deny` (or an address outside `allow`).
    Denied,
    /// A ban from `ban_after_violations`.
    Banned,
    /// `max_connections`, server-wide.
    MaxConnections,
    /// `max_concurrent_connections`.
    ConcurrentConnections,
    /// `connections_per_minute`.
    ConnectionRate,
    /// `rate_limit_requests` + `burst`.
    RequestRate,
    /// `rate_limit`: WebSocket frames per second on one connection.
    FramesPerSecond,
    /// `messages_per_minute`: WebSocket frames per minute on one connection.
    FramesPerMinute,
    /// `bytes_per_minute`: WebSocket bytes per minute on one connection.
    BytesPerMinute,
    /// `client_messages_per_minute`, across a client's WebSocket connections.
    ClientMessageRate,
    /// `client_bytes_per_minute`, across a client's WebSocket connections.
    ClientByteRate,
}

impl Rule {
    /// Every rule, in the order metrics list them.
    pub const ALL: [Self; 11] = [
        Self::Denied,
        Self::Banned,
        Self::MaxConnections,
        Self::ConcurrentConnections,
        Self::ConnectionRate,
        Self::RequestRate,
        Self::FramesPerSecond,
        Self::FramesPerMinute,
        Self::BytesPerMinute,
        Self::ClientMessageRate,
        Self::ClientByteRate,
    ];

    /// The configuration key the rule is set with (also its name in logs and metrics).
    pub fn key(self) -> &'static str {
        match self {
            Self::Denied => "deny",
            Self::Banned => "ban",
            Self::MaxConnections => "max_connections",
            Self::ConcurrentConnections => "max_concurrent_connections",
            Self::ConnectionRate => "connections_per_minute",
            Self::RequestRate => "rate_limit_requests",
            Self::FramesPerSecond => "rate_limit",
            Self::FramesPerMinute => "messages_per_minute",
            Self::BytesPerMinute => "bytes_per_minute",
            Self::ClientMessageRate => "client_messages_per_minute",
            Self::ClientByteRate => "client_bytes_per_minute",
        }
    }

    /// Position in [`Self::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A refusal: the rule, what was seen against what is allowed, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// The rule that refused.
    pub rule: Rule,
    /// The value seen (connections open, cells asked for, seconds of ban left).
    pub observed: u64,
    /// The configured limit.
    pub limit: u64,
    /// When the same request would be allowed (`None`: not by waiting).
    pub retry_after: Option<Duration>,
}

/// The connection rules of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionPolicy {
    /// Open connections per client across all cores (0 = no cap).
    pub max_concurrent: u32,
    /// New connections per client (`None` = no rate).
    pub rate: Option<Gcra>,
    /// When violations turn into a ban (`None` = never).
    pub bans: Option<BanPolicy>,
}

/// One client's shared state.
#[derive(Debug)]
pub struct ClientState {
    connections: AtomicU32,
    connects: AtomicGcraState,
    ban: Mutex<BanState>,
    /// The first buckets, in the state's own allocation: a decision on a client that is not
    /// in the cache then misses once, not twice.
    inline: [AtomicGcraState; INLINE_BUCKETS],
    /// Buckets past the inline ones (routes with their own request budgets); usually empty,
    /// which allocates nothing. Grown when a reloaded configuration numbers more.
    extra: MoreBuckets,
}

/// Rate buckets past the inline ones: those the table numbered when the client was first
/// seen, then, if a later configuration numbers more, a further block allocated once, when
/// first asked for (so a client known before a reload is held to the rules it added).
#[derive(Debug, Default)]
struct MoreBuckets {
    buckets: Box<[AtomicGcraState]>,
    more: OnceLock<Box<MoreBuckets>>,
}

impl MoreBuckets {
    fn new(count: usize) -> Self {
        Self {
            buckets: (0..count).map(|_| AtomicGcraState::default()).collect(),
            more: OnceLock::new(),
        }
    }

    /// Bucket `index` of this block and those after it, if allocated.
    fn find(&self, mut index: usize) -> Option<&AtomicGcraState> {
        let mut block = self;
        loop {
            match block.buckets.get(index) {
                Some(bucket) => return Some(bucket),
                None => {
                    index -= block.buckets.len();
                    block = block.more.get()?;
                }
            }
        }
    }

    /// Bucket `index` of this block and those after it, allocated if it is past them.
    fn get(&self, mut index: usize) -> &AtomicGcraState {
        let mut block = self;
        loop {
            match block.buckets.get(index) {
                Some(bucket) => return bucket,
                None => {
                    index -= block.buckets.len();
                    block = block.more.get_or_init(|| Box::new(Self::new(index + 1)));
                }
            }
        }
    }
}

/// Rate buckets kept inline: the server's request budget and the WebSocket message and byte
/// budgets, plus one route with its own.
const INLINE_BUCKETS: usize = 4;

impl ClientState {
    fn new(buckets: usize) -> Self {
        Self {
            connections: AtomicU32::new(0),
            connects: AtomicGcraState::default(),
            ban: Mutex::new(BanState::default()),
            inline: Default::default(),
            extra: MoreBuckets::new(buckets.saturating_sub(INLINE_BUCKETS)),
        }
    }

    /// Connections the client has open now, across all cores.
    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Acquire)
    }

    /// Takes `cost` cells of `quota` from bucket `bucket` (numbered by the caller; a bucket
    /// past those the table was built with is allocated when first asked for).
    pub fn check(&self, bucket: usize, quota: &Gcra, now: u64, cost: u64) -> Decision {
        self.slot(bucket).check(quota, now, cost)
    }

    /// Takes `cost` cells from the lease bucket `bucket` holds (a rule the cluster shares).
    pub fn take_leased(&self, bucket: usize, cost: u64, terms: LeaseTerms) -> Leased {
        self.slot(bucket).take_leased(cost, terms)
    }

    /// Adds `cells` to the lease bucket `bucket` holds (negative: takes back cells).
    pub fn grant(&self, bucket: usize, cells: i64) {
        self.slot(bucket).grant(cells);
    }

    /// The balance of the lease bucket `bucket` holds (`None`: never leased).
    pub fn lease_balance(&self, bucket: usize) -> Option<i64> {
        self.bucket(bucket).and_then(AtomicGcraState::lease_balance)
    }

    fn slot(&self, bucket: usize) -> &AtomicGcraState {
        match bucket.checked_sub(INLINE_BUCKETS) {
            None => &self.inline[bucket],
            Some(extra) => self.extra.get(extra),
        }
    }

    /// Cells of `quota` in use in bucket `bucket` at `now` (0 for an unknown bucket).
    pub fn used(&self, bucket: usize, quota: &Gcra, now: u64) -> u64 {
        self.bucket(bucket)
            .map_or(0, |state| state.used(quota, now))
    }

    /// Bucket `bucket` if it exists (none is allocated here).
    fn bucket(&self, bucket: usize) -> Option<&AtomicGcraState> {
        match bucket.checked_sub(INLINE_BUCKETS) {
            None => self.inline.get(bucket),
            Some(extra) => self.extra.find(extra),
        }
    }

    /// The time left on the client's ban at `now`, if banned.
    pub fn banned_for(&self, now: u64) -> Option<Duration> {
        self.ban_state().banned_for(now).map(Duration::from_nanos)
    }

    /// Records a violation; returns the ban's length when this one starts a ban.
    pub fn record_violation(&self, policy: &BanPolicy, now: u64) -> Option<Duration> {
        self.ban_state()
            .record_violation(policy, now)
            .map(Duration::from_nanos)
    }

    /// Bans the client for `duration` from `now` (a ban another node decided), unless a
    /// longer one already runs.
    pub fn impose_ban(&self, now: u64, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.ban_state().impose(now, nanos);
    }

    /// Counts a new connection and checks it against `policy`, with `elsewhere` more
    /// connections of the client open on other nodes. The pass is returned either way, so
    /// that a rule in shadow mode still counts the connection; to refuse, drop it.
    fn admit_connection(
        self: &Arc<Self>,
        key: ClientKey,
        policy: &ConnectionPolicy,
        now: u64,
        elsewhere: u32,
        table: &Arc<TableShared>,
    ) -> (ConnectionPass, Option<Denial>) {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        table.opened(key, self, before);
        let open = before.saturating_add(1).saturating_add(elsewhere);
        let pass = ConnectionPass {
            client: Arc::clone(self),
            table: Arc::clone(table),
        };
        if let Some(left) = self.banned_for(now) {
            let denial = Denial {
                rule: Rule::Banned,
                observed: left.as_secs(),
                limit: policy.bans.map_or(0, |b| u64::from(b.after_violations)),
                retry_after: Some(left),
            };
            return (pass, Some(denial));
        }
        if policy.max_concurrent > 0 && open > policy.max_concurrent {
            let denial = Denial {
                rule: Rule::ConcurrentConnections,
                observed: u64::from(open),
                limit: u64::from(policy.max_concurrent),
                retry_after: Some(RETRY_CONCURRENT),
            };
            return (pass, Some(denial));
        }
        if let Some(rate) = &policy.rate
            && let Decision::Deny { retry_after } = self.connects.check(rate, now, 1)
        {
            let denial = Denial {
                rule: Rule::ConnectionRate,
                observed: rate.burst() + 1,
                limit: rate.burst(),
                retry_after,
            };
            return (pass, Some(denial));
        }
        (pass, None)
    }

    fn ban_state(&self) -> MutexGuard<'_, BanState> {
        self.ban.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One open connection of a client: holds its place in the client's count until dropped, so
/// the count is right on every path a connection can end by.
#[derive(Debug)]
pub struct ConnectionPass {
    client: Arc<ClientState>,
    table: Arc<TableShared>,
}

impl ConnectionPass {
    /// The client this connection belongs to.
    pub fn client(&self) -> &Arc<ClientState> {
        &self.client
    }
}

impl Drop for ConnectionPass {
    fn drop(&mut self) {
        let before = self.client.connections.fetch_sub(1, Ordering::AcqRel);
        self.table.closed(&self.client, before);
    }
}

type Shard = KeyedTable<ClientKey, Arc<ClientState>>;

/// Every client's state, shared by all workers, bounded in count.
#[derive(Debug)]
pub struct ClientTable {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Rate buckets a client's state is created with.
    buckets: AtomicUsize,
    /// The connected clients' count and the count watcher, shared with every pass.
    shared: Arc<TableShared>,
}

/// A client with a connection open (someone else holds its `Arc`) must not be forgotten.
fn has_connections(state: &Arc<ClientState>) -> bool {
    Arc::strong_count(state) > 1
}

impl ClientTable {
    /// A table of about `max_clients` clients (split over the shards) that forgets a client
    /// unseen for `idle_ns`, each with `buckets` rate buckets.
    pub fn new(max_clients: usize, idle_ns: u64, buckets: usize) -> Self {
        let per_shard = max_clients.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(KeyedTable::new(per_shard, idle_ns)))
                .collect(),
            hasher: RandomState::new(),
            buckets: AtomicUsize::new(buckets),
            shared: Arc::default(),
        }
    }

    /// The state of client `key`, created if new; marks it seen at `now`.
    pub fn client(&self, key: ClientKey, now: u64) -> Arc<ClientState> {
        let buckets = self.buckets.load(Ordering::Relaxed);
        let mut shard = self.shard(&key);
        let state = shard.entry_with(
            key,
            now,
            || Arc::new(ClientState::new(buckets)),
            has_connections,
        );
        Arc::clone(state)
    }

    /// Creates the clients first seen from now on with at least `buckets` rate buckets (those
    /// seen before get theirs when first asked for).
    pub fn reserve_buckets(&self, buckets: usize) {
        self.buckets.fetch_max(buckets, Ordering::Relaxed);
    }

    /// Counts a new connection of `client` (kept under `key`) and checks it against `policy`, with `elsewhere`
    /// more connections of the client open on other nodes (0 on a server of its own). The
    /// pass is returned either way, so that a rule in shadow mode still counts the
    /// connection; to refuse, drop the pass.
    pub fn admit_connection(
        &self,
        key: ClientKey,
        client: &Arc<ClientState>,
        policy: &ConnectionPolicy,
        now: u64,
        elsewhere: u32,
    ) -> (ConnectionPass, Option<Denial>) {
        client.admit_connection(key, policy, now, elsewhere, &self.shared)
    }

    /// Tells `watcher` of every change of a client's connection count from now on. A table
    /// has one watcher at most: `false` when one was set before (this one is not).
    pub fn watch_counts(&self, watcher: Arc<dyn CountWatcher>) -> bool {
        self.shared.watch(watcher)
    }

    /// Clients with at least one connection open, across all workers.
    pub fn connected_clients(&self) -> usize {
        self.shared.connected_clients()
    }

    /// Clients tracked now (connected or remembered for their rates and bans).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clients forgotten because the table was full.
    pub fn evictions(&self) -> u64 {
        self.shards.iter().map(|s| lock(s).evictions()).sum()
    }

    /// Drops clients idle past the idle time from every shard (at most `budget` per shard),
    /// keeping those with connections; returns how many were dropped. Lookups also drop a few
    /// as they go; this keeps a quiet table from holding memory.
    pub fn sweep(&self, now: u64, budget: usize) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).drop_idle_with(now, budget, has_connections))
            .sum()
    }

    fn shard(&self, key: &ClientKey) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn key(n: u32) -> ClientKey {
        ClientKey::V4(n)
    }

    #[test]
    fn concurrent_connections_are_counted_exactly_across_threads() {
        let table = ClientTable::new(1000, 60 * SECOND, 0);
        let policy = ConnectionPolicy {
            max_concurrent: 10,
            ..ConnectionPolicy::default()
        };
        let passes = Mutex::new(Vec::new());
        let denied = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        let client = table.client(key(7), SECOND);
                        match table.admit_connection(key(7), &client, &policy, SECOND, 0) {
                            (pass, None) => passes.lock().unwrap().push(pass),
                            (_, Some(denial)) => {
                                assert_eq!(denial.rule, Rule::ConcurrentConnections);
                                denied.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(passes.lock().unwrap().len(), 10);
        assert_eq!(denied.load(Ordering::Relaxed), 90);
        let client = table.client(key(7), SECOND);
        assert_eq!(client.connections(), 10);
        passes.lock().unwrap().clear();
        assert_eq!(client.connections(), 0);
    }

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<(Option<ClientKey>, u32)>>);

    impl CountWatcher for Seen {
        fn opened(&self, key: ClientKey, client: &Arc<ClientState>) {
            self.0
                .lock()
                .unwrap()
                .push((Some(key), client.connections()));
        }

        fn closed(&self, client: &Arc<ClientState>) {
            self.0.lock().unwrap().push((None, client.connections()));
        }
    }

    #[test]
    fn connections_elsewhere_count_against_the_cap_and_every_change_is_watched() {
        let table = ClientTable::new(1000, 60 * SECOND, 0);
        let seen = Arc::new(Seen::default());
        assert!(table.watch_counts(Arc::clone(&seen) as Arc<dyn CountWatcher>));
        assert!(!table.watch_counts(Arc::new(Seen::default())));
        let policy = ConnectionPolicy {
            max_concurrent: 3,
            ..ConnectionPolicy::default()
        };
        let client = table.client(key(9), 0);
        let (first, denial) = table.admit_connection(key(9), &client, &policy, 0, 2);
        assert!(denial.is_none(), "1 here + 2 elsewhere = 3: at the cap");
        let (refused, denial) = table.admit_connection(key(9), &client, &policy, 0, 2);
        let denial = denial.unwrap();
        assert_eq!(
            (denial.rule, denial.observed),
            (Rule::ConcurrentConnections, 4)
        );
        drop(refused);
        drop(first);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [(Some(key(9)), 1), (Some(key(9)), 2), (None, 1), (None, 0)]
        );
        client.impose_ban(SECOND, Duration::from_secs(5));
        assert_eq!(client.banned_for(2 * SECOND), Some(Duration::from_secs(4)));
    }

    #[test]
    fn connection_rate_and_bans() {
        let table = ClientTable::new(1000, 600 * SECOND, 0);
        let policy = ConnectionPolicy {
            max_concurrent: 0,
            rate: Gcra::new(2, Duration::from_secs(60), 2),
            bans: Some(BanPolicy {
                after_violations: 2,
                window_ns: 60 * SECOND,
                duration_ns: 300 * SECOND,
            }),
        };
        let client = table.client(key(1), 0);
        assert!(
            table
                .admit_connection(key(1), &client, &policy, 0, 0)
                .1
                .is_none()
        );
        assert!(
            table
                .admit_connection(key(1), &client, &policy, 0, 0)
                .1
                .is_none()
        );
        let (_, denial) = table.admit_connection(key(1), &client, &policy, 0, 0);
        let denial = denial.unwrap();
        assert_eq!(denial.rule, Rule::ConnectionRate);
        assert_eq!(denial.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(client.record_violation(&policy.bans.unwrap(), 0), None);
        assert_eq!(
            client.record_violation(&policy.bans.unwrap(), SECOND),
            Some(Duration::from_secs(300))
        );
        let (_, denial) = table.admit_connection(key(1), &client, &policy, 2 * SECOND, 0);
        assert_eq!(denial.unwrap().rule, Rule::Banned);
        assert_eq!(
            client.banned_for(2 * SECOND),
            Some(Duration::from_secs(299))
        );
        assert!(client.banned_for(301 * SECOND).is_none());
    }

    #[test]
    fn clients_with_connections_survive_a_flood_of_new_keys() {
        let table = ClientTable::new(SHARDS, SECOND, 1);
        let policy = ConnectionPolicy::default();
        let kept = table.client(key(0), 0);
        let (pass, _) = table.admit_connection(key(0), &kept, &policy, 0, 0);
        assert_eq!(table.connected_clients(), 1);
        drop(kept);
        for n in 1..10_000 {
            table.client(key(n), u64::from(n));
        }
        assert!(table.len() <= 2 * SHARDS, "bounded: {}", table.len());
        assert!(table.evictions() > 9_000);
        let again = table.client(key(0), 20_000);
        assert_eq!(
            again.connections(),
            1,
            "the open connection is still counted"
        );
        drop(pass);
        assert_eq!(again.connections(), 0);
        assert_eq!(table.connected_clients(), 0);
    }

    #[test]
    fn buckets_are_shared_by_every_holder_of_the_client() {
        let table = ClientTable::new(100, 60 * SECOND, 2);
        let quota = Gcra::new(3, Duration::from_secs(60), 3).unwrap();
        let a = table.client(key(9), 0);
        let b = table.client(key(9), 0);
        assert!(a.check(0, &quota, 0, 1).is_allowed());
        assert!(b.check(0, &quota, 0, 2).is_allowed());
        assert!(!a.check(0, &quota, 0, 1).is_allowed());
        assert!(
            b.check(1, &quota, 0, 3).is_allowed(),
            "bucket 1 is separate"
        );
        assert!(
            a.check(5, &quota, 0, 3).is_allowed(),
            "a bucket numbered later"
        );
        assert!(
            !b.check(5, &quota, 0, 1).is_allowed(),
            "is shared and limited too"
        );
    }

    #[test]
    fn buckets_past_the_inline_ones_are_limited_too() {
        let table = ClientTable::new(100, 60 * SECOND, INLINE_BUCKETS + 2);
        let quota = Gcra::new(1, Duration::from_secs(60), 1).unwrap();
        let a = table.client(key(9), 0);
        let b = table.client(key(9), 0);
        for bucket in 0..INLINE_BUCKETS + 2 {
            assert!(a.check(bucket, &quota, 0, 1).is_allowed(), "{bucket}");
            assert!(!b.check(bucket, &quota, 0, 1).is_allowed(), "{bucket}");
        }
        // Buckets numbered after the client was first seen (a reload) are added, twice over.
        for bucket in [INLINE_BUCKETS + 2, INLINE_BUCKETS + 3, INLINE_BUCKETS + 9] {
            assert!(a.check(bucket, &quota, 0, 1).is_allowed(), "{bucket}");
            assert!(!b.check(bucket, &quota, 0, 1).is_allowed(), "{bucket}");
        }
        assert!(!a.check(INLINE_BUCKETS + 2, &quota, 0, 1).is_allowed());
    }

    #[test]
    fn idle_clients_are_swept_unless_connected() {
        let table = ClientTable::new(1000, 10 * SECOND, 0);
        let policy = ConnectionPolicy::default();
        let (pass, _) = table.admit_connection(key(1), &table.client(key(1), 0), &policy, 0, 0);
        table.client(key(2), 0);
        assert_eq!(table.sweep(20 * SECOND, usize::MAX), 1);
        assert_eq!(table.len(), 1);
        assert_eq!(table.connected_clients(), 1);
        drop(pass);
        assert_eq!(table.sweep(40 * SECOND, usize::MAX), 1);
        assert!(table.is_empty());
    }
}
