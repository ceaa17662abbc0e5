//! [`TlsTransport`]: the [`Transport`] of an https or wss connection. rustls keeps the TLS
//! state (records, keys, alerts); this file moves its bytes over the connection's TCP
//! transport.
//!
//! One read may stay pending while writes go out (as on plain TCP): the session sits in a
//! `RefCell` borrowed only between awaits, and ciphertext leaves in the order rustls queued
//! it, one writer at a time (an async mutex): plaintext is encrypted into rustls's queue, and
//! whoever holds the turn writes everything queued. What a read brings that rustls cannot take
//! yet (it holds at most a record's worth of plaintext) waits in the connection's own buffer.

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::ops::Range;

use bytes::Bytes;
use futures_util::lock::{Mutex, MutexGuard};
use rustls::ServerConnection;

use crate::server::transport::{FileSource, GatherResult, TcpTransport, Transport};

/// A full TLS record and its header: the most plaintext taken from rustls at once.
const RECORD_ROOM: usize = 16 * 1024 + 512;
/// Room for ciphertext a read starts with (a ClientHello fits; an idle connection's pending
/// read holds no more than this).
const MIN_READ_ROOM: usize = 2 * 1024;
/// Room a read grows to while the peer sends in bulk.
const MAX_READ_ROOM: usize = 64 * 1024;
/// A file is sent over TLS in pieces of this many bytes (read, encrypted, written).
const FILE_PIECE: usize = 64 * 1024;

/// Ciphertext read and not yet handed to rustls.
#[derive(Debug)]
struct Incoming {
    buf: Vec<u8>,
    start: usize,
    /// Room the next read asks for: doubled after a read that filled it, halved after one that
    /// used a quarter of it, between [`MIN_READ_ROOM`] and [`MAX_READ_ROOM`].
    room: usize,
}

impl Default for Incoming {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            room: MIN_READ_ROOM,
        }
    }
}

/// An https or wss connection after its handshake (or during it: see `super::accept`).
pub struct TlsTransport {
    tcp: TcpTransport,
    session: RefCell<ServerConnection>,
    incoming: RefCell<Incoming>,
    /// The turn to write ciphertext, and the buffer it is written from.
    outgoing: Mutex<Vec<u8>>,
    /// The file pieces' buffer, kept between pieces.
    file_buf: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// A TLS failure as an I/O error.
fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl TlsTransport {
    /// Reads `len` bytes of `file` from `offset` a piece at a time (through io_uring, or on
    /// the blocking pool when `cold`) and sends each encrypted.
    async fn send_file_pieces(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
        cold: bool,
    ) -> io::Result<usize> {
        let mut done = 0;
        let mut piece = std::mem::take(&mut *self.file_buf.borrow_mut());
        while done < len {
            piece.clear();
            let (at, want) = (offset + done as u64, (len - done).min(FILE_PIECE));
            let (result, read) = if cold {
                file.read_at_in_pool(piece, at, want).await
            } else {
                file.read_at(piece, at, want).await
            };
            piece = read;
            match result {
                Ok(0) => break,
                Ok(n) => {
                    self.send([&piece[..n]]).await?;
                    done += n;
                }
                Err(e) => return Err(e),
            }
        }
        *self.file_buf.borrow_mut() = piece;
        Ok(done)
    }

    pub(super) fn new(tcp: TcpTransport, session: ServerConnection) -> Self {
        Self {
            tcp,
            session: RefCell::new(session),
            incoming: RefCell::default(),
            outgoing: Mutex::new(Vec::new()),
            file_buf: RefCell::default(),
        }
    }

    /// The session, for the handshake and for what it negotiated.
    pub(super) fn session(&self) -> std::cell::Ref<'_, ServerConnection> {
        self.session.borrow()
    }

    /// Gives up the TCP transport (a client that spoke plain HTTP: it is answered in plain).
    pub(super) fn into_tcp(self) -> TcpTransport {
        self.tcp
    }

    /// Whether ciphertext already read waits for rustls.
    pub(super) fn has_incoming(&self) -> bool {
        let incoming = self.incoming.borrow();
        incoming.start < incoming.buf.len()
    }

    /// Reads more ciphertext from the socket into the incoming buffer; `Ok(0)` when the peer
    /// closed its side. The read asks for as much room as the peer's last reads used, so an
    /// idle connection (or a stalled handshake) holds a small buffer and a bulk sender a
    /// large one.
    pub(super) async fn read_ciphertext(&self) -> io::Result<usize> {
        let (mut buf, room) = {
            let mut incoming = self.incoming.borrow_mut();
            if incoming.start == incoming.buf.len() {
                incoming.buf.clear();
                incoming.start = 0;
                if incoming.buf.capacity() > 2 * incoming.room {
                    incoming.buf = Vec::new();
                }
            }
            (std::mem::take(&mut incoming.buf), incoming.room)
        };
        buf.reserve(room);
        let (result, buf) = self.tcp.read_append(buf).await;
        let mut incoming = self.incoming.borrow_mut();
        incoming.buf = buf;
        if let Ok(read) = result {
            if read >= room {
                incoming.room = (room * 2).min(MAX_READ_ROOM);
            } else if read < room / 4 {
                incoming.room = (room / 2).max(MIN_READ_ROOM);
            }
        }
        result
    }

    /// The first bytes read, before any went to rustls.
    pub(super) fn first_byte(&self) -> Option<u8> {
        let incoming = self.incoming.borrow();
        incoming.buf.get(incoming.start).copied()
    }

