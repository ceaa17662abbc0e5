//! The floor of the proxy benchmark (`benches/proxy_load.py`): a bare TCP relay that knows no
//! HTTP. Each accepted client connection gets one upstream connection of its own, and bytes are
//! copied both ways as they come (one receive, one send, no parsing, no pooling, no headers
//! added); when either side closes or fails, both connections are dropped.
//!
//! One thread on compio's io_uring driver, with the engine's ring flags (`COOP_TASKRUN |
//! TASKRUN_FLAG`); pin it with `taskset`. It prints `listening on ADDR` first, as ringstream
//! does. Whatever an HTTP proxy does on top of this is its own cost: the relay's CPU time per
//! request is the least any proxy can spend on this kernel.
//!
//! ```text
//! cargo build --release --example raw_relay
//! taskset -c 0 target/release/examples/raw_relay 127.0.0.1:0 127.0.0.1:8000
//! ```

use std::net::SocketAddr;

use compio::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

/// Bytes asked for per receive: a small response or request fits whole.
const BUFFER: usize = 16 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let upstream: SocketAddr = args
        .next()
        .ok_or("usage: raw_relay LISTEN UPSTREAM")?
        .parse()?;
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true);
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()?;
    runtime.block_on(serve(listen, upstream))?;
    Ok(())
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        compio::runtime::spawn(relay(client, upstream)).detach();
    }
}

/// Opens the client's upstream connection and copies both ways until one direction ends.
async fn relay(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Whichever direction ends first ends the pair: both sockets close when this returns.
    futures_util::future::select(
        std::pin::pin!(pipe(&client, &server)),
        std::pin::pin!(pipe(&server, &client)),
    )
    .await;
}

/// Copies what `from` receives to `to` until `from` closes or either side fails.
async fn pipe(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = Vec::with_capacity(BUFFER);
    loop {
        buf.clear();
        let BufResult(read, returned) = from.read(buf).await;
        buf = returned;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let BufResult(written, returned) = to.write_all(buf).await;
        buf = returned;
        if written.is_err() {
            return;
        }
    }
}
