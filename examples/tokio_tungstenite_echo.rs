//! The tokio-tungstenite peer of ringstream's WebSocket benchmarks: the echo server a Rust user
//! would write with tokio-tungstenite, on one thread (the benchmark gives every server one
//! core). Echoes text and binary messages on any path; tungstenite answers pings and closes.
//!
//! `cargo run --release --example tokio_tungstenite_echo -- 127.0.0.1:0`

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;

#[path = "support/tokio_server.rs"]
mod tokio_server;

fn main() -> std::io::Result<()> {
    tokio_server::serve_each(echo)
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}
