//! Several nodes through one Redis (`[cluster]`): topics across three nodes in order and
//! exactly once, publish reaching members on other nodes, the connection cap, rates and bans
//! across nodes, a node killed with -9 leaving the count, and Redis going away (each
//! `on_redis_error` policy), answering slowly, and coming back. Every node is the real binary on loopback;
//! Redis is a `redis-server` of the test's own on a free port.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::HashMap;
use std::net::TcpStream;
use std::thread::sleep;
use std::time::Duration;

use support::cluster::{self, member, next_text, open_from, send, wait_reachable};
use support::redis::Redis;
use support::{DRIVERS, PATIENCE, Server, ask, connect_from};

/// Time for a count to reach the other node: the brief's "attempts at least 100 ms apart".
const SPREAD: Duration = Duration::from_millis(150);

/// A node named `name`-`driver` sharing `redis` (see [`cluster::node`]).
fn node(redis: &Redis, name: &str, driver: &str, limits: &str, cluster: &str) -> Server {
    cluster::node(
        &format!("\"{}\"", redis.url()),
        name,
        driver,
        limits,
        cluster,
    )
}

/// A Redis with nothing in it, for the next driver's nodes.
fn flush(redis: &Redis) {
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
}

#[test]
fn topics_cross_nodes_in_order_exactly_once_and_publish_reaches_another_node() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        let a = node(&redis, "a", driver, "", "");
        let b = node(&redis, "b", driver, "", "");
        let c = node(&redis, "c", driver, "", "");
        let mut on_a = [member(&a, 2, "room"), member(&a, 2, "room")];
        let mut on_b = [member(&b, 2, "room"), member(&b, 2, "room")];
        let mut on_c = [member(&c, 2, "room")];
        redis.wait_for_subscribers("ringstream:t:room", 3);
        const PER_SENDER: usize = 200;
        for seq in 0..PER_SENDER {
            send(&mut on_a[0], &format!("a:{seq}"));
            send(&mut on_b[0], &format!("b:{seq}"));
        }
        send(&mut on_a[0], "a:end");
        send(&mut on_b[0], "b:end");
        for stream in on_a.iter_mut().chain(&mut on_b).chain(&mut on_c) {
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut ended = 0;
            while ended < 2 {
                let text = next_text(stream);
                let (sender, seq) = text.split_once(':').unwrap();
                if seq == "end" {
                    ended += 1;
                    continue;
                }
                let expected = seen.entry(sender.to_owned()).or_default();
                assert_eq!(seq.parse::<usize>().unwrap(), *expected, "{driver}: {text}");
                *expected += 1;
            }
            assert_eq!(seen["a"], PER_SENDER, "{driver}: exactly once, in order");
            assert_eq!(seen["b"], PER_SENDER, "{driver}: exactly once, in order");
        }
        let response = b.request(
            b"POST /publish/room HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Content-Length: 4\r\nConnection: close\r\n\r\nnews",
        );
        assert_eq!(response.status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(answer["subscribers"], 2, "{driver}: {answer}");
        assert_eq!(answer["other_nodes"], 2, "{driver}: {answer}");
        for stream in on_a.iter_mut().chain(&mut on_b).chain(&mut on_c) {
            assert_eq!(next_text(stream), "news");
        }
        let stats = a.wait_for_stats(|s| s["cluster"]["nodes"] == 3);
        assert!(stats["cluster"]["messages"]["sent"].as_u64().unwrap() > PER_SENDER as u64);
        assert!(stats["cluster"]["messages"]["received"].as_u64().unwrap() > PER_SENDER as u64);
        // A topic with no member left is left on Redis too.
        drop((on_a, on_b, on_c));
        redis.wait_for_subscribers("ringstream:t:room", 0);
    }
}

#[test]
fn the_connection_cap_holds_across_nodes_and_a_killed_node_leaves_the_count() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        let limits = "max_concurrent_connections = 3";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        b.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let mut open = Vec::new();
        for server in [&a, &a, &b] {
            let (stream, status) = open_from(server, 7);
            assert_eq!(status, 200, "{driver}");
            open.push(stream);
            sleep(SPREAD);
        }
        for server in [&a, &b] {
            let (_, status) = open_from(server, 7);
            assert_eq!(status, 429, "{driver}: the fourth, on either node");
        }
        // Another client is not affected.
        assert_eq!(open_from(&b, 8).1, 200, "{driver}");
        // Node a dies with two of the client's connections: they leave the count.
        a.signal(libc::SIGKILL);
        b.wait_for_stats(|s| s["cluster"]["clients_elsewhere"] == 0);
        for expected in [200, 200, 429] {
            let (stream, status) = open_from(&b, 7);
            assert_eq!(status, expected, "{driver}");
            open.push(stream);
        }
    }
}

