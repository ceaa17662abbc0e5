//! Several nodes through two Redis servers (`[cluster] redis = [...]`): topics and clients
//! spread over both, each topic and each client on one, the connection cap still counted
//! across nodes; one server going away suspends only what it holds, and it comes back; a node
//! that lists the servers in another order is told. Every node is the real binary on loopback;
//! each Redis is a `redis-server` of the test's own on a free port.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::thread::sleep;
use std::time::Duration;

use support::cluster::{member, next_text, node, open_from, send, wait_reachable};
use support::redis::Redis;
use support::{DRIVERS, Server};

/// Time for a count to reach the other node.
const SPREAD: Duration = Duration::from_millis(150);
const TOPICS: [&str; 6] = ["t0", "t1", "t2", "t3", "t4", "t5"];
/// Members connect from 127.0.0.1, which is exempt from the caps under test.
const MEMBER_HOST: u8 = 1;

fn two_redis() -> Option<[Redis; 2]> {
    Some([Redis::start()?, Redis::start()?])
}

/// `redis = [...]` listing `servers` in that order.
fn list(servers: &[&Redis]) -> String {
    let urls: Vec<String> = servers.iter().map(|r| format!("\"{}\"", r.url())).collect();
    format!("[{}]", urls.join(", "))
}

fn flush(servers: &[Redis; 2]) {
    for redis in servers {
        assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    }
}

