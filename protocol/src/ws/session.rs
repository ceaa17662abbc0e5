//! The server side of a WebSocket connection above single frames: reassembly of fragmented
//! messages, the message-size and fragment-count limits (checked on each header, before its
//! payload is buffered), incremental UTF-8 validation, and close-frame validation.
//!
//! [`Session::read`] takes the unparsed bytes of the connection's read buffer, parses the first
//! frame if it is complete, unmasks its payload in place and says what it means.
//!
//! With permessage-deflate ([`Session::with_deflate`]), a message whose first frame has RSV1
//! set is compressed: its frames are gathered, then inflated with `max_message_size` as the cap
//! on the inflated size, and its text validated once inflated; it is handed over as
//! [`Payload::Assembled`].

use std::ops::Range;

use super::coding::{OpCode, close_code, is_valid_close_code};
use super::deflate::{DeflateParams, InflateError, Inflater};
use super::frame::{FrameError, FrameHeader};
use super::mask::apply_mask;

/// Limits a session enforces on every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest message, the sum of its fragments (close 1009).
    pub max_message_size: u64,
    /// Most fragments in one message (close 1009).
    pub max_fragments: usize,
}

/// Where the payload of a complete message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// In the caller's buffer, at this range of the slice passed to [`Session::read`].
    InBuffer(Range<usize>),
    /// Reassembled from fragments: [`Session::assembled`].
    Assembled,
}

/// What one frame meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message. Call [`Session::finish_message`] once it has been used.
    Message {
        /// Text (validated UTF-8) or binary.
        text: bool,
        /// Where its payload is.
        payload: Payload,
    },
    /// A fragment of a message that is not complete yet; nothing to do.
    Fragment,
    /// A ping; its payload is at this range of the slice passed to [`Session::read`].
    Ping(Range<usize>),
    /// A pong (payload range as for `Ping`).
    Pong(Range<usize>),
    /// A valid close frame: its code (none if the payload was empty) and the range of its
    /// UTF-8 reason.
    Close {
        /// The status code.
        code: Option<u16>,
        /// The reason text.
        reason: Range<usize>,
    },
}

/// A violation of RFC 6455 or of the session's limits: close the connection with
/// [`ProtocolError::close_code`] and [`ProtocolError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A malformed or forbidden frame header (1002).
    Frame(FrameError),
    /// A continuation frame with no message to continue (1002).
    StrayContinuation,
    /// A new data frame while a fragmented message is unfinished (1002).
    UnfinishedMessage,
    /// A one-byte close payload, or a close code that may not be sent (1002).
    InvalidClose,
    /// Text or a close reason that is not UTF-8 (1007).
    InvalidUtf8,
    /// A message larger than `max_message_size` (1009).
    MessageTooBig,
    /// A message in more than `max_fragments` fragments (1009).
    TooManyFragments,
    /// A compressed message that is not valid DEFLATE (1007).
    BadCompression,
}

impl ProtocolError {
    /// The close code to send (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Frame(e) => e.close_code(),
            Self::StrayContinuation | Self::UnfinishedMessage | Self::InvalidClose => {
                close_code::PROTOCOL_ERROR
            }
            Self::InvalidUtf8 | Self::BadCompression => close_code::INVALID_PAYLOAD,
            Self::MessageTooBig | Self::TooManyFragments => close_code::TOO_BIG,
        }
    }

    /// The close reason to send: short, for the client's logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Frame(_) => "protocol error",
            Self::StrayContinuation => "continuation frame without a message",
            Self::UnfinishedMessage => "new message before the last one was finished",
            Self::InvalidClose => "invalid close frame",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::MessageTooBig => "message too big",
            Self::TooManyFragments => "too many fragments",
            Self::BadCompression => "invalid compressed data",
        }
    }
}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