#[test]
fn a_ban_on_one_node_reaches_every_node() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        let limits =
            "max_concurrent_connections = 1\nban_after_violations = 1\nban_duration = \"60s\"";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        let (_kept, status) = open_from(&a, 9);
        assert_eq!(status, 200);
        assert_eq!(
            open_from(&a, 9).1,
            429,
            "{driver}: over the cap, which bans"
        );
        b.wait_for_stats(|s| s["cluster"]["bans_received"] == 1);
        let refused = open_from(&b, 9);
        assert_eq!(refused.1, 403, "{driver}: banned on the other node too");
    }
}

#[test]
fn redis_going_away_keeps_local_traffic_and_the_local_policy_then_everything_resumes() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    for driver in DRIVERS {
        flush(&redis);
        let limits = "max_concurrent_connections = 4";
        let a = node(&redis, "a", driver, limits, "on_redis_error = \"local\"");
        let b = node(&redis, "b", driver, limits, "");
        a.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let mut on_a = [member(&a, 2, "room"), member(&a, 2, "room")];
        let mut on_b = member(&b, 2, "room");
        redis.wait_for_subscribers("ringstream:t:room", 2);
        send(&mut on_a[0], "before");
        assert_eq!(next_text(&mut on_b), "before");

        redis.kill();
        wait_reachable(&a, false);
        wait_reachable(&b, false);
        send(&mut on_a[0], "while away");
        assert_eq!(next_text(&mut on_a[0]), "before");
        assert_eq!(next_text(&mut on_a[1]), "before");
        assert_eq!(next_text(&mut on_a[0]), "while away");
        assert_eq!(
            next_text(&mut on_a[1]),
            "while away",
            "{driver}: local members still served"
        );
        // A topic first joined while Redis is away is followed once it is back.
        let mut later_on_b = member(&b, 3, "later");
        // `local`: the cap of 4 divided by the 2 nodes last known.
        let first = open_from(&a, 11);
        let second = open_from(&a, 11);
        assert_eq!(
            (first.1, second.1, open_from(&a, 11).1),
            (200, 200, 429),
            "{driver}"
        );
        let metrics = a.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        assert!(
            text.contains("ringstream_cluster_redis_reachable 0"),
            "{text}"
        );
        assert!(
            text.contains("ringstream_cluster_redis_changes_total{to=\"away\"} 1"),
            "{text}"
        );

        redis.restart();
        wait_reachable(&a, true);
        wait_reachable(&b, true);
        redis.wait_for_subscribers("ringstream:t:room", 2);
        let mut later_on_a = member(&a, 3, "later");
        redis.wait_for_subscribers("ringstream:t:later", 2);
        send(&mut later_on_a, "later");
        assert_eq!(next_text(&mut later_on_b), "later", "{driver}");
        send(&mut on_a[1], "after");
        assert_eq!(
            next_text(&mut on_b),
            "after",
            "{driver}: the same members, across nodes again"
        );
        drop((first, second));
    }
}

#[test]
fn while_redis_is_away_closed_refuses_503_and_open_admits_up_to_the_whole_cap() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    for driver in DRIVERS {
        flush(&redis);
        let limits = "max_concurrent_connections = 2";
        let closed = node(&redis, "c", driver, limits, "on_redis_error = \"closed\"");
        let open = node(
            &redis,
            "o",
            driver,
            &format!("{limits}\non_redis_error = \"open\""),
            "on_redis_error = \"closed\"",
        );
        redis.kill();
        wait_reachable(&closed, false);
        wait_reachable(&open, false);
        let mut stream = connect_from(&closed, 12);
        let response = ask(&mut stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 503, "{driver}");
        assert_eq!(response.header("retry-after"), Some("3"));
        let first = open_from(&open, 12);
        let second = open_from(&open, 12);
        assert_eq!(
            (first.1, second.1, open_from(&open, 12).1),
            (200, 200, 429),
            "{driver}"
        );
        let stats = closed.stats();
        assert!(
            stats["cluster"]["without_redis"]["refused"]
                .as_u64()
                .unwrap()
                >= 1,
            "{stats}"
        );
        redis.restart();
        wait_reachable(&closed, true);
        // Shared again: the two the other node admitted alone count here.
        closed.wait_for_stats(|s| s["cluster"]["clients_elsewhere"] == 1);
        assert_eq!(open_from(&closed, 12).1, 429, "{driver}");
        drop((first, second));
        closed.wait_for_stats(|s| s["cluster"]["clients_elsewhere"] == 0);
        // Admission follows the other node's count and the closing of this node's own
        // refused connections, each seen a moment late: a 429 right after
        // `clients_elsewhere` reached 0 was seen once on a loaded machine. A place that
        // never comes back still fails here.
        let deadline = std::time::Instant::now() + support::PATIENCE;
        let mut status = open_from(&closed, 12).1;
        while status == 429 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            status = open_from(&closed, 12).1;
        }
        assert_eq!(status, 200, "{driver}: admitted again");
    }
}

