//! Receiving through the worker's buffer ring (`receive = "ring"`, and `"auto"` once a session's
//! first bursts were small) against receiving per read, on the real binary and both drivers
//! (the poll driver has no multishot receive and receives per read whatever is asked): every
//! frame size, frames that span ring buffers and several frames in one write come back whole
//! and in order; `auto` arms the ring for a session of small messages and for no other
//! connection; connections that send without reading can empty the ring, and then every
//! connection still echoes (it reads per read for a while) and nothing the greedy ones sent is
//! lost; pipelined HTTP requests (received per read on every worker: only WebSocket sessions
//! arm the ring) are answered in order.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::ws::{BINARY, connect, frame, read_frame, send_without_reading};
use support::{DRIVERS, PATIENCE, Server};

const RECEIVES: [&str; 3] = ["ring", "auto", "per-read"];
/// Connections that send without reading, enough to empty a worker's ring.
const GREEDY: usize = 4;

fn server(driver: &str, receive: &str) -> Server {
    Server::start(&[
        "--io-driver",
        driver,
        "--receive",
        receive,
        "--workers",
        "1",
    ])
}

/// `len` bytes that differ with `seed`.
fn payload(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seed * 7) as u8).collect()
}

fn expect_echo(stream: &mut TcpStream, sent: &[u8], what: &str) {
    let echo = read_frame(stream).unwrap_or_else(|| panic!("{what}: no echo"));
    assert_eq!(echo.opcode, BINARY, "{what}");
    assert!(
        echo.payload == sent,
        "{what}: wrong echo ({} bytes)",
        echo.payload.len()
    );
}

#[test]
fn every_frame_size_comes_back_whole_and_in_order() {
    for driver in DRIVERS {
        for receive in RECEIVES {
            let server = server(driver, receive);
            let mut stream = connect(&server, "/ws/echo");
            // Around the header's length forms, a ring buffer (16 KiB) and the message limit.
            for (seed, len) in [
                0, 1, 125, 126, 127, 4096, 16_383, 16_384, 16_390, 40_000, 65_000,
            ]
            .into_iter()
            .enumerate()
            {
                let sent = payload(len, seed);
                stream.write_all(&frame(true, 0, BINARY, &sent)).unwrap();
                expect_echo(&mut stream, &sent, &format!("{driver}/{receive}: {len} B"));
            }
            // 2,000 small frames and a few large ones in one write: reads carry many frames
            // and frames span reads.
            let messages: Vec<Vec<u8>> = (0..2_000)
                .map(|i| payload(if i % 500 == 499 { 30_000 } else { 1 + i % 200 }, i))
                .collect();
            let batch: Vec<u8> = messages
                .iter()
                .flat_map(|m| frame(true, 0, BINARY, m))
                .collect();
            let mut writer = stream.try_clone().unwrap();
            let sending = std::thread::spawn(move || writer.write_all(&batch).unwrap());
            for (i, sent) in messages.iter().enumerate() {
                expect_echo(&mut stream, sent, &format!("{driver}/{receive}: batch {i}"));
            }
            sending.join().unwrap();
        }
    }
}

