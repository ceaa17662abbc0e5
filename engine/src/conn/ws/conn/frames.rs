//! Frames in: every complete frame of a read parsed in place, counted against the quotas,
//! and answered (echoes in place or queued, pongs, the close answer) or handed to the role.

use super::*;
use crate::protections::frame_quotas::frame_rule;

impl<T: Transport> WsConnection<T> {
    /// Handles every complete frame in `buf[*pos..]`; `Some` when the connection must end.
    /// Answers keep the order of the frames they answer: echoes in place are written first,
    /// then `out`, and nothing goes in place once `out` holds something. Every ping gets its
    /// pong (Autobahn 2.10 requires it; RFC 6455 §5.5.3 would allow answering only the
    /// latest). A ping flood cannot queue pongs: nothing more is read until the answers are
    /// written, and pings count against `rate_limit`.
    pub(super) fn process(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        prefix: &[u8],
        route: &Route,
    ) -> Option<End> {
        let end = self.process_frames(buf, pos, prefix, route);
        if end.is_some() {
            // The closing paths write `out` alone.
            self.spill_in_place(buf);
        }
        end
    }

    /// [`Self::process`] without the hand-over of the echoes in place at the end.
    pub(super) fn process_frames(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        prefix: &[u8],
        route: &Route,
    ) -> Option<End> {
        loop {
            // A handler that is behind holds the rest until it makes room.
            if self.role.is_full() {
                return None;
            }
            let start = *pos;
            let (event, consumed) = match self.session.read(&mut buf[start..]) {
                Ok(Some(found)) => found,
                Ok(None) => return None,
                Err(e) => return Some(End::Fail(e.close_code(), e.reason().into())),
            };
            *pos += consumed;
            let traffic = self.traffic();
            traffic.messages_in.add(1);
            traffic.bytes_in.add(consumed as u64);
            if let Some(log) = &self.log {
                log.count_in(consumed);
            }
            // Every frame counts, control frames too; `bytes_per_minute` counts frame bytes,
            // and a compressed message's inflated size (what it gained comes with its last
            // frame). A close is never dropped: it ends the connection either way.
            let charged = consumed as u64 + self.session.inflation_growth();
            if !matches!(event, Event::Close { .. })
                && let Some(rule) = self.over_rate(charged, route)
            {
                match route.ws.on_limit {
                    OnLimit::Close => {
                        break Some(End::Close(close_code::POLICY, close_reason(rule).into()));
                    }
                    OnLimit::Drop => {
                        self.traffic().dropped.add(1);
                        if matches!(event, Event::Message { .. }) {
                            self.session.finish_message();
                        }
                        continue;
                    }
                }
            }
            if let Event::Message { text, payload } = &event
                && !matches!(self.role, Role::Echo)
            {
                let body = match payload {
                    Payload::InBuffer(range) => &buf[start..][range.clone()],
                    Payload::Assembled => self.session.assembled(),
                };
                self.role.take_message(&self.ctx, *text, body, unix_ms);
                self.session.finish_message();
                continue;
            }
            match event {
                Event::Message {
                    text,
                    payload: Payload::InBuffer(range),
                } if prefix.is_empty()
                    && self.out.is_empty()
                    && self.joins_in_place(range.len()) =>
                {
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    let frame = start + range.start..start + range.end;
                    let frame = rewrite_in_place(buf, frame, opcode);
                    self.count_out(1, frame.len());
                    self.in_place.push(frame);
                }
                Event::Ping(range) => {
                    let payload = &buf[start..][range];
                    write_frame_header(&mut self.out, OpCode::Pong, true, payload.len() as u64);
                    self.out.extend_from_slice(payload);
                }
                Event::Message { text, payload } => {
                    if self.out.is_empty() {
                        // Small echoes leave in one plain write: those in place go first.
                        self.spill_in_place(buf);
                    }
                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                    let body: &[u8] = match payload {
                        Payload::InBuffer(range) => &buf[start..][range],
                        Payload::Assembled => self.session.assembled(),
                    };
                    let before = self.out.len();
                    if let Some(compression) = &mut self.compression {
                        let fresh = &self.ctx.compressors;
                        compression.write_frame(&mut self.out, opcode, prefix, body, fresh);
                    } else {
                        let len = (prefix.len() + body.len()) as u64;
                        write_frame_header(&mut self.out, opcode, true, len);
                        self.out.extend_from_slice(prefix);
                        self.out.extend_from_slice(body);
                    }
                    self.count_out(1, self.out.len() - before);
                    self.session.finish_message();
                }
                Event::Close { code, reason } => {
                    // RFC 6455 §5.5.1: echo the status code; an empty close is answered empty.
                    write_close_frame(&mut self.out, code, &buf[start..][reason]);
                    return Some(End::Answered(code.unwrap_or(close_code::NO_STATUS)));
                }
                Event::Fragment | Event::Pong(_) => {}
            }
        }
    }

    /// The rate rule a frame of `bytes` breaks, if any ([`frame_rule`]).
    pub(super) fn over_rate(&mut self, bytes: u64, route: &Route) -> Option<Rule> {
        let client = self.client.as_ref();
        let gate = &self.ctx.gate;
        frame_rule(
            &mut self.rates,
            gate,
            client,
            self.check_client_rates,
            bytes,
            route,
        )
    }

    /// This connection's route counters.
    pub(super) fn traffic(&self) -> &Traffic {
        self.ctx.route_traffic(Some(self.route_index))
    }

    /// Counts `messages` in `bytes` of frames sent.
    pub(super) fn count_out(&self, messages: u64, bytes: usize) {
        let traffic = self.traffic();
        traffic.messages_out.add(messages);
        traffic.bytes_out.add(bytes as u64);
        if let Some(log) = &self.log {
            log.count_out(messages, bytes);
        }
    }

    /// Whether an echo of `len` payload bytes goes in place: the first of a read always (it
    /// leaves without a copy); more only while every one is large, where one vectored write
    /// beats copying them into the batch (for small ones a plain write of a copy is cheaper).
    pub(super) fn joins_in_place(&self, len: usize) -> bool {
        match self.in_place.first_len() {
            None => true,
            Some(first) => {
                len >= MIN_GATHERED && first >= MIN_GATHERED && self.in_place.len() < MAX_IN_PLACE
            }
        }
    }

    /// Moves the echoes waiting in the read buffer to the front of the write batch.
    pub(super) fn spill_in_place(&mut self, buf: &[u8]) {
        if self.in_place.is_empty() {
            return;
        }
        // `out` is empty but on the closing paths: its buffer is kept, not reallocated.
        let queued = (!self.out.is_empty()).then(|| std::mem::take(&mut self.out));
        for range in self.in_place.drain() {
            self.out.extend_from_slice(&buf[range]);
        }
        if let Some(queued) = queued {
            self.out.extend_from_slice(&queued);
        }
    }
}

/// Milliseconds since the Unix epoch, for sink lines.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