#[test]
fn a_redis_that_answers_slowly_never_holds_up_local_traffic() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        let a = node(&redis, "a", driver, "max_concurrent_connections = 4", "");
        let mut members = [member(&a, 2, "room"), member(&a, 2, "room")];
        redis.wait_for_subscribers("ringstream:t:room", 1);
        let port = redis.port.to_string();
        let sleeper = std::thread::spawn(move || {
            std::process::Command::new("redis-cli")
                .args(["-p", &port, "DEBUG", "SLEEP", "3"])
                .output()
                .unwrap();
        });
        sleep(Duration::from_millis(300));
        send(&mut members[0], "during");
        assert_eq!(next_text(&mut members[1]), "during");
        assert_eq!(
            open_from(&a, 13).1,
            200,
            "{driver}: admission reads no Redis"
        );
        assert!(
            !sleeper.is_finished(),
            "{driver}: Redis was still asleep: local traffic did not wait"
        );
        sleeper.join().unwrap();
        let _ = PATIENCE;
    }
}

/// `count` requests from 127.0.0.`host`, on one kept-alive connection per node, taking turns;
/// the statuses answered.
fn requests_taking_turns(nodes: &[&Server], host: u8, count: usize) -> Vec<u16> {
    let mut streams: Vec<TcpStream> = nodes.iter().map(|n| connect_from(n, host)).collect();
    (0..count)
        .map(|i| {
            let stream = &mut streams[i % nodes.len()];
            ask(stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status
        })
        .collect()
}

#[test]
fn a_request_rate_is_one_budget_across_nodes() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        // 60 a minute with a burst of 20: a client taking turns between two nodes gets about
        // 20 at once in all, where each node alone would give it 20.
        let limits = "rate_limit_requests = 60\nburst = 20";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        a.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let statuses = requests_taking_turns(&[&a, &b], 21, 60);
        let allowed = statuses.iter().filter(|&&s| s == 200).count();
        let refused = statuses.iter().filter(|&&s| s == 429).count();
        assert_eq!(allowed + refused, 60, "{driver}: {statuses:?}");
        // At most the burst, what the rate earned meanwhile and a chunk of debt per node (two
        // nodes deciding alone would allow 40); fewer when leases come late on a loaded
        // machine.
        assert!(
            (5..=30).contains(&allowed),
            "{driver}: {allowed} allowed: {statuses:?}"
        );
        // A decision allowed on the lease's debt is paid back by a grant that can land after
        // the last answer: wait for it rather than read the count at once.
        let stats = a.wait_for_stats(|s| {
            s["cluster"]["leases"]["cells_granted"]
                .as_u64()
                .is_some_and(|cells| cells >= 5)
        });
        assert!(
            stats["cluster"]["leases"]["redis_calls"].as_u64().unwrap() >= 1,
            "{stats}"
        );
    }
}

#[test]
fn new_connections_per_minute_are_one_budget_across_nodes() {
    let Some(redis) = Redis::start() else { return };
    for driver in DRIVERS {
        flush(&redis);
        let limits = "connections_per_minute = 10";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        a.wait_for_stats(|s| s["cluster"]["nodes"] == 2);
        let statuses: Vec<u16> = (0..30)
            .map(|i| open_from(if i % 2 == 0 { &a } else { &b }, 22).1)
            .collect();
        let allowed = statuses.iter().filter(|&&s| s == 200).count();
        assert_eq!(
            allowed + statuses.iter().filter(|&&s| s == 429).count(),
            30,
            "{driver}: {statuses:?}"
        );
        // Ten a minute in all (two nodes deciding alone would allow 20), give or take a
        // chunk of debt per node; fewer when leases come late.
        assert!(
            (2..=13).contains(&allowed),
            "{driver}: {allowed}: {statuses:?}"
        );
    }
}

#[test]
fn a_redis_restarted_at_once_gets_the_subscriptions_and_counts_back() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    for driver in DRIVERS {
        flush(&redis);
        let limits = "max_concurrent_connections = 4";
        let a = node(&redis, "a", driver, limits, "");
        let b = node(&redis, "b", driver, limits, "");
        let mut on_a = member(&a, 2, "room");
        let mut on_b = member(&b, 2, "room");
        redis.wait_for_subscribers("ringstream:t:room", 2);
        // Restarted before a node may notice it was gone: its data and subscriptions are not.
        redis.restart();
        redis.wait_for_subscribers("ringstream:t:room", 2);
        send(&mut on_a, "after the restart");
        assert_eq!(next_text(&mut on_b), "after the restart", "{driver}");
        // Each node's count of client .2 is written again: the other node sees it.
        b.wait_for_stats(|s| s["cluster"]["clients_elsewhere"] == 1);
    }
}
