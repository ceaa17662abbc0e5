//! Frames out: queued answers, pings, and the close handshake (or the failure that skips it).

use super::*;
use crate::server::transport::read_and_drop;

impl<T: Transport> WsConnection<T> {
    /// Sends a heartbeat ping.
    pub(super) async fn ping(&self) -> Result<(), ()> {
        let mut ping = Vec::with_capacity(2);
        write_frame_header(&mut ping, OpCode::Ping, true, 0);
        self.send(ping).await.map(drop)
    }

    /// Writes the batch of answers within `send_timeout`.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let mut out = self.send(out).await.map_err(|()| End::Gone)?;
        out.clear();
        self.out = out;
        Ok(())
    }

    /// Writes `frames` within the route's `send_timeout`; gives the buffer back.
    pub(super) async fn send(&self, frames: Vec<u8>) -> Result<Vec<u8>, ()> {
        let deadline = Instant::now() + self.send_timeout;
        match self
            .stream
            .guard()
            .within(deadline, self.stream.io().write_all(frames))
            .await
        {
            Some((Ok(()), frames)) => Ok(frames),
            _ => Err(()),
        }
    }

    /// Writes what is queued and a close frame within [`CLOSE_WAIT`]; false if it could not.
    pub(super) async fn send_close_frame(
        &mut self,
        code: u16,
        reason: &str,
        deadline: Instant,
    ) -> bool {
        let mut frame = std::mem::take(&mut self.out);
        write_close_frame(&mut frame, Some(code), reason.as_bytes());
        matches!(
            self.stream
                .guard()
                .within(deadline, self.stream.io().write_all(frame))
                .await,
            Some((Ok(()), _))
        )
    }

    /// Fails the connection: the close frame, then the FIN at once (the server closes the TCP
    /// connection); what the client still sends, its close frame included, is read and
    /// dropped unparsed for up to [`CLOSE_WAIT`], so that its arrival cannot reset the
    /// connection before the close frame is delivered.
    pub(super) async fn fail(&mut self, code: u16, reason: &str) {
        let deadline = Instant::now() + CLOSE_WAIT;
        if !self.send_close_frame(code, reason, deadline).await {
            return;
        }
        if self.stream.io().shutdown_write().await.is_ok() {
            // Bounded by time only: a client may still be sending a large message. Boxed: its
            // timer would otherwise sit in the future every open WebSocket keeps
            // (BENCHMARKS.md, idle memory).
            Box::pin(read_and_drop(self.stream.io(), deadline, usize::MAX)).await;
        }
    }

    /// Server-initiated close: the close frame, then up to [`CLOSE_WAIT`] for the client's
    /// close frame (RFC 6455 §7.1.1: the server closes the TCP connection after it).
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        let deadline = Instant::now() + CLOSE_WAIT;
        if !self.send_close_frame(code, reason, deadline).await {
            return;
        }
        // Whatever the client still sends is parsed only to find its close frame.
        let mut buf = Vec::with_capacity(256);
        loop {
            let mut pos = 0;
            loop {
                match self.session.read(&mut buf[pos..]) {
                    Ok(Some((Event::Close { .. }, _))) | Err(_) => return,
                    Ok(Some((_, consumed))) => {
                        pos += consumed;
                        self.session.finish_message();
                    }
                    Ok(None) => break,
                }
            }
            buf.drain(..pos);
            let want = self.session.bytes_needed(&buf);
            if buf.capacity() < want.max(buf.len() + 1) {
                buf.reserve(want.max(buf.len() + 256) - buf.len());
            }
            match self
                .stream
                .guard()
                .within(deadline, self.stream.io().read_append(buf))
                .await
            {
                Some((Ok(n), returned)) if n > 0 => buf = returned,
                _ => return,
            }
        }
    }
}