/// A fragmented message being reassembled.
#[derive(Debug, Default)]
struct Assembly {
    /// Whether a fragmented message is open (its first frame had FIN clear).
    open: bool,
    text: bool,
    /// The message is compressed (its first frame had RSV1 set).
    compressed: bool,
    fragments: usize,
    bytes: Vec<u8>,
    /// Length of the prefix of `bytes` known to be valid UTF-8 (text only).
    valid_utf8: usize,
}

/// One connection's message state.
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    assembly: Assembly,
    /// Whether `assembly` holds a complete message the caller has not finished with.
    complete: bool,
    /// Whether the peer has sent a close frame (valid or not).
    peer_closed: bool,
    /// permessage-deflate's side, when the extension was agreed (boxed: one word in the
    /// sessions without it, which every idle connection keeps).
    deflate: Option<Box<SessionDeflate>>,
}

/// A session's permessage-deflate state.
#[derive(Debug)]
struct SessionDeflate {
    params: DeflateParams,
    /// The decompressor: made for the first compressed message, and dropped after each one
    /// when the client starts every message afresh (no window is kept between messages).
    inflater: Option<Inflater>,
    /// Where a fragmented compressed message is inflated (then swapped into the assembly).
    inflated: Vec<u8>,
    /// What the last frame read gained by inflation: its message's inflated size less the
    /// compressed payload of all its frames (0 for any other frame).
    growth: u64,
}

