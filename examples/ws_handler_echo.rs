//! WebSocket echo written as a handler (`recv` then `send`), on one worker: the benchmark's
//! measure of what the handler API costs against the built-in turbo echo route.
//!
//! ```text
//! cargo run --release --example ws_handler_echo -- 127.0.0.1:0
//! ```

use ringstream_engine::config::{RouteKind, ServerConfig};
use ringstream_engine::handler::WsHandler;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into())
        .parse()?;
    let echo = WsHandler::new(|mut ws| async move {
        while let Some(message) = ws.recv().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut config = ServerConfig::new(listen).route("/ws/echo", RouteKind::handler(echo));
    config.workers = 1;
    // The load generator's 16 KiB messages, with room to spare.
    for route in &mut config.routes {
        route.ws.max_message_size = 1 << 20;
    }
    ringstream_engine::run(config, |addr| println!("listening on {addr}"))?;
    Ok(())
}
