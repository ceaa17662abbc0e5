//! The floors of the proxy benchmarks (`benches/proxy_load.py`, `benches/ws_proxy_load.py`): a
//! bare TCP relay that knows no HTTP. Each accepted client connection gets one upstream
//! connection of its own, and bytes are copied both ways as they come (no parsing, no pooling,
//! no headers added); when either side closes or fails, both connections are dropped.
//!
//! Each side receives either per read (one receive submitted per read into the pair's own
//! 16 KiB buffer, the default) or, with `--multishot`, through one multishot receive
//! (`IORING_RECV_MULTISHOT`) armed for the connection's life into the thread's provided-buffer
//! ring (512 × 16 KiB, as a ringstream worker's), each ring buffer sent on as it is and given
//! back once sent: no copy and no receive submitted per message, the least an io_uring relay
//! can submit. A dry ring only delays a receive there (armed again until a buffer is free),
//! with no bound per connection, as befits a floor and not a server.
//!
//! One thread on compio's io_uring driver, with the engine's ring flags (`COOP_TASKRUN |
//! TASKRUN_FLAG`); pin it with `taskset`. It prints `listening on ADDR` first, as ringstream
//! does. Whatever a proxy does on top of this is its own cost: the relay's CPU time per request
//! or message is the least any proxy can spend on this kernel with io_uring.
//!
//! ```text
//! cargo build --release --example raw_relay
//! taskset -c 0 target/release/examples/raw_relay 127.0.0.1:0 127.0.0.1:8000 [--multishot]
//! ```

use std::net::SocketAddr;
use std::num::NonZero;

use compio::BufResult;
use compio::driver::ToSharedFd;
use compio::driver::op::{RecvFlags, RecvMulti};
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::{Runtime, SubmitMultiStream};
use futures_util::StreamExt;

/// Bytes asked for per receive, and the size of each ring buffer: a small response or request
/// fits whole.
const BUFFER: usize = 16 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let upstream: SocketAddr = args
        .next()
        .ok_or("usage: raw_relay LISTEN UPSTREAM [--multishot]")?
        .parse()?;
    let multishot = args.next().as_deref() == Some("--multishot");
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .capacity(4096)
        .coop_taskrun(true)
        .taskrun_flag(true);
    if multishot {
        proactor
            .buffer_pool_size(NonZero::new(512).ok_or("no buffers")?)
            .buffer_pool_buffer_len(BUFFER);
    }
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()?;
    runtime.block_on(serve(listen, upstream, multishot))?;
    Ok(())
}

async fn serve(listen: SocketAddr, upstream: SocketAddr, multishot: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        compio::runtime::spawn(relay(client, upstream, multishot)).detach();
    }
}

/// Opens the client's upstream connection and copies both ways until one direction ends.
async fn relay(client: TcpStream, upstream: SocketAddr, multishot: bool) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Whichever direction ends first ends the pair: both sockets close when this returns.
    if multishot {
        futures_util::future::select(
            std::pin::pin!(pipe_from_ring(&client, &server)),
            std::pin::pin!(pipe_from_ring(&server, &client)),
        )
        .await;
    } else {
        futures_util::future::select(
            std::pin::pin!(pipe(&client, &server)),
            std::pin::pin!(pipe(&server, &client)),
        )
        .await;
    }
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

/// Sends each ring buffer `from` receives to `to`, until `from` closes or either side fails.
async fn pipe_from_ring(from: &TcpStream, mut to: &TcpStream) {
    let fd = from.to_shared_fd();
    let runtime = Runtime::current();
    let mut received = std::pin::pin!(SubmitMultiStream::new(move || {
        let pool = runtime.buffer_pool()?;
        let receive = RecvMulti::new(fd.clone(), &pool, 0, RecvFlags::empty())?;
        Ok(runtime.submit_multi(receive).into_managed(pool))
    }));
    while let Some(item) = received.next().await {
        let buffer = match item {
            Ok(buffer) if buffer.is_empty() => return,
            Ok(buffer) => buffer,
            // The ring ran dry (every buffer waits in a send or a queued completion): the
            // kernel ended the receive without taking a byte; the stream arms it again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
            Err(_) => return,
        };
        let BufResult(written, _) = to.write_all(buffer).await;
        if written.is_err() {
            return;
        }
    }
}
