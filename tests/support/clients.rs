//! Helpers of the per-client tests: servers with the health, echo, stats and metrics routes,
//! and an upgrade from a chosen loopback address.

use std::net::TcpStream;

use super::ws::upgrade_request;
use super::{Response, Server, ask, connect_from};

/// A two-worker server with the routes of [`config`], every client limited (`exempt = []`).
pub fn server(limits: &str, extra_routes: &str) -> Server {
    let config = config(&format!("exempt = []\n{limits}"), extra_routes);
    Server::with_config(&config, &["--workers", "2"])
}

/// The configuration of these tests: `limits` in `[limits]`, then the routes.
pub fn config(limits: &str, extra_routes: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/stats"
kind = "stats"

[[routes]]
path = "/metrics"
kind = "metrics"
{extra_routes}
"#
    )
}

/// A WebSocket upgrade from 127.0.0.`host`: the stream and the answer (101 or a refusal).
pub fn upgrade_from(server: &Server, host: u8) -> (TcpStream, Response) {
    let mut stream = connect_from(server, host);
    let response = ask(&mut stream, upgrade_request("/ws/echo", ""));
    (stream, response)
}

/// A GET of `path` with the header lines `extra`.
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}