impl Session {
    /// A session with no message in progress.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            assembly: Assembly::default(),
            complete: false,
            peer_closed: false,
            deflate: None,
        }
    }

    /// A session that takes messages compressed with permessage-deflate under `params`.
    pub fn with_deflate(limits: SessionLimits, params: &DeflateParams) -> Self {
        Self {
            deflate: Some(Box::new(SessionDeflate {
                params: *params,
                inflater: None,
                inflated: Vec::new(),
                growth: 0,
            })),
            ..Self::new(limits)
        }
    }

    /// Whether the peer has sent a close frame, valid or not: after answering it (or failing
    /// the connection because of it) no other close frame will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// How many bytes `unparsed` must hold before [`Session::read`] can make progress: the
    /// whole first frame once its header is known, else a little more than it holds.
    pub fn bytes_needed(&self, unparsed: &[u8]) -> usize {
        match FrameHeader::parse(unparsed) {
            Ok(Some((header, header_len))) => {
                let payload = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                header_len.saturating_add(payload)
            }
            _ => unparsed.len() + 1,
        }
    }

    /// Parses the first frame of `unparsed` if it is complete: `Ok(None)` when more bytes are
    /// needed, otherwise what it means and how many bytes it took. The payload is unmasked in
    /// place. A header that announces too much is refused before its payload has arrived.
    pub fn read(&mut self, unparsed: &mut [u8]) -> Result<Option<(Event, usize)>, ProtocolError> {
        let Some((header, header_len)) = FrameHeader::parse(unparsed)? else {
            return Ok(None);
        };
        if let Some(deflate) = &mut self.deflate {
            deflate.growth = 0;
        }
        self.peer_closed |= header.opcode == OpCode::Close;
        // RSV1 marks a compressed message: allowed on its first frame once agreed (RFC 7692
        // §6.1), never on a continuation or control frame.
        let compressed = header.rsv == 0b100
            && self.deflate.is_some()
            && matches!(header.opcode, OpCode::Text | OpCode::Binary);
        FrameHeader {
            rsv: if compressed { 0 } else { header.rsv },
            ..header
        }
        .validate_client()?;
        if header.opcode.is_data() || header.opcode == OpCode::Continuation {
            self.check_size(&header)?;
        }
        let payload_len =
            usize::try_from(header.payload_len).map_err(|_| ProtocolError::MessageTooBig)?;
        let end = header_len + payload_len;
        if unparsed.len() < end {
            return Ok(None);
        }
        let range = header_len..end;
        if let Some(key) = header.mask {
            apply_mask(&mut unparsed[range.clone()], key, 0);
        }
        let payload = &unparsed[range.clone()];
        let event = match header.opcode {
            OpCode::Ping => Event::Ping(range),
            OpCode::Pong => Event::Pong(range),
            OpCode::Close => close_event(payload, range)?,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.data_event(header.fin, header.opcode, compressed, payload, range)?
            }
        };
        Ok(Some((event, end)))
    }

    /// After an [`Event::Message`] that was compressed: how many bytes its inflated payload
    /// holds beyond the compressed payloads of its frames (0 after any other event). Byte rates
    /// add it to the frame's bytes, so that they count what a message inflates to.
    pub fn inflation_growth(&self) -> u64 {
        self.deflate.as_ref().map_or(0, |deflate| deflate.growth)
    }

    /// The reassembled payload after an [`Event::Message`] with [`Payload::Assembled`].
    pub fn assembled(&self) -> &[u8] {
        &self.assembly.bytes
    }

    /// Bytes the reassembly buffer holds (its capacity), for memory accounting.
    pub fn held_bytes(&self) -> usize {
        let inflated = self.deflate.as_ref().map_or(0, |d| d.inflated.capacity());
        self.assembly.bytes.capacity() + inflated
    }

    /// Frees the reassembly buffer when no fragmented message is open or unfinished; it is
    /// allocated again by the next fragmented message.
    pub fn release_memory(&mut self) {
        if !self.assembly.open && !self.complete {
            self.assembly.bytes = Vec::new();
        }
        if let Some(deflate) = &mut self.deflate {
            deflate.inflated = Vec::new();
        }
    }

    /// Releases the last complete message (its reassembly buffer is reused).
    pub fn finish_message(&mut self) {
        if self.complete {
            self.complete = false;
            self.assembly.bytes.clear();
            self.assembly.valid_utf8 = 0;
        }
    }

    /// 1009 as soon as a header would take the message past the limits.
    fn check_size(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let so_far = if self.assembly.open {
            self.assembly.bytes.len() as u64
        } else {
            0
        };
        if so_far.saturating_add(header.payload_len) > self.limits.max_message_size {
            return Err(ProtocolError::MessageTooBig);
        }
        let continuing = header.opcode == OpCode::Continuation && self.assembly.open;
        if continuing && self.assembly.fragments >= self.limits.max_fragments {
            return Err(ProtocolError::TooManyFragments);
        }
        Ok(())
    }

    fn data_event(
        &mut self,
        fin: bool,
        opcode: OpCode,
        compressed: bool,
        payload: &[u8],
        range: Range<usize>,
    ) -> Result<Event, ProtocolError> {
        let assembly = &mut self.assembly;
        match (opcode, assembly.open) {
            (OpCode::Continuation, false) => return Err(ProtocolError::StrayContinuation),
            (OpCode::Text | OpCode::Binary, true) => return Err(ProtocolError::UnfinishedMessage),
            _ => {}
        }
        if fin && !assembly.open && compressed {
            // A whole compressed message in one frame: inflated into the assembly buffer.
            self.complete = false;
            assembly.bytes.clear();
            assembly.text = opcode == OpCode::Text;
            return self.inflate_message(Some(payload));
        }
        if fin && !assembly.open {
            // A whole message in one frame: it stays in the caller's buffer.
            let text = opcode == OpCode::Text;
            if text && std::str::from_utf8(payload).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            return Ok(Event::Message {
                text,
                payload: Payload::InBuffer(range),
            });
        }
        if !assembly.open {
            self.complete = false;
            assembly.open = true;
            assembly.text = opcode == OpCode::Text;
            assembly.compressed = compressed;
            assembly.fragments = 0;
            assembly.bytes.clear();
            assembly.valid_utf8 = 0;
        }
        assembly.fragments += 1;
        assembly.bytes.extend_from_slice(payload);
        if assembly.text && !assembly.compressed {
            validate_utf8_prefix(assembly, fin)?;
        }
        if !fin {
            return Ok(Event::Fragment);
        }
        assembly.open = false;
        if assembly.compressed {
            return self.inflate_message(None);
        }
        self.complete = true;
        Ok(Event::Message {
            text: assembly.text,
            payload: Payload::Assembled,
        })
    }

    /// Inflates a compressed message, `single` (one frame's payload) or the gathered
    /// fragments, into the assembly buffer, with `max_message_size` as the cap; validates its
    /// text.
    fn inflate_message(&mut self, single: Option<&[u8]>) -> Result<Event, ProtocolError> {
        let Some(deflate) = self.deflate.as_deref_mut() else {
            return Err(ProtocolError::BadCompression);
        };
        let params = deflate.params;
        let inflater = deflate
            .inflater
            .get_or_insert_with(|| Inflater::new(&params));
        let max = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        let compressed_len = single.map_or(self.assembly.bytes.len(), <[u8]>::len);
        let result = match single {
            Some(payload) => inflater.inflate(payload, max, &mut self.assembly.bytes),
            None => {
                deflate.inflated.clear();
                let result = inflater.inflate(&self.assembly.bytes, max, &mut deflate.inflated);
                std::mem::swap(&mut self.assembly.bytes, &mut deflate.inflated);
                deflate.inflated.clear();
                result
            }
        };
        if params.client_no_context_takeover {
            deflate.inflater = None;
        }
        let growth = &mut deflate.growth;
        result.map_err(|e| match e {
            InflateError::TooBig => ProtocolError::MessageTooBig,
            InflateError::Corrupt => ProtocolError::BadCompression,
        })?;
        if self.assembly.text && std::str::from_utf8(&self.assembly.bytes).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.assembly.compressed = false;
        self.complete = true;
        *growth = self.assembly.bytes.len().saturating_sub(compressed_len) as u64;
        Ok(Event::Message {
            text: self.assembly.text,
            payload: Payload::Assembled,
        })
    }
}

