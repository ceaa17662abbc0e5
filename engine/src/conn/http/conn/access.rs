//! The access log, from the HTTP connection's side: the status read from an answer's head as
//! it leaves, the bytes sent, and one line per request ([`crate::conn::access_entry`]); a
//! request that becomes a WebSocket hands its entry to the session, whose end writes the
//! line. Nothing here runs when the log is off.

use std::net::IpAddr;

use super::Connection;
use crate::conn::ws::session_log::SessionLog;
use crate::server::access_log::status_of;
use crate::server::transport::Transport;

/// The status logged for a request that ended before any answer went out (nginx's 499,
/// "client closed request").
pub(super) const NO_ANSWER: u16 = 499;
/// The status logged for a request closed without an answer on purpose (`deny_action =
/// "close"`: nginx's 444).
pub(super) const CLOSED_SILENTLY: u16 = 444;
/// The status of an upgrade.
const SWITCHING_PROTOCOLS: u16 = 101;

impl<T: Transport> Connection<T> {
    /// Sees the bytes about to leave (`self.out`) for the open request's status.
    pub(super) fn log_sniff(&mut self) {
        let Some(entry) = self.log.as_deref_mut().filter(|e| e.open && e.status == 0) else {
            return;
        };
        let Some(start) = entry.mark.checked_sub(entry.sent) else {
            return;
        };
        let Some(answer) = usize::try_from(start).ok().and_then(|s| self.out.get(s..)) else {
            return;
        };
        entry.status = status_of(answer);
    }

    /// Counts `n` bytes written to the client.
    pub(super) fn log_sent(&mut self, n: usize) {
        if let Some(entry) = self.log.as_deref_mut() {
            entry.sent += n as u64;
        }
    }

    /// Notes the status of an answer written outside `self.out` (a file's head).
    pub(super) fn log_status(&mut self, status: u16) {
        if let Some(entry) = self.log.as_deref_mut().filter(|e| e.open && e.status == 0) {
            entry.status = status;
        }
    }

    /// Writes the open request's line: its status (`status` when given, else the one its
    /// answer's head showed, else [`NO_ANSWER`]) and the bytes of its answer so far, sent or
    /// queued.
    pub(super) fn log_end(&mut self, status: Option<u16>) {
        self.log_sniff();
        if !self.log.as_ref().is_some_and(|entry| entry.open) {
            return;
        }
        let client = self.log_client();
        let (Some(log), Some(entry)) = (&self.ctx.access_log, self.log.as_deref_mut()) else {
            return;
        };
        let queued = entry.sent + self.out.len() as u64;
        let route = entry
            .route
            .map_or("", |i| self.ctx.router.routes()[i].path.as_str());
        let status = status
            .or((entry.status != 0).then_some(entry.status))
            .unwrap_or(NO_ANSWER);
        entry.record(
            log,
            client,
            status,
            queued.saturating_sub(entry.mark),
            route,
            None,
        );
    }

    /// The entry of a request answered 101, for its session's line (the connection keeps
    /// nothing of the log while it is a WebSocket); `None` when the log is off.
    pub(super) fn log_upgrade(&mut self) -> Option<Box<SessionLog>> {
        self.log_sniff();
        if !self.log.as_ref().is_some_and(|entry| entry.open) {
            self.log = None;
            return None;
        }
        let client = self.log_client();
        let entry = self.log.take()?;
        if entry.status != SWITCHING_PROTOCOLS {
            // Not an upgrade after all: the request's own line.
            self.log = Some(entry);
            self.log_end(None);
            self.log = None;
            return None;
        }
        let head_bytes = (entry.sent + self.out.len() as u64).saturating_sub(entry.mark);
        Some(Box::new(SessionLog::new(entry, client, head_bytes)))
    }

    /// The client a line names (after trusted proxies).
    fn log_client(&self) -> IpAddr {
        self.client
            .as_ref()
            .map(|slot| slot.address())
            .or(self.peer)
            .or_else(|| self.stream.io().peer_addr().ok().map(|a| a.ip()))
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}
