//! One sink connection: its messages encoded as JSON lines during a read, handed to the
//! file's writer once per read, and the wait while the writer is behind.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::file::{SinkWriter, encode_line};
use crate::routes::role::{RoleEnd, RoleIo};

/// How often a sink connection looks again whether the file's writer has caught up.
const WRITER_RETRY: Duration = Duration::from_millis(5);

/// A sink connection's lines of the current read.
#[derive(Debug)]
pub struct SinkMember {
    /// Whether the route has a sink file (its writer is in the route's shared state).
    to_file: bool,
    /// Named in each line.
    peer: IpAddr,
    /// Lines encoded since the last hand-over to the writer.
    lines: Vec<u8>,
}

impl SinkMember {
    /// A member of a route with a file (`to_file`) or without, for the client at `peer`.
    pub fn new(to_file: bool, peer: IpAddr) -> Self {
        Self {
            to_file,
            peer,
            lines: Vec::new(),
        }
    }

    /// Encodes one message as a line, when the route has a file (otherwise it is only counted).
    pub fn encode(&mut self, text: bool, body: &[u8], unix_ms: impl FnOnce() -> u64) {
        if self.to_file {
            encode_line(&mut self.lines, unix_ms(), self.peer, text, body);
        }
    }

    /// Hands the lines encoded so far to the file's writer.
    pub fn hand_over(&mut self, writer: Option<&SinkWriter>) {
        if let Some(writer) = writer
            && !self.lines.is_empty()
        {
            writer.append(std::mem::take(&mut self.lines));
        }
    }

    /// Whether this member may read more: its route has no file, or the file's writer has room.
    pub fn has_room(&self, writer: Option<&SinkWriter>) -> bool {
        !self.to_file || writer.is_none_or(SinkWriter::has_room)
    }

    /// While the file's writer is behind: reads nothing (TCP holds the client back) and keeps
    /// the heartbeat and the drain going until the writer has room.
    pub async fn wait_for_writer<C: RoleIo>(
        &self,
        conn: &C,
        writer: Option<&SinkWriter>,
        next_ping: &mut Instant,
    ) -> Result<(), RoleEnd> {
        while !self.has_room(writer) {
            conn.keep_alive(next_ping).await?;
            crate::server::runtime::sleep(WRITER_RETRY).await;
        }
        Ok(())
    }
}