/// Extends the validated prefix of a text message as far as it goes. An incomplete code point
/// at the end is fine until the last fragment; any invalid byte fails at once (RFC 6455 §8.1:
/// fail the connection as soon as the text is known to be invalid).
fn validate_utf8_prefix(assembly: &mut Assembly, fin: bool) -> Result<(), ProtocolError> {
    match std::str::from_utf8(&assembly.bytes[assembly.valid_utf8..]) {
        Ok(_) => {
            assembly.valid_utf8 = assembly.bytes.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !fin => {
            assembly.valid_utf8 += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(ProtocolError::InvalidUtf8),
    }
}

/// RFC 6455 §5.5.1 and §7.4: an empty close, or a valid code and a UTF-8 reason.
fn close_event(payload: &[u8], range: Range<usize>) -> Result<Event, ProtocolError> {
    match payload {
        [] => Ok(Event::Close {
            code: None,
            reason: range.end..range.end,
        }),
        [_] => Err(ProtocolError::InvalidClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidClose);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(Event::Close {
                code: Some(code),
                reason: range.start + 2..range.end,
            })
        }
    }
}

/// Appends a server frame header (FIN as given, no mask) for a payload of `len` bytes.
pub fn write_frame_header(out: &mut Vec<u8>, opcode: OpCode, fin: bool, len: u64) {
    FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: len,
    }
    .write(out);
}

