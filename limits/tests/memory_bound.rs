//! The memory bound of the client table: 1 000 000 distinct clients (an attacker rotating
//! source addresses) stay under [`BYTES_PER_CLIENT`] each, and past `max_tracked_clients` the
//! table stops growing. Alone in its own test binary, so the process's RSS is the table's.
#![allow(clippy::unwrap_used, reason = "tests")]

use ringstream_limits::client_table::ClientTable;
use ringstream_limits::identity::ClientKey;

/// The documented bound (README, `max_tracked_clients`): memory per tracked client, all
/// included (map slot, recency node, shared state with three rate buckets, allocator).
const BYTES_PER_CLIENT: u64 = 320;
const CLIENTS: u32 = 1_000_000;
const MINUTE_NS: u64 = 60_000_000_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident_pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // 4 KiB: the page size of every Linux target this project builds for.
    resident_pages * 4096
}

#[test]
fn a_million_clients_stay_under_the_documented_bound_and_more_do_not_grow_the_table() {
    let table = ClientTable::new(CLIENTS as usize, MINUTE_NS, 3);
    let before = rss_bytes();
    for n in 0..CLIENTS {
        table.client(ClientKey::V4(n), u64::from(n));
    }
    let grown = rss_bytes().saturating_sub(before);
    let per_client = grown / u64::from(CLIENTS);
    println!(
        "{CLIENTS} clients: RSS grew {} MiB, {per_client} B per client",
        grown >> 20
    );
    assert!(
        table.len() >= CLIENTS as usize * 99 / 100,
        "{}",
        table.len()
    );
    assert!(
        per_client <= BYTES_PER_CLIENT,
        "{per_client} B per client, bound {BYTES_PER_CLIENT}"
    );
    // Another million rotating keys: the table forgets the oldest instead of growing.
    for n in CLIENTS..2 * CLIENTS {
        table.client(ClientKey::V4(n), u64::from(n));
    }
    let after = rss_bytes().saturating_sub(before);
    assert!(table.len() <= CLIENTS as usize + 64, "{}", table.len());
    assert!(table.evictions() >= u64::from(CLIENTS) * 99 / 100);
    assert!(
        after <= grown + grown / 10,
        "RSS kept growing: {} MiB after {} MiB",
        after >> 20,
        grown >> 20
    );
}
