//! Refusing a request or a connection: the status PROTECTIONS.md names, then a polite close.

use std::time::{Duration, Instant};

use ringstream_protocol::http::{HttpDate, write_error_response};

use crate::protections::gate::Refusal;
use crate::server::runtime::timeout;
use crate::server::transport::{Transport, read_and_drop};

/// How long a refused client may keep sending before the socket is closed regardless.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How many bytes of a refused client's request are read and dropped at most.
const LINGER_BYTES: usize = 256 * 1024;
/// Answers a connection refused at accept (503 for a full server, 403 or 429 from the client
/// gate) with its status and `Retry-After`, without reading the request.
pub async fn refuse_unread<T: Transport>(
    io: T,
    refusal: Refusal,
    date: HttpDate,
    send_timeout: Duration,
) {
    let mut out = Vec::with_capacity(256);
    let retry_after = refusal.retry_after_header();
    let headers: &[(&str, &[u8])] = match &retry_after {
        Some((name, value)) => &[(name, value.as_bytes())],
        None => &[],
    };
    write_error_response(&mut out, refusal.status, &date, headers);
    send_then_linger(&io, out, send_timeout).await;
}

/// Sends `out` within `send_timeout`, then closes politely.
pub async fn send_then_linger<T: Transport>(io: &T, out: Vec<u8>, send_timeout: Duration) {
    if !matches!(
        timeout(send_timeout, io.write_all(out)).await,
        Some((Ok(()), _))
    ) {
        return;
    }
    linger(io).await;
}

/// FIN first, then what the client still sends is read and dropped for a bounded time and
/// byte count, so that its arrival cannot reset the connection before it reads the answer.
async fn linger<T: Transport>(io: &T) {
    if io.shutdown_write().await.is_ok() {
        read_and_drop(io, Instant::now() + LINGER_TIME, LINGER_BYTES).await;
    }
}
