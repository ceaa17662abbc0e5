//! Broadcast, publish and the slow-consumer policy (PROTECTIONS.md, "slow subscriber"),
//! against the real binary with two workers: members spread over both workers by
//! `SO_REUSEPORT`, a member that stops reading, and `POST /publish/{topic}`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::thread::sleep;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::ws::{BINARY, CLOSE, PING, TEXT, connect, frame, read_frame, upgrade_request};
use support::{DRIVERS, PATIENCE, Server, assert_refused, read_response};

/// Members per test topic: with two workers, the chance that `SO_REUSEPORT` puts all of them
/// on one worker is 2^-15.
const MEMBERS: usize = 16;

/// The broadcast test routes plus `extra`, on `driver`.
fn server(extra: &str, driver: &str) -> Server {
    let config = format!(
        r#"
[[routes]]
path = "/stats"
kind = "stats"

[[routes]]
path = "/publish/{{topic}}"
kind = "publish"

{extra}
"#
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

/// Reads the next data message (answering pings is not needed: tests end long before the
/// heartbeat matters, and pings are skipped).
fn next_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let frame = read_frame(stream).expect("a message");
        match frame.opcode {
            PING => {}
            CLOSE => panic!("closed: {:?}", frame.close()),
            opcode => return (opcode, frame.payload),
        }
    }
}

/// `sender:seq` as the payload of message `seq` of `sender`.
fn payload(sender: usize, seq: usize) -> Vec<u8> {
    format!("{sender}:{seq}").into_bytes()
}

#[test]
fn members_on_both_workers_get_every_message_in_order_per_sender() {
    for driver in DRIVERS {
        members_on_both_workers_get_every_message_in_order_per_sender_on(driver);
    }
}

fn members_on_both_workers_get_every_message_in_order_per_sender_on(driver: &str) {
    let server = server(
        r#"[[routes]]
path = "/ws/broadcast/{topic}"
kind = "broadcast""#,
        driver,
    );
    let mut members: Vec<TcpStream> = (0..MEMBERS)
        .map(|_| connect(&server, "/ws/broadcast/room"))
        .collect();
    let presence = server.stats();
    assert_eq!(presence["broadcast"]["subscribers"]["room"], MEMBERS);
    // A member of another topic hears nothing of this one.
    let mut other = connect(&server, "/ws/broadcast/other");

    const PER_SENDER: usize = 200;
    let senders = [0usize, 5];
    for seq in 0..PER_SENDER {
        for &sender in &senders {
            members[sender]
                .write_all(&frame(true, 0, BINARY, &payload(sender, seq)))
                .unwrap();
        }
    }
    // Every member (the senders too: echo_to_sender) gets all of them, each sender's in order.
    for (i, member) in members.iter_mut().enumerate() {
        let mut next: HashMap<usize, usize> = HashMap::new();
        for _ in 0..PER_SENDER * senders.len() {
            let (opcode, body) = next_message(member);
            assert_eq!(opcode, BINARY);
            let text = String::from_utf8(body).unwrap();
            let (sender, seq) = text.split_once(':').unwrap();
            let (sender, seq): (usize, usize) = (sender.parse().unwrap(), seq.parse().unwrap());
            let expected = next.entry(sender).or_default();
            assert_eq!(seq, *expected, "member {i}, sender {sender}");
            *expected += 1;
        }
    }
    other
        .write_all(&frame(true, 0, TEXT, b"elsewhere"))
        .unwrap();
    assert_eq!(next_message(&mut other), (TEXT, b"elsewhere".to_vec()));

    let stats = server.stats();
    let broadcast = &stats["broadcast"];
    assert_eq!(broadcast["published"], PER_SENDER * senders.len() + 1);
    assert_eq!(
        broadcast["delivered"],
        PER_SENDER * senders.len() * MEMBERS + 1
    );
    assert_eq!(broadcast["dropped"], 0);
    assert_eq!(broadcast["topics"], 2);

    // Leaving is counted at once, and an empty topic is gone.
    drop(members);
    server.wait_for_stats(|s| s["broadcast"]["subscribers"].get("room").is_none());
}

#[test]
fn a_member_that_does_not_want_its_own_messages_gets_only_the_others() {
    for driver in DRIVERS {
        a_member_that_does_not_want_its_own_messages_gets_only_the_others_on(driver);
    }
}

