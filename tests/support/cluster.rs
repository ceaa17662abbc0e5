//! Nodes of a cluster for the cluster tests: the real binary with `[cluster]` on a driver,
//! members of its topics, and connections from a client address.

use std::io::Write;
use std::net::TcpStream;

use super::ws::{CLOSE, PING, TEXT, frame, read_frame, upgrade_request};
use super::{Server, ask, connect_from, read_response};

/// A node named `name`-`driver` on `driver` sharing the Redis servers `redis` (a TOML value: a
/// URL string or a list of them), with `limits` in `[limits]` and `cluster` in `[cluster]`.
/// Only 127.0.0.1 (the test's own `/stats` requests) is exempt: clients from 127.0.0.2 and up
/// are counted. Returns once every Redis server is reachable.
pub fn node(redis: &str, name: &str, driver: &str, limits: &str, cluster: &str) -> Server {
    let config = format!(
        r#"
[limits]
exempt = ["127.0.0.1/32"]
{limits}

[cluster]
redis = {redis}
node_id = "{name}-{driver}"
{cluster}

[[routes]]
path = "/stats"
kind = "stats"

[[routes]]
path = "/metrics"
kind = "metrics"

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/publish/{{topic}}"
kind = "publish"

[[routes]]
path = "/ws/broadcast/{{topic}}"
kind = "broadcast"
"#
    );
    let server = Server::with_config(&config, &["--workers", "2", "--io-driver", driver]);
    wait_reachable(&server, true);
    server
}

/// Waits until every Redis server is reachable from `server` (`true`) or one is not.
pub fn wait_reachable(server: &Server, reachable: bool) {
    server.wait_for_stats(|s| s["cluster"]["redis_reachable"] == reachable);
}

/// A member of `topic` on `server`, from 127.0.0.`host`.
pub fn member(server: &Server, host: u8, topic: &str) -> TcpStream {
    let mut stream = connect_from(server, host);
    stream
        .write_all(&upgrade_request(&format!("/ws/broadcast/{topic}"), ""))
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 101);
    stream
}

/// The next text message (pings skipped).
pub fn next_text(stream: &mut TcpStream) -> String {
    loop {
        let frame = read_frame(stream).expect("a message");
        match frame.opcode {
            PING => {}
            CLOSE => panic!("closed: {:?}", frame.close()),
            _ => return String::from_utf8(frame.payload).unwrap(),
        }
    }
}

/// Sends `text` as a masked text message.
pub fn send(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(&frame(true, 0, TEXT, text.as_bytes()))
        .unwrap();
}

/// A kept-alive connection from 127.0.0.`host` asking for `/health`: its status.
pub fn open_from(server: &Server, host: u8) -> (TcpStream, u16) {
    let mut stream = connect_from(server, host);
    let response = ask(&mut stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    (stream, response.status)
}