    /// Hands rustls what it can take of the ciphertext read (all of it, unless its plaintext
    /// buffer fills first), or tells it the peer closed (`eof`); a TLS error is sent to the
    /// peer as an alert by the next [`Self::flush`].
    pub(super) fn process(&self, eof: bool) -> io::Result<()> {
        let mut session = self.session.borrow_mut();
        if eof {
            session.read_tls(&mut io::empty())?;
            return session.process_new_packets().map(drop).map_err(tls_error);
        }
        let mut incoming = self.incoming.borrow_mut();
        while incoming.start < incoming.buf.len() {
            let Incoming { buf, start, .. } = &mut *incoming;
            let mut rest = &buf[*start..];
            let taken = match session.read_tls(&mut rest) {
                Ok(taken) => taken,
                // rustls holds a record's worth of plaintext: the reader takes it first.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(e),
            };
            *start += taken;
            let state = session.process_new_packets().map_err(tls_error)?;
            if taken == 0 || state.peer_has_closed() {
                // After close_notify nothing more is read: the rest is dropped.
                *start = buf.len();
            }
        }
        Ok(())
    }

    /// Writes out everything rustls has queued (handshake messages, records, alerts), one
    /// writer at a time, in queue order.
    pub(super) async fn flush(&self) -> io::Result<()> {
        let out = self.outgoing.lock().await;
        self.write_queued(out).await
    }

    /// As [`Self::flush`], unless a writer holds the turn: it writes what rustls queued meanwhile
    /// before it lets go, and a read must not wait behind a write the peer is slow to take.
    async fn flush_unless_writing(&self) -> io::Result<()> {
        match self.outgoing.try_lock() {
            Some(out) => self.write_queued(out).await,
            None => Ok(()),
        }
    }

    /// Writes what rustls has queued, with the turn `out` (and its buffer).
    async fn write_queued(&self, mut out: MutexGuard<'_, Vec<u8>>) -> io::Result<()> {
        loop {
            out.clear();
            {
                let mut session = self.session.borrow_mut();
                while session.wants_write() {
                    session.write_tls(&mut *out)?;
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            let (result, buf) = self.tcp.write_all(std::mem::take(&mut *out)).await;
            *out = buf;
            result?;
        }
    }

    /// Whether rustls has something to send.
    pub(super) fn wants_write(&self) -> bool {
        self.session.borrow().wants_write()
    }

    /// Encrypts `parts` in order and writes them out.
    async fn send<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        for part in parts {
            let mut rest = part;
            while !rest.is_empty() {
                let taken = self.session.borrow_mut().writer().write(rest)?;
                if taken == 0 {
                    // rustls's queue is full: write it out, then go on.
                    self.flush().await?;
                }
                rest = &rest[taken..];
            }
        }
        self.flush().await
    }

    /// Moves decrypted bytes into the spare capacity of `buf` (a record's worth when it has
    /// none), copied straight from rustls's buffer: `None` when none are ready.
    fn take_plaintext(&self, buf: &mut Vec<u8>) -> Option<io::Result<usize>> {
        let mut session = self.session.borrow_mut();
        let mut reader = session.reader();
        let taken = match reader.fill_buf() {
            Ok(chunk) => {
                let room = match buf.capacity() - buf.len() {
                    0 => RECORD_ROOM,
                    room => room,
                };
                let taken = chunk.len().min(room);
                buf.extend_from_slice(&chunk[..taken]);
                taken
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            // The peer closed without close_notify: its end, as on plain TCP.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Some(Ok(0)),
            Err(e) => return Some(Err(e)),
        };
        // An empty chunk: close_notify was received.
        reader.consume(taken);
        Some(Ok(taken))
    }

    async fn read_plaintext(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            if let Some(result) = self.take_plaintext(buf) {
                return result;
            }
            let eof = if self.has_incoming() {
                false
            } else {
                self.read_ciphertext().await? == 0
            };
            let processed = self.process(eof);
            if self.wants_write() {
                // An alert (sent before the error is reported), a key update or a session
                // ticket.
                let flushed = self.flush_unless_writing().await;
                processed?;
                flushed?;
            } else {
                processed?;
            }
        }
    }
}

impl Transport for TlsTransport {
    async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let result = self.read_plaintext(&mut buf).await;
        (result, buf)
    }

    async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let result = self.send([&buf[..]]).await;
        (result, buf)
    }

    async fn write_range(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let result = self.send([&buf[range]]).await;
        (result, buf)
    }

    async fn write_ranges(&self, buf: Vec<u8>, ranges: Vec<Range<usize>>) -> GatherResult {
        let result = self.send(ranges.iter().map(|r| &buf[r.clone()])).await;
        (result, buf, ranges)
    }

    async fn write_frames(&self, frames: Vec<Bytes>) -> (io::Result<()>, Vec<Bytes>) {
        let result = self.send(frames.iter().map(|f| &f[..])).await;
        (result, frames)
    }

    async fn write_all_zerocopy(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        // Records are encrypted into rustls's own buffers: there is nothing to send in place.
        self.write_all(buf).await
    }

    /// Reads the file a piece at a time and sends it encrypted: `sendfile(2)` cannot encrypt.
    async fn send_file(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
        _after_pause: bool,
    ) -> io::Result<usize> {
        self.send_file_pieces(file, offset, len, false).await
    }

    /// [`TlsTransport::send_file`] with the reads on the runtime's blocking pool.
    async fn send_cold_file(
        &self,
        file: &FileSource,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        self.send_file_pieces(file, offset, len, true).await
    }

    fn set_cork(&self, on: bool) {
        self.tcp.set_cork(on);
    }

    /// Sends close_notify, then the FIN.
    async fn shutdown_write(&self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush().await?;
        self.tcp.shutdown_write().await
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    fn peer_gone(&self) -> bool {
        self.tcp.peer_gone()
    }
}