fn a_member_that_does_not_want_its_own_messages_gets_only_the_others_on(driver: &str) {
    let server = server(
        r#"[[routes]]
path = "/quiet"
kind = "broadcast"
topic = "lobby"
echo_to_sender = false"#,
        driver,
    );
    let mut a = connect(&server, "/quiet");
    let mut b = connect(&server, "/quiet");
    a.write_all(&frame(true, 0, TEXT, b"from a")).unwrap();
    b.write_all(&frame(true, 0, TEXT, b"from b")).unwrap();
    assert_eq!(next_message(&mut a), (TEXT, b"from b".to_vec()));
    assert_eq!(next_message(&mut b), (TEXT, b"from a".to_vec()));
}

#[test]
fn http_publish_reaches_every_member_and_refuses_what_it_must() {
    for driver in DRIVERS {
        http_publish_reaches_every_member_and_refuses_what_it_must_on(driver);
    }
}

fn http_publish_reaches_every_member_and_refuses_what_it_must_on(driver: &str) {
    let server = server(
        r#"[[routes]]
path = "/ws/broadcast/{topic}"
kind = "broadcast"

[[routes]]
path = "/guarded/{topic}"
kind = "publish"
token = "0123456789abcdef"

[[routes]]
path = "/elsewhere/{topic}"
kind = "publish"
allowed_clients = ["10.0.0.0/8"]
[routes.limits]
max_message_size = "1KiB""#,
        driver,
    );
    let mut members: Vec<TcpStream> = (0..MEMBERS)
        .map(|_| connect(&server, "/ws/broadcast/news"))
        .collect();
    let post = |path: &str, headers: &str, body: &[u8]| {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw
    };
    let response = server.request(&post(
        "/publish/news",
        "Content-Type: application/json\r\n",
        br#"{"breaking":true}"#,
    ));
    assert_eq!(response.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(answer["topic"], "news");
    assert_eq!(answer["subscribers"], MEMBERS);
    for member in &mut members {
        assert_eq!(
            next_message(member),
            (TEXT, br#"{"breaking":true}"#.to_vec())
        );
    }
    // Any other content type is a binary message; a topic nobody joined reaches nobody.
    let response = server.request(&post("/publish/news", "", &[0, 1, 2]));
    assert_eq!(response.status, 200);
    for member in &mut members {
        assert_eq!(next_message(member), (BINARY, vec![0, 1, 2]));
    }
    let response = server.request(&post("/publish/empty", "", b"x"));
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(answer["subscribers"], 0);

    let refused = assert_refused(
        &server,
        b"GET /publish/news HTTP/1.1\r\nHost: x\r\n\r\n",
        405,
    );
    assert_eq!(refused.header("allow"), Some("POST"));
    assert_refused(&server, &post("/publish/", "", b"x"), 404);
    assert_refused(&server, &post("/publish/a%20b/c", "", b"x"), 404);
    let big = vec![b'x'; 64 * 1024 + 1];
    assert_refused(&server, &post("/publish/news", "", &big), 413);
    assert_refused(
        &server,
        &post(
            "/publish/news",
            "Content-Type: text/plain\r\n",
            &[0xff, 0xfe],
        ),
        400,
    );
    let refused = assert_refused(&server, &post("/guarded/news", "", b"x"), 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_refused(
        &server,
        &post(
            "/guarded/news",
            "Authorization: Bearer 0123456789abcdeX\r\n",
            b"x",
        ),
        401,
    );
    let response = server.request(&post(
        "/guarded/news",
        "Authorization: Bearer 0123456789abcdef\r\n",
        b"with token",
    ));
    assert_eq!(response.status, 200);
    assert_refused(&server, &post("/elsewhere/news", "", b"x"), 403);
    for member in &mut members {
        assert_eq!(next_message(member), (BINARY, b"with token".to_vec()));
    }
    // Protections of the broadcast route itself: a bad topic is 404 before any upgrade, and
    // a message over max_message_size closes its sender with 1009.
    assert_refused(&server, &upgrade_request("/ws/broadcast/a/b", ""), 404);
    assert_refused(&server, &upgrade_request("/ws/broadcast/", ""), 404);
    let sender = &mut members[0];
    sender
        .write_all(&frame(true, 0, BINARY, &vec![0; 64 * 1024 + 1]))
        .unwrap();
    assert_eq!(support::ws::expect_close(sender).0, 1009);
}

/// A member connection whose receive buffer is small, so that it fills early.
fn connect_small_buffer(server: &Server, path: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(&upgrade_request(path, "")).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 101);
    stream
}

/// Publishes `count` messages of `size` bytes on `publisher`, each once a fast member has
/// received the one before: a member that keeps up is never behind by more than a message.
fn publish_while_a_fast_member_reads(
    server: &Server,
    path: &str,
    publisher: &mut TcpStream,
    count: usize,
    size: usize,
) {
    let mut fast = connect(server, path);
    for seq in 0..count {
        let mut body = vec![7u8; size];
        body[..8].copy_from_slice(&(seq as u64).to_be_bytes());
        publisher.write_all(&frame(true, 0, BINARY, &body)).unwrap();
        let (_, received) = next_message(&mut fast);
        assert_eq!(received, body, "the fast member, message {seq}");
    }
}

#[test]
fn a_member_that_stops_reading_is_closed_with_1008_while_the_others_keep_receiving() {
    for driver in DRIVERS {
        a_member_that_stops_reading_is_closed_with_1008_while_the_others_keep_receiving_on(driver);
    }
}

fn a_member_that_stops_reading_is_closed_with_1008_while_the_others_keep_receiving_on(
    driver: &str,
) {
    let server = server(
        r#"[[routes]]
path = "/ws/broadcast/{topic}"
kind = "broadcast"
echo_to_sender = false
[routes.limits]
max_backpressure = "64KiB""#,
        driver,
    );
    let mut stalled = connect_small_buffer(&server, "/ws/broadcast/feed");
    let mut publisher = connect(&server, "/ws/broadcast/feed");
    let before = server.rss_kib();
    // 16 MiB: far more than the kernel's socket buffers and the 64 KiB queue hold.
    publish_while_a_fast_member_reads(
        &server,
        "/ws/broadcast/feed",
        &mut publisher,
        1024,
        16 * 1024,
    );
    let stats = server.wait_for_stats(|s| s["broadcast"]["slow_consumer_closes"] == 1);
    let after = server.rss_kib();
    println!(
        "server RSS {before} KiB before, {after} KiB after 16 MiB to a member that does not read"
    );
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(stats["broadcast"]["dropped"], 0);
    // Once it reads again it finds whole frames, in order, then the close.
    let mut seq = 0u64;
    loop {
        let frame = read_frame(&mut stalled).expect("whole frames, then the close");
        match frame.opcode {
            BINARY => {
                assert_eq!(&frame.payload[..8], &seq.to_be_bytes());
                seq += 1;
            }
            PING => {}
            _ => {
                assert_eq!(frame.close(), (1008, "slow consumer".to_owned()));
                break;
            }
        }
    }
    assert!(seq < 1024, "the slow member got {seq} of 1024");
    assert_eq!(server.stats()["websocket_closes"]["1008"], 1);
}

#[test]
fn drop_and_keep_latest_keep_the_member_and_count_what_it_missed() {
    for driver in DRIVERS {
        drop_and_keep_latest_keep_the_member_and_count_what_it_missed_on(driver);
    }
}

fn drop_and_keep_latest_keep_the_member_and_count_what_it_missed_on(driver: &str) {
    for policy in ["drop", "keep_latest"] {
        let server = server(
            &format!(
                r#"[[routes]]
path = "/ws/broadcast/{{topic}}"
kind = "broadcast"
echo_to_sender = false
[routes.limits]
max_backpressure = "64KiB"
slow_consumer = "{policy}""#
            ),
            driver,
        );
        let mut stalled = connect_small_buffer(&server, "/ws/broadcast/ticks");
        let mut publisher = connect(&server, "/ws/broadcast/ticks");
        publish_while_a_fast_member_reads(
            &server,
            "/ws/broadcast/ticks",
            &mut publisher,
            1024,
            16 * 1024,
        );
        let stats = server.wait_for_stats(|s| s["broadcast"]["dropped"].as_u64() > Some(0));
        assert_eq!(stats["broadcast"]["slow_consumer_closes"], 0, "{policy}");
        // The member is still there: it reads what it kept (in order, with a gap), then a
        // message published after it caught up.
        let marker = u64::MAX.to_be_bytes();
        let mut last: Option<u64> = None;
        let mut gaps = 0;
        let reader = std::thread::spawn(move || {
            loop {
                let (_, body) = next_message(&mut stalled);
                if body[..8] == marker {
                    return (last, gaps);
                }
                let seq = u64::from_be_bytes(body[..8].try_into().unwrap());
                if let Some(prev) = last {
                    assert!(seq > prev, "in order");
                    gaps += u64::from(seq != prev + 1);
                }
                last = Some(seq);
            }
        });
        sleep(Duration::from_millis(300));
        let mut body = vec![0u8; 16];
        body[..8].copy_from_slice(&marker);
        publisher.write_all(&frame(true, 0, BINARY, &body)).unwrap();
        let (last, gaps) = reader.join().unwrap();
        assert!(
            gaps >= 1 || last != Some(1023),
            "{policy}: nothing was missed"
        );
        if policy == "keep_latest" {
            assert_eq!(last, Some(1023), "keep_latest keeps the newest");
        }
    }
}
