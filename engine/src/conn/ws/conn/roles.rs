//! What the roles other than echo add to the loop: a handler's queues (the pump), a broadcast
//! member's frames, a sink's lines and its writer's backpressure.

use super::*;

impl<T: Transport> WsConnection<T> {
    /// While the handler's inbound queue is full: reads nothing (TCP holds the client back),
    /// keeps the heartbeat going and serves the handler until it makes room.
    pub(super) async fn wait_for_room(
        &self,
        link: &Link,
        limits: &WsLimits,
        next_ping: &mut Instant,
    ) -> Result<(), End> {
        loop {
            if self.ctx.draining.get() {
                return Err(End::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
            }
            let signal = pin!(poll_fn(|cx| link.poll_signal(cx, true)));
            match self.guard.until(*next_ping, signal).await {
                Some(Signal::Room) => return Ok(()),
                Some(signal) => self.on_signal(signal).await?,
                None if Instant::now() >= *next_ping => {
                    *next_ping = Instant::now() + limits.heartbeat_interval;
                    self.ping().await.map_err(|()| End::Gone)?;
                }
                None => {}
            }
        }
    }

    /// Hands the lines encoded so far to the sink file's writer.
    pub(super) fn hand_over_sink_lines(&mut self) {
        if let Role::Sink(sink) = &mut self.role
            && !sink.lines.is_empty()
            && let Some(writer) = self
                .ctx
                .routes
                .get(self.route_index)
                .and_then(|state| state.sink.as_ref())
        {
            writer.append(std::mem::take(&mut sink.lines));
        }
    }

    /// The route's sink file writer, on a sink route with a file.
    pub(super) fn sink_writer(&self) -> Option<&SinkWriter> {
        match &self.role {
            Role::Sink(sink) if sink.to_file => {
                self.ctx.routes.get(self.route_index)?.sink.as_ref()
            }
            _ => None,
        }
    }

    /// While the sink file's writer is behind: reads nothing (TCP holds the client back) and
    /// keeps the heartbeat going until the writer has room again.
    pub(super) async fn wait_for_sink(
        &self,
        writer: &SinkWriter,
        limits: &WsLimits,
        next_ping: &mut Instant,
    ) -> Result<(), End> {
        while !writer.has_room() {
            if self.ctx.draining.get() {
                return Err(End::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
            }
            crate::server::runtime::sleep(SINK_RETRY).await;
            if Instant::now() >= *next_ping {
                *next_ping = Instant::now() + limits.heartbeat_interval;
                self.ping().await.map_err(|()| End::Gone)?;
            }
        }
        Ok(())
    }

    /// Acts on what the handler asked for: its queued frames are written (within
    /// `send_timeout`); a close request or a finished handler ends the connection after them.
    pub(super) async fn on_signal(&self, signal: Signal) -> Result<(), End> {
        let Some(link) = self.link() else {
            return Ok(());
        };
        let mut frames = Vec::new();
        let messages = link.take_outbound(&mut frames);
        if !frames.is_empty() {
            let traffic = self.traffic();
            traffic.messages_out.add(messages);
            traffic.bytes_out.add(frames.len() as u64);
            let frames = self.send(frames).await.map_err(|()| End::Gone)?;
            link.recycle_outbound(frames);
        }
        match signal {
            Signal::Outbound | Signal::Room => Ok(()),
            Signal::Close(code, reason) => Err(End::Close(code, reason.into())),
            Signal::HandlerGone(code) => {
                let reason = if code == close_code::INTERNAL_ERROR {
                    "internal error"
                } else {
                    ""
                };
                Err(End::Close(code, reason.into()))
            }
        }
    }

    /// Writes the frames queued for this broadcast member, in batches, each within
    /// `send_timeout`. When the slow-consumer policy closes the member, the batch in flight
    /// gets [`CLOSE_WAIT`] to leave (so the close frame follows whole frames), then the
    /// connection closes with `slow_consumer_code`.
    pub(super) async fn write_member_frames(&self) -> Result<(), End> {
        let Role::Broadcast(broadcast) = &self.role else {
            return Ok(());
        };
        let mut batch = broadcast.batch.take();
        let member = broadcast.membership.member();
        let code = self.ctx.router.routes()[self.route_index]
            .ws
            .slow_consumer_code;
        let slow = || End::Close(code, SLOW_CONSUMER_REASON.into());
        loop {
            if member.must_close() {
                return Err(slow());
            }
            batch.clear();
            member.take_frames(&mut batch, MAX_FRAMES_PER_WRITE);
            if batch.is_empty() {
                break;
            }
            let traffic = self.traffic();
            traffic.messages_out.add(batch.len() as u64);
            traffic
                .bytes_out
                .add(batch.iter().map(|f| f.len() as u64).sum());
            let deadline = Instant::now() + self.send_timeout;
            let mut write = pin!(self.io.write_frames(batch));
            let closed = poll_fn(|cx| member.poll_closed(cx));
            let written = match self
                .guard
                .within_pinned(deadline, pin!(select(write.as_mut(), closed)))
                .await
            {
                Some(Either::Left((written, _))) => written,
                Some(Either::Right(((), _))) => {
                    let grace = Instant::now() + CLOSE_WAIT;
                    return match self.guard.within_pinned(grace, write).await {
                        Some((Ok(()), _)) => Err(slow()),
                        _ => Err(End::Gone),
                    };
                }
                None => return Err(End::Gone),
            };
            batch = match written {
                (Ok(()), batch) => batch,
                (Err(_), _) => return Err(End::Gone),
            };
        }
        broadcast.batch.set(batch);
        Ok(())
    }
}
