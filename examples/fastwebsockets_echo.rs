//! The fastwebsockets peer of ringstream's WebSocket benchmarks: the echo server of
//! fastwebsockets' documentation (hyper answers the upgrade, fastwebsockets reads and writes
//! the frames), on one thread (the benchmark gives every server one core). Echoes text and
//! binary messages on any path; fastwebsockets answers pings and closes.
//!
//! `cargo run --release --example fastwebsockets_echo -- 127.0.0.1:0`

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[path = "support/tokio_server.rs"]
mod tokio_server;

fn main() -> std::io::Result<()> {
    tokio_server::serve_each(serve)
}

/// One connection: hyper reads the upgrade request and answers it.
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(accept))
        .with_upgrades()
        .await;
}

/// The 101 for a WebSocket upgrade (an error answer otherwise); the echo runs once hyper has
/// handed the connection over.
async fn accept(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, upgraded) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = echo(upgraded).await;
    });
    Ok(response)
}

async fn echo(upgraded: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(upgraded.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