#[test]
fn connections_that_empty_the_ring_stall_nobody_and_lose_nothing() {
    for driver in DRIVERS {
        let server = server(driver, "ring");
        // Greedy connections send 16 MiB each and read nothing until they have sent it all:
        // the server's echoes to them back up, and what they send piles up in the ring (8 MiB)
        // until it is dry. (The kernel stops taking one connection's bytes into the ring after
        // a few MiB, so it takes several to empty it.)
        let message = payload(32 * 1024, 1);
        let count = 16 * 32;
        let one = frame(true, 0, BINARY, &message);
        let greedy: Vec<(TcpStream, std::thread::JoinHandle<()>)> = (0..GREEDY)
            .map(|_| {
                let stream = connect(&server, "/ws/echo");
                let sending = send_without_reading(&stream, one.clone(), count);
                (stream, sending)
            })
            .collect();
        // Meanwhile another connection echoes as usual.
        std::thread::sleep(Duration::from_millis(1_000));
        let mut other = connect(&server, "/ws/echo");
        other.set_read_timeout(Some(PATIENCE)).unwrap();
        for i in 0..200 {
            let sent = payload(100, i);
            other.write_all(&frame(true, 0, BINARY, &sent)).unwrap();
            expect_echo(&mut other, &sent, &format!("{driver}: other's echo {i}"));
        }
        if driver == "uring" {
            let dry = server.stats()["buffers"]["receive_ring_dry"]
                .as_u64()
                .unwrap();
            assert!(dry > 0, "the ring never ran dry");
        }
        // Every echo of every greedy connection arrives, whole and in order.
        let readers: Vec<_> = greedy
            .into_iter()
            .map(|(mut stream, sending)| {
                let message = message.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(PATIENCE)).unwrap();
                    for i in 0..count {
                        expect_echo(&mut stream, &message, &format!("greedy echo {i}"));
                    }
                    sending.join().unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut rest = [0u8; 1];
                    assert!(stream.read(&mut rest).is_err(), "an extra byte");
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
    }
}

/// Sessions that armed the ring so far.
fn armed(server: &Server) -> u64 {
    server.stats()["buffers"]["receive_ring_armed"]
        .as_u64()
        .unwrap()
}

/// Sends `count` messages of `len` bytes on `stream`, one at a time, and checks each echo.
fn echo_many(stream: &mut TcpStream, count: usize, len: usize, what: &str) {
    for i in 0..count {
        let sent = payload(len, i);
        stream.write_all(&frame(true, 0, BINARY, &sent)).unwrap();
        expect_echo(stream, &sent, &format!("{what}: echo {i} of {len} B"));
    }
}

#[test]
fn auto_arms_the_ring_for_a_session_of_small_messages_only() {
    for driver in DRIVERS {
        let server = server(driver, "auto");
        // Neither HTTP requests, nor a session that stays idle, nor one of large messages
        // arms it.
        for _ in 0..8 {
            assert_eq!(
                server
                    .request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .status,
                200
            );
        }
        let _idle = connect(&server, "/ws/echo");
        let mut large = connect(&server, "/ws/echo");
        echo_many(&mut large, 12, 16_384, driver);
        assert_eq!(armed(&server), 0, "{driver}: armed before any small burst");
        // Small bursts: the ring from the fifth read on (io_uring only); echoes stay whole
        // across the switch, and a large message later still comes back through the ring.
        let mut small = connect(&server, "/ws/echo");
        echo_many(&mut small, 12, 32, driver);
        let expected = u64::from(driver == "uring");
        assert_eq!(armed(&server), expected, "{driver}: after small messages");
        echo_many(&mut small, 4, 40_000, driver);
        echo_many(&mut small, 4, 100, driver);
        // The large session, back to small messages, arms it too.
        echo_many(&mut large, 12, 32, driver);
        assert_eq!(
            armed(&server),
            2 * expected,
            "{driver}: after the large one's small"
        );
        echo_many(&mut large, 2, 16_384, driver);
    }
}

#[test]
fn ring_and_per_read_arm_at_the_start_and_never() {
    for driver in DRIVERS {
        for (receive, expected) in [("ring", u64::from(driver == "uring")), ("per-read", 0)] {
            let server = server(driver, receive);
            let mut stream = connect(&server, "/ws/echo");
            echo_many(&mut stream, 1, 32, driver);
            assert_eq!(
                armed(&server),
                expected,
                "{driver}, {receive}: after one echo"
            );
            echo_many(&mut stream, 12, 32, driver);
            assert_eq!(
                armed(&server),
                expected,
                "{driver}, {receive}: after 13 echoes"
            );
        }
    }
}

#[test]
fn pipelined_http_requests_are_answered_in_order() {
    for driver in DRIVERS {
        let server = server(driver, "ring");
        let mut stream = server.connect();
        let request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50);
        for round in 0..3 {
            stream.write_all(request.as_bytes()).unwrap();
            for i in 0..50 {
                let response = support::read_response(&mut stream)
                    .unwrap_or_else(|| panic!("{driver}: round {round}, answer {i}"));
                assert_eq!(response.status, 200, "{driver}: round {round}, answer {i}");
            }
        }
    }
}
