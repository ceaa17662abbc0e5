//! The cost of one rate-limit decision: ringstream's shared client table against the
//! `governor` crate's keyed limiter, on the same quota, for one hot key and for 1 000 000 keys.
//!
//! - `ringstream_held`: what every request and WebSocket frame pays: the connection already
//!   holds its client's state, so the decision is one compare-and-swap (with 1M keys, on a
//!   state that is not in the cache).
//! - `ringstream_lookup`: what a new connection pays: a shard lock, a table lookup (LRU touch)
//!   and the decision.
//! - `ringstream_leased`: the same held decision on a rule a cluster shares (`[cluster]`):
//!   taken from the lease the bucket holds (one compare-and-swap) instead of its GCRA state.
//! - `governor`: `check_key` on a `DashMap`-backed keyed limiter (a lookup and a
//!   compare-and-swap per decision).
//!
//! Both read the clock per decision: governor its quanta (TSC) clock, ringstream the coarse
//! monotonic clock the engine decides on.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use ringstream_engine::coarse_clock;
use ringstream_limits::client_table::ClientTable;
use ringstream_limits::clock::nanos;
use ringstream_limits::gcra::{Gcra, LeaseTerms};
use ringstream_limits::identity::ClientKey;

/// A quota no decision here exhausts, so every decision takes the "allowed" path.
const PER_MINUTE: u32 = 1_000_000_000;
const KEYS: u32 = 1 << 20;

/// The `i`-th key of a scrambled walk over all keys (an odd multiplier visits each once).
fn scrambled(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761) % KEYS
}

fn decisions(c: &mut Criterion) {
    let per_minute = NonZeroU32::new(PER_MINUTE).unwrap_or(NonZeroU32::MIN);
    let quota = Gcra::new(
        u64::from(PER_MINUTE),
        Duration::from_secs(60),
        u64::from(PER_MINUTE),
    );
    let Some(quota) = quota else {
        return;
    };
    let table = ClientTable::new(KEYS as usize * 2, nanos(Duration::from_secs(3600)), 1);
    let governor = RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(per_minute));

    let mut group = c.benchmark_group("decision_hot_key");
    let held = table.client(ClientKey::V4(7), 0);
    group.bench_function("ringstream_held", |b| {
        b.iter(|| {
            let now = coarse_clock::now_ns();
            black_box(held.check(0, &quota, now, 1))
        });
    });
    let leased = table.client(ClientKey::V4(8), 0);
    leased.grant(0, i64::MAX / 4);
    let terms = LeaseTerms {
        chunk: 64,
        interval_ns: quota.emission_interval_ns(),
    };
    group.bench_function("ringstream_leased", |b| {
        b.iter(|| {
            // The clock is read as the engine reads it for every decision.
            black_box(coarse_clock::now_ns());
            black_box(leased.take_leased(0, 1, terms))
        });
    });
    group.bench_function("ringstream_lookup", |b| {
        b.iter(|| {
            let now = coarse_clock::now_ns();
            let client = table.client(black_box(ClientKey::V4(7)), now);
            black_box(client.check(0, &quota, now, 1))
        });
    });
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check_key(black_box(&7u32))));
    });
    group.finish();

    // Every key present first, so both sides measure lookups in a full table. The states are
    // also held, as a million open connections would hold them.
    let mut held = Vec::with_capacity(KEYS as usize);
    for i in 0..KEYS {
        let now = coarse_clock::now_ns();
        let client = table.client(ClientKey::V4(i), now);
        let _ = client.check(0, &quota, now, 1);
        held.push(client);
        let _ = governor.check_key(&i);
    }
    // A connection's own state (and the `Arc` in it) is in the cache when its frame is
    // decided, the client's shared state is not: walk the held states in a scrambled order
    // laid out in advance, so the walk is sequential and each state it reaches is cold.
    let held: Vec<_> = (0..KEYS)
        .map(|i| held[scrambled(i) as usize].clone())
        .collect();
    let mut group = c.benchmark_group("decision_1m_keys");
    let mut i = 0usize;
    group.bench_function("ringstream_held", |b| {
        b.iter(|| {
            i = (i + 1) % held.len();
            let now = coarse_clock::now_ns();
            black_box(held[i].check(0, &quota, now, 1))
        });
    });
    let mut i = 0u32;
    group.bench_function("ringstream_lookup", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let now = coarse_clock::now_ns();
            let client = table.client(ClientKey::V4(scrambled(i)), now);
            black_box(client.check(0, &quota, now, 1))
        });
    });
    let mut i = 0u32;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(governor.check_key(&scrambled(i)))
        });
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