/// Appends a server close frame: empty without a code, else the code and `reason` (cut to fit
/// the 125-byte control-frame limit at a character boundary).
pub fn write_close_frame(out: &mut Vec<u8>, code: Option<u16>, reason: &[u8]) {
    let Some(code) = code else {
        write_frame_header(out, OpCode::Close, true, 0);
        return;
    };
    let mut cut = reason.len().min(123);
    while cut > 0 && std::str::from_utf8(&reason[..cut]).is_err() {
        cut -= 1;
    }
    write_frame_header(out, OpCode::Close, true, 2 + cut as u64);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason[..cut]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
    const LIMITS: SessionLimits = SessionLimits {
        max_message_size: 100,
        max_fragments: 3,
    };

    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        client_frame_rsv(fin, 0, opcode, payload)
    }

    fn client_frame_rsv(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask: Some(KEY),
            payload_len: payload.len() as u64,
        }
        .write(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], KEY, 0);
        out
    }

    /// Feeds `bytes` and collects every event, resolving payloads to bytes.
    fn events(
        session: &mut Session,
        bytes: &mut [u8],
    ) -> Result<Vec<(String, Vec<u8>)>, ProtocolError> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((event, used)) = session.read(&mut bytes[pos..])? {
            let slice = &bytes[pos..];
            let item = match event {
                Event::Message { text, payload } => {
                    let body = match payload {
                        Payload::InBuffer(r) => slice[r].to_vec(),
                        Payload::Assembled => session.assembled().to_vec(),
                    };
                    session.finish_message();
                    (if text { "text" } else { "binary" }.to_owned(), body)
                }
                Event::Fragment => ("fragment".to_owned(), Vec::new()),
                Event::Ping(r) => ("ping".to_owned(), slice[r].to_vec()),
                Event::Pong(r) => ("pong".to_owned(), slice[r].to_vec()),
                Event::Close { code, reason } => {
                    (format!("close {code:?}"), slice[reason].to_vec())
                }
            };
            out.push(item);
            pos += used;
        }
        Ok(out)
    }

    const DEFLATE: DeflateParams = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    /// RFC 7692 §7.2.3.1: "Hello", compressed.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn deflated(message: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        crate::ws::deflate::Deflater::new(&DEFLATE, 6).compress(message, &mut wire);
        wire
    }

    #[test]
    fn compressed_messages_inflate_in_one_frame_or_several() {
        let mut session = Session::with_deflate(LIMITS, &DEFLATE);
        let mut bytes = client_frame_rsv(true, 0b100, OpCode::Text, &HELLO);
        bytes.extend(client_frame_rsv(false, 0b100, OpCode::Binary, &HELLO[..3]));
        bytes.extend(client_frame(true, OpCode::Continuation, &HELLO[3..]));
        bytes.extend(client_frame(true, OpCode::Text, b"plain"));
        let got = events(&mut session, &mut bytes).unwrap();
        let expected: Vec<(String, Vec<u8>)> = vec![
            ("text".into(), b"Hello".to_vec()),
            ("fragment".into(), Vec::new()),
            ("binary".into(), b"Hello".to_vec()),
            ("text".into(), b"plain".to_vec()),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn inflation_growth_is_what_a_compressed_message_gained_and_nothing_else() {
        let mut session = Session::with_deflate(LIMITS, &DEFLATE);
        let zeros = deflated(&[0u8; 90]);
        let mut growth = |bytes: &mut Vec<u8>| {
            let (event, _) = session.read(bytes).unwrap().unwrap();
            let is_message = matches!(event, Event::Message { .. });
            let growth = session.inflation_growth();
            session.finish_message();
            (is_message, growth)
        };
        let whole = (90 - zeros.len()) as u64;
        assert_eq!(
            growth(&mut client_frame_rsv(true, 0b100, OpCode::Binary, &zeros)),
            (true, whole)
        );
        // In two frames: the growth comes with the last one, over both frames' payloads.
        let mut first = client_frame_rsv(false, 0b100, OpCode::Binary, &zeros[..2]);
        assert_eq!(growth(&mut first), (false, 0));
        let mut last = client_frame(true, OpCode::Continuation, &zeros[2..]);
        assert_eq!(growth(&mut last), (true, whole));
        assert_eq!(
            growth(&mut client_frame(true, OpCode::Binary, &[0; 90])),
            (true, 0)
        );
    }

    #[test]
    fn compression_faults_close_with_their_codes() {
        let fault = |bytes: Vec<u8>, deflate: bool| {
            let mut session = if deflate {
                Session::with_deflate(LIMITS, &DEFLATE)
            } else {
                Session::new(LIMITS)
            };
            let mut bytes = bytes;
            events(&mut session, &mut bytes).unwrap_err().close_code()
        };
        // RSV1 without the extension, on a continuation, on a control frame.
        assert_eq!(
            fault(client_frame_rsv(true, 0b100, OpCode::Text, &HELLO), false),
            1002
        );
        let mut continued = client_frame(false, OpCode::Text, b"a");
        continued.extend(client_frame_rsv(true, 0b100, OpCode::Continuation, b"b"));
        assert_eq!(fault(continued, true), 1002);
        assert_eq!(
            fault(client_frame_rsv(true, 0b100, OpCode::Ping, b""), true),
            1002
        );
        // A bomb past max_message_size (100 here), invalid DEFLATE, invalid UTF-8 inside.
        let bomb = deflated(&[0u8; 10_000]);
        assert!(bomb.len() < 100);
        assert_eq!(
            fault(client_frame_rsv(true, 0b100, OpCode::Binary, &bomb), true),
            1009
        );
        assert_eq!(
            fault(
                client_frame_rsv(true, 0b100, OpCode::Text, &[0xff; 8]),
                true
            ),
            1007
        );
        let latin1 = deflated(b"caf\xe9");
        assert_eq!(
            fault(client_frame_rsv(true, 0b100, OpCode::Text, &latin1), true),
            1007
        );
    }

    #[test]
    fn the_reassembly_buffer_is_freed_only_between_messages() {
        let mut session = Session::new(LIMITS);
        let mut first = client_frame(false, OpCode::Binary, &[7; 40]);
        let (event, _) = session.read(&mut first).unwrap().unwrap();
        assert!(matches!(event, Event::Fragment));
        assert!(session.held_bytes() >= 40);
        session.release_memory();
        assert!(
            session.held_bytes() >= 40,
            "an open message keeps its bytes"
        );
        let mut last = client_frame(true, OpCode::Continuation, &[8; 10]);
        let (event, _) = session.read(&mut last).unwrap().unwrap();
        assert!(matches!(event, Event::Message { .. }));
        session.release_memory();
        assert_eq!(
            session.assembled().len(),
            50,
            "an unfinished message keeps its bytes"
        );
        session.finish_message();
        session.release_memory();
        assert_eq!(session.held_bytes(), 0);
    }

    fn stream() -> Vec<u8> {
        let mut bytes = client_frame(true, OpCode::Text, b"hi");
        bytes.extend(client_frame(false, OpCode::Binary, &[1, 2]));
        bytes.extend(client_frame(true, OpCode::Ping, b"p"));
        bytes.extend(client_frame(true, OpCode::Continuation, &[3]));
        bytes.extend(client_frame(true, OpCode::Close, &[0x03, 0xe8, b'o', b'k']));
        bytes
    }

    #[test]
    fn messages_fragments_control_frames_and_close() {
        let mut bytes = stream();
        let got = events(&mut Session::new(LIMITS), &mut bytes).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["text", "fragment", "ping", "binary", "close Some(1000)"]
        );
        assert_eq!(got[0].1, b"hi");
        assert_eq!(got[3].1, [1, 2, 3]);
        assert_eq!(got[4].1, b"ok");
    }

    #[test]
    fn every_split_point_waits_then_gives_the_same_events() {
        let whole = events(&mut Session::new(LIMITS), &mut stream()).unwrap();
        let bytes = stream();
        for cut in 0..bytes.len() {
            let mut session = Session::new(LIMITS);
            // Feed the prefix, then the whole buffer: the prefix yields only complete frames.
            let mut prefix = bytes[..cut].to_vec();
            let first = events(&mut session, &mut prefix).unwrap();
            assert!(whole.starts_with(&first), "cut {cut}");
        }
    }

    #[test]
    fn limits_are_enforced_on_the_header() {
        let mut session = Session::new(LIMITS);
        let big = client_frame(true, OpCode::Binary, &[0; 101]);
        // Only the header is there; the refusal does not wait for the payload.
        let mut head = big[..8].to_vec();
        assert_eq!(session.read(&mut head), Err(ProtocolError::MessageTooBig));
        let mut session = Session::new(LIMITS);
        let mut bytes = client_frame(false, OpCode::Binary, &[0; 60]);
        bytes.extend(client_frame(true, OpCode::Continuation, &[0; 41]));
        assert_eq!(
            events(&mut session, &mut bytes),
            Err(ProtocolError::MessageTooBig)
        );
        let mut session = Session::new(LIMITS);
        let mut bytes = client_frame(false, OpCode::Binary, b"x");
        for _ in 0..3 {
            bytes.extend(client_frame(false, OpCode::Continuation, b"x"));
        }
        assert_eq!(
            events(&mut session, &mut bytes),
            Err(ProtocolError::TooManyFragments)
        );
        assert_eq!(ProtocolError::TooManyFragments.close_code(), 1009);
    }

    #[test]
    fn protocol_errors_and_their_codes() {
        let cases: [(Vec<u8>, ProtocolError, u16); 5] = [
            (
                client_frame(true, OpCode::Continuation, b"x"),
                ProtocolError::StrayContinuation,
                1002,
            ),
            (
                [
                    client_frame(false, OpCode::Text, b"a"),
                    client_frame(true, OpCode::Text, b"b"),
                ]
                .concat(),
                ProtocolError::UnfinishedMessage,
                1002,
            ),
            (
                client_frame(true, OpCode::Close, &[1]),
                ProtocolError::InvalidClose,
                1002,
            ),
            (
                client_frame(true, OpCode::Close, &[0x03, 0xed]),
                ProtocolError::InvalidClose,
                1002,
            ),
            (
                client_frame(true, OpCode::Close, &[0x03, 0xe8, 0xff]),
                ProtocolError::InvalidUtf8,
                1007,
            ),
        ];
        for (mut bytes, error, code) in cases {
            assert_eq!(events(&mut Session::new(LIMITS), &mut bytes), Err(error));
            assert_eq!(error.close_code(), code);
        }
    }

    #[test]
    fn utf8_fails_fast_but_tolerates_split_code_points() {
        let mut bad_first = client_frame(false, OpCode::Text, &[b'a', 0xc0, 0x80]);
        bad_first.extend(client_frame(true, OpCode::Continuation, b"b"));
        // Refused on the first fragment, before the message is complete.
        let first = Session::new(LIMITS).read(&mut bad_first);
        assert_eq!(first, Err(ProtocolError::InvalidUtf8));
        let mut split = client_frame(false, OpCode::Text, &[0xc3]);
        split.extend(client_frame(true, OpCode::Continuation, &[0xa9]));
        let got = events(&mut Session::new(LIMITS), &mut split).unwrap();
        assert_eq!(got.last().unwrap().1, "é".as_bytes());
        // An incomplete code point at the very end is invalid.
        let mut cut = client_frame(false, OpCode::Text, &[0xc3]);
        cut.extend(client_frame(true, OpCode::Continuation, b""));
        assert_eq!(
            events(&mut Session::new(LIMITS), &mut cut),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn close_frames_written_by_the_server() {
        let mut out = Vec::new();
        write_close_frame(&mut out, Some(1000), "idle timeout".as_bytes());
        assert_eq!(&out[..4], &[0x88, 14, 0x03, 0xe8]);
        out.clear();
        write_close_frame(&mut out, None, b"ignored");
        assert_eq!(out, [0x88, 0]);
        out.clear();
        // Reasons are cut to fit 125 bytes, at a character boundary.
        write_close_frame(&mut out, Some(1008), "é".repeat(100).as_bytes());
        assert_eq!(out[1], 2 + 122);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = bytes;
            let _ = events(&mut Session::new(LIMITS), &mut bytes);
        }
    }
}