/// Nodes subscribed to `channel` on `redis`.
fn subscribers(redis: &Redis, channel: &str) -> usize {
    let answer = redis.cli(&["PUBSUB", "NUMSUB", channel]);
    answer.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Which of the servers holds each of [`TOPICS`], once `nodes` nodes follow each of them.
fn topic_homes(servers: &[Redis; 2], nodes: usize) -> Vec<usize> {
    TOPICS
        .iter()
        .map(|topic| {
            let channel = format!("ringstream:t:{topic}");
            let deadline = std::time::Instant::now() + support::PATIENCE;
            loop {
                let counts = servers.each_ref().map(|r| subscribers(r, &channel));
                match counts {
                    [n, 0] if n == nodes => return 0,
                    [0, n] if n == nodes => return 1,
                    _ => assert!(std::time::Instant::now() < deadline, "{topic}: {counts:?}"),
                }
                sleep(Duration::from_millis(20));
            }
        })
        .collect()
}

/// Which of the servers holds client 127.0.0.`host`, from `server`'s (node `node`) mirrored
/// count of one connection it opens and closes.
fn client_home(servers: &[Redis; 2], server: &Server, node: &str, host: u8) -> usize {
    let (_stream, status) = open_from(server, host);
    assert_eq!(status, 200);
    let field = format!("4.7f0000{host:02x}");
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let held = servers
            .each_ref()
            .map(|r| r.cli(&["HGET", &format!("ringstream:conns:{node}"), &field]) == "1");
        match held {
            [true, false] => return 0,
            [false, true] => return 1,
            _ => assert!(std::time::Instant::now() < deadline, "{field}: {held:?}"),
        }
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn topics_and_clients_spread_over_two_redis_servers_and_still_cross_nodes() {
    let Some(servers) = two_redis() else { return };
    let redis = list(&[&servers[0], &servers[1]]);
    for driver in DRIVERS {
        flush(&servers);
        let limits = "max_concurrent_connections = 2";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        b.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let stats = a.stats();
        assert_eq!(stats["cluster"]["redis_servers"], 2, "{stats}");
        assert_eq!(stats["cluster"]["redis_servers_reachable"], 2, "{stats}");
        let mut on_a: Vec<_> = TOPICS.iter().map(|t| member(&a, MEMBER_HOST, t)).collect();
        let mut on_b: Vec<_> = TOPICS.iter().map(|t| member(&b, MEMBER_HOST, t)).collect();
        let homes = topic_homes(&servers, 2);
        assert!(
            homes.contains(&0) && homes.contains(&1),
            "{driver}: {homes:?}"
        );
        for (index, topic) in TOPICS.iter().enumerate() {
            send(&mut on_a[index], topic);
            assert_eq!(next_text(&mut on_b[index]), *topic, "{driver}");
        }
        // Clients on either server: the cap of 2 counts both nodes' connections.
        let hosts: Vec<u8> = (20..28).collect();
        let homes: Vec<usize> = hosts
            .iter()
            .map(|&h| client_home(&servers, &a, &format!("a-{driver}"), h))
            .collect();
        assert!(
            homes.contains(&0) && homes.contains(&1),
            "{driver}: {homes:?}"
        );
        for &host in &hosts {
            let first = open_from(&a, host);
            sleep(SPREAD);
            let second = open_from(&b, host);
            sleep(SPREAD);
            assert_eq!((first.1, second.1), (200, 200), "{driver}: {host}");
            assert_eq!(
                open_from(&a, host).1,
                429,
                "{driver}: 127.0.0.{host}'s third"
            );
        }
        // A node listing the servers the other way round is told, and counts it.
        let reversed = list(&[&servers[1], &servers[0]]);
        let c = node(&reversed, "c", driver, limits, "");
        let stats = c.wait_for_stats(|s| s["cluster"]["shard_mismatches"].as_u64() >= Some(2));
        assert!(
            stats["cluster"]["shard_mismatches"].as_u64().unwrap() >= 2,
            "{driver}: {stats}"
        );
    }
}

#[test]
fn one_redis_server_away_suspends_only_the_topics_and_clients_it_holds() {
    let Some(mut servers) = two_redis() else {
        return;
    };
    let redis = list(&[&servers[0], &servers[1]]);
    for driver in DRIVERS {
        flush(&servers);
        let limits = "max_concurrent_connections = 2";
        let a = node(&redis, "a", driver, limits, "on_redis_error = \"closed\"");
        let b = node(&redis, "b", driver, limits, "on_redis_error = \"closed\"");
        b.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let mut on_a: Vec<_> = TOPICS.iter().map(|t| member(&a, MEMBER_HOST, t)).collect();
        let mut on_b: Vec<_> = TOPICS.iter().map(|t| member(&b, MEMBER_HOST, t)).collect();
        let homes = topic_homes(&servers, 2);
        let on_first = homes.iter().position(|&h| h == 0).unwrap();
        let on_second = homes.iter().position(|&h| h == 1).unwrap();
        let node_a = format!("a-{driver}");
        let mut host_on = [None, None];
        for host in 30..40 {
            let home = client_home(&servers, &a, &node_a, host);
            host_on[home].get_or_insert(host);
        }
        let [Some(host_first), Some(host_second)] = host_on else {
            panic!("{driver}: ten clients on one server: {host_on:?}");
        };

        servers[1].kill();
        a.wait_for_stats(|s| s["cluster"]["redis_servers_reachable"] == 1);
        b.wait_for_stats(|s| s["cluster"]["redis_servers_reachable"] == 1);
        wait_reachable(&a, false);
        // The first server's topic still crosses nodes; the second's stays on its node.
        send(&mut on_a[on_first], "while one is away");
        assert_eq!(
            next_text(&mut on_b[on_first]),
            "while one is away",
            "{driver}"
        );
        send(&mut on_a[on_second], "here only");
        assert_eq!(next_text(&mut on_a[on_second]), "here only", "{driver}");
        // The first server's client is still counted across nodes; the second's is refused
        // (`closed`).
        let first = open_from(&a, host_first);
        sleep(SPREAD);
        let second = open_from(&b, host_first);
        sleep(SPREAD);
        assert_eq!((first.1, second.1), (200, 200), "{driver}");
        assert_eq!(
            open_from(&a, host_first).1,
            429,
            "{driver}: counted across nodes"
        );
        assert_eq!(
            open_from(&a, host_second).1,
            503,
            "{driver}: its server is away"
        );

        servers[1].restart();
        wait_reachable(&a, true);
        wait_reachable(&b, true);
        servers[1].wait_for_subscribers(&format!("ringstream:t:{}", TOPICS[on_second]), 2);
        send(&mut on_a[on_second], "back");
        assert_eq!(
            next_text(&mut on_b[on_second]),
            "back",
            "{driver}: crosses again"
        );
        assert_eq!(
            open_from(&a, host_second).1,
            200,
            "{driver}: admitted again"
        );
        let stats = a.stats();
        assert_eq!(stats["cluster"]["redis_changes"]["away"], 1, "{stats}");
    }
}
