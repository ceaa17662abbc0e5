//! TLS on the listeners (`[tls]`): the handshake of an accepted connection, and what a client
//! that speaks plain HTTP to the TLS port is told.
//!
//! The handshake runs on the connection's own task, within `header_timeout` (a client that
//! stalls mid-handshake is cut when it passes), before the connection is served as HTTP over
//! [`TlsTransport`]. A connection refused at accept (the server full, a client over its limits)
//! is closed without an answer on a TLS listener: answering would cost the handshake the
//! refusal exists to spare.

mod transport;

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConnection;

pub use transport::TlsTransport;

use crate::conn::http;
use crate::protections::gate::ClientSlot;
use crate::server::conn_count::ConnSlot;
use crate::server::context::WorkerContext;
use crate::server::registry::ConnGuard;
use crate::server::runtime::timeout;
use crate::server::transport::{TcpTransport, Transport, read_and_drop};

/// Serves an accepted connection of a TLS listener: its handshake within `header_timeout`,
/// then HTTP over TLS (see `http::serve` for the other arguments).
pub async fn serve(
    tcp: TcpTransport,
    config: Arc<rustls::ServerConfig>,
    ctx: Rc<WorkerContext>,
    guard: ConnGuard,
    client: Option<ClientSlot>,
    conn_slot: ConnSlot,
) {
    let counters = &ctx.counters().tls;
    match timeout(ctx.limits.header_timeout, accept(tcp, config)).await {
        Some(Ok(tls)) => {
            counters.done.add(1);
            http::serve(tls, Rc::clone(&ctx), guard, client, conn_slot).await;
        }
        Some(Err(HandshakeFailure::PlainHttp(tcp))) => {
            counters.plain_http.add(1);
            answer_plain_http(tcp, ctx.send_timeout()).await;
        }
        Some(Err(HandshakeFailure::Failed(error))) => {
            counters.failed.add(1);
            tracing::debug!(%error, "TLS handshake failed");
        }
        None => counters.timed_out.add(1),
    }
}

/// How a handshake ended when it did not succeed.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// The client spoke plain HTTP: its connection, to answer in plain.
    PlainHttp(TcpTransport),
    /// The peer closed, or the bytes were not TLS, or the TLS failed (an alert was sent).
    Failed(io::Error),
}

/// Runs the TLS handshake on `tcp` with `config`; the caller bounds it in time.
pub async fn accept(
    tcp: TcpTransport,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsTransport, HandshakeFailure> {
    let session =
        ServerConnection::new(config).map_err(|e| HandshakeFailure::Failed(io::Error::other(e)))?;
    let tls = TlsTransport::new(tcp, session);
    let mut first = true;
    while tls.session().is_handshaking() {
        if !tls.has_incoming() {
            let read = tls
                .read_ciphertext()
                .await
                .map_err(HandshakeFailure::Failed)?;
            if read == 0 {
                return Err(HandshakeFailure::Failed(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
        }
        if std::mem::take(&mut first) && tls.first_byte().is_some_and(|b| b.is_ascii_uppercase()) {
            // A TLS connection opens with a handshake record (0x16); an HTTP request with
            // its method's capital letters.
            return Err(HandshakeFailure::PlainHttp(tls.into_tcp()));
        }
        let processed = tls.process(false);
        if tls.wants_write() {
            let flushed = tls.flush().await;
            processed.map_err(HandshakeFailure::Failed)?;
            flushed.map_err(HandshakeFailure::Failed)?;
        } else {
            processed.map_err(HandshakeFailure::Failed)?;
        }
    }
    Ok(tls)
}

/// What a client that sent plain HTTP to the TLS port reads before the connection closes.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 60\r\n\
Connection: close\r\n\r\n\
This port speaks TLS: ask again with https:// (or wss://).\r\n";

/// Answers 400 in plain HTTP to a client that spoke plain HTTP to the TLS port, then closes
/// (what it still sends is read and dropped for a moment, so the answer is not lost to a
/// reset).
pub async fn answer_plain_http(tcp: TcpTransport, send_timeout: Duration) {
    let sent =
        crate::server::runtime::timeout(send_timeout, tcp.write_all(PLAIN_HTTP_ANSWER.to_vec()))
            .await;
    if matches!(sent, Some((Ok(()), _))) && tcp.shutdown_write().await.is_ok() {
        read_and_drop(&tcp, Instant::now() + Duration::from_secs(1), 64 * 1024).await;
    }
}

#[cfg(test)]
mod tests {
    use super::PLAIN_HTTP_ANSWER;

    #[test]
    fn the_plain_http_answer_says_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }
}
