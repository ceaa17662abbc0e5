//! The epoll baseline for ringstream's HTTP benchmark: a single-threaded tokio server that
//! answers `GET /health` exactly like ringstream does, with the same parser and response writer
//! (`ringstream-protocol`) and the same per-read timeout, so a comparison measures the runtime
//! and the engine around them, not a different HTTP implementation.
//!
//! `cargo run --release --example tokio_http_baseline -- 127.0.0.1:8081`

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringstream_protocol::http::{
    HEADER_SLOTS, HeadLimits, HttpDate, parse_request, write_error_response, write_response_head,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/tokio_server.rs"]
mod tokio_server;

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    max_uri_bytes: 8 * 1024,
};
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> std::io::Result<()> {
    tokio_server::serve_each(serve)
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut pos = 0;
        loop {
            let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
            match parse_request(&buf[pos..], &mut slots, &LIMITS) {
                Ok(Some(request)) => {
                    pos += request.head_len;
                    write_response_head(
                        &mut out,
                        200,
                        &date(),
                        &[("Content-Type", b"text/plain; charset=utf-8")],
                        Some(2),
                        !request.keep_alive,
                    );
                    out.extend_from_slice(b"ok");
                }
                Ok(None) => break,
                Err(e) => {
                    write_error_response(&mut out, e.status(), &date(), &[]);
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
        }
        buf.drain(..pos);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        match tokio::time::timeout(READ_TIMEOUT, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Formatted once per second, as ringstream's worker does.
fn date() -> HttpDate {
    thread_local! {
        static CACHE: Cell<(u64, Option<HttpDate>)> = const { Cell::new((0, None)) };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| match cache.get() {
        (cached, Some(date)) if cached == secs => date,
        _ => {
            let date = HttpDate::from_unix_secs(secs);
            cache.set((secs, Some(date)));
            date
        }
    })
}
