//! A WebSocket session's access log line: the upgrade request's entry, kept from the 101 to
//! the session's end, with the messages and bytes each way and the first close seen (whose
//! side and code). The session owns it only when the access log is on.

use std::cell::Cell;
use std::net::IpAddr;

use ringstream_protocol::ws::close_code;

use crate::conn::access_entry::AccessEntry;
use crate::server::access_log::{ClosedBy, SessionFields, WorkerAccessLog};

/// The status a session's line carries.
const SWITCHING_PROTOCOLS: u16 = 101;

/// One session's line in the making.
#[derive(Debug)]
pub(crate) struct SessionLog {
    entry: Box<AccessEntry>,
    client: IpAddr,
    /// Bytes of the 101 answer.
    head_bytes: u64,
    messages_in: Cell<u64>,
    bytes_in: Cell<u64>,
    messages_out: Cell<u64>,
    bytes_out: Cell<u64>,
    /// The first close frame seen: which side sent it, and its code (`None`: without one).
    first_close: Cell<Option<(ClosedBy, Option<u16>)>>,
}

impl SessionLog {
    /// The line of the request in `entry`, answered 101 to `client` in `head_bytes`.
    pub(crate) fn new(entry: Box<AccessEntry>, client: IpAddr, head_bytes: u64) -> Self {
        Self {
            entry,
            client,
            head_bytes,
            messages_in: Cell::new(0),
            bytes_in: Cell::new(0),
            messages_out: Cell::new(0),
            bytes_out: Cell::new(0),
            first_close: Cell::new(None),
        }
    }

    /// Counts a frame of `bytes` from the client.
    pub(crate) fn count_in(&self, bytes: usize) {
        self.messages_in.set(self.messages_in.get() + 1);
        self.bytes_in.set(self.bytes_in.get() + bytes as u64);
    }

    /// Counts `messages` in `bytes` of frames sent to the client.
    pub(crate) fn count_out(&self, messages: u64, bytes: usize) {
        self.messages_out.set(self.messages_out.get() + messages);
        self.bytes_out.set(self.bytes_out.get() + bytes as u64);
    }

    /// Notes a close frame `by` sent, unless one came before.
    pub(crate) fn saw_close(&self, by: ClosedBy, code: Option<u16>) {
        if self.first_close.get().is_none() {
            self.first_close.set(Some((by, code)));
        }
    }

    /// Writes the line: the session ended by `ended_by` (the side whose connection ended, or
    /// ringstream), with `code` when ringstream closed it. A close frame seen before decides
    /// the side and the code.
    pub(crate) fn finish(
        mut self,
        log: &WorkerAccessLog,
        route: &str,
        ended_by: ClosedBy,
        code: Option<u16>,
    ) {
        let (closed_by, close_code) = self
            .first_close
            .get()
            .unwrap_or((ended_by, code.filter(|&c| c != close_code::ABNORMAL)));
        let session = SessionFields {
            messages_in: self.messages_in.get(),
            bytes_in: self.bytes_in.get(),
            messages_out: self.messages_out.get(),
            bytes_out: self.bytes_out.get(),
            close_code: close_code.filter(|&c| c != close_code::NO_STATUS),
            closed_by,
        };
        let bytes = self.head_bytes + session.bytes_out;
        self.entry.record(
            log,
            self.client,
            SWITCHING_PROTOCOLS,
            bytes,
            route,
            Some(session),
        );
    }
}
