//! What a role may use of its connection ([`RoleIo`]): the stream, the deadlines, the route's
//! counters, the loop's writes, and the drain check with the heartbeat.

use super::*;

impl<T: Transport> RoleIo for WsConnection<T> {
    type Io = T;

    fn io(&self) -> &T {
        self.stream.io()
    }

    fn guard(&self) -> &ConnGuard {
        self.stream.guard()
    }

    fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    fn count_out(&self, messages: u64, bytes: usize) {
        WsConnection::count_out(self, messages, bytes);
    }

    async fn send(&self, frames: Vec<u8>) -> Result<Vec<u8>, ()> {
        WsConnection::send(self, frames).await
    }

    async fn keep_alive(&self, next_ping: &mut Instant) -> Result<(), RoleEnd> {
        if self.ctx.draining.get() {
            return Err(RoleEnd::Close(close_code::GOING_AWAY, DRAIN_REASON.into()));
        }
        if Instant::now() >= *next_ping {
            let heartbeat = self.ctx.router.routes()[self.route_index]
                .ws
                .heartbeat_interval;
            *next_ping = Instant::now() + heartbeat;
            self.ping().await.map_err(|()| RoleEnd::Gone)?;
        }
        Ok(())
    }
}
