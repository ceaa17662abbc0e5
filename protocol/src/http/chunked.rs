//! The chunked transfer coding (RFC 9112 §7.1), decoded one state per byte of framing.

use super::body::Decoded;
use super::error::BodyError;

/// Longest chunk-size line: size, whitespace and extensions, without the CRLF (400 beyond).
/// Extensions carry nothing we use; the cap stops a client from sending an endless one.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Longest trailer section, CRLFs included (431 beyond, as for a head). Trailers are
/// checked and dropped: nothing here needs them.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Where in `chunked-body` the decoder is (RFC 9112 §7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size (BWS before `;`).
    SizeWhitespace,
    /// A chunk extension, after `;`, up to CR.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk data; `size` bytes left.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// The LF ending a trailer field line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is over.
    Done,
}

/// Decoder state for one chunked body.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    /// Where in the framing the next byte belongs.
    state: State,
    /// The chunk size while it is read, then the data bytes left in the chunk.
    size: u64,
    /// Bytes of the current chunk-size line, against [`MAX_CHUNK_LINE_BYTES`].
    line_len: usize,
    /// Bytes of the trailer section, against [`MAX_TRAILER_BYTES`].
    trailer_len: usize,
    /// Sum of the chunk sizes announced so far.
    announced: u64,
    /// Most body bytes accepted (413 beyond).
    max_body: u64,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub(crate) fn new(max_body: u64) -> Self {
        Self {
            state: State::Size,
            size: 0,
            line_len: 0,
            trailer_len: 0,
            announced: 0,
            max_body,
        }
    }

    /// Whether the final CRLF has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes and at most one data piece; see `BodyDecoder::decode`.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        let mut pos = 0;
        let mut data = 0..0;
        while let Some(&byte) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Data if !data.is_empty() => break,
                State::Data => {
                    // `min` with the input left, so the cast cannot truncate.
                    let take = self.size.min((input.len() - pos) as u64) as usize;
                    data = pos..pos + take;
                    pos += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                state => {
                    self.state = self.step(state, byte)?;
                    pos += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            data,
            done: self.state == State::Done,
        })
    }

    /// Takes one framing byte in `state`, giving the next state.
    fn step(&mut self, state: State, byte: u8) -> Result<State, BodyError> {
        match state {
            State::Size => self.read_size(byte),
            State::SizeWhitespace => self.read_size_whitespace(byte),
            State::Extension => self.read_extension(byte),
            State::SizeLf => self.read_size_lf(byte),
            State::DataCr => read_data_cr(byte),
            State::DataLf => self.read_data_lf(byte),
            State::TrailerStart => self.read_trailer_start(byte),
            State::Trailer => self.read_trailer(byte),
            State::TrailerLf => self.read_trailer_lf(byte),
            State::EndLf => self.read_end_lf(byte),
            // `decode` handles these without calling `step`.
            State::Data | State::Done => Ok(state),
        }
    }

    /// `chunk-size = 1*HEXDIG`, then BWS, `;` or CR.
    fn read_size(&mut self, byte: u8) -> Result<State, BodyError> {
        let digits = self.line_len;
        self.count_line_byte(byte)?;
        if let Some(digit) = hex_value(byte) {
            self.size = self
                .size
                .checked_mul(16)
                .and_then(|size| size.checked_add(u64::from(digit)))
                .ok_or(BodyError::InvalidChunkSize)?;
            return Ok(State::Size);
        }
        if digits == 0 {
            return Err(BodyError::InvalidChunkSize);
        }
        after_size(byte)
    }

    /// BWS after the size may only lead to `;` or the line end (RFC 9112 §7.1.1).
    fn read_size_whitespace(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_line_byte(byte)?;
        after_size(byte)
    }

    /// `chunk-ext` is skipped up to CR; a control byte (a bare LF among them) is refused,
    /// since it can appear neither in a token nor in a quoted-string.
    fn read_extension(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_line_byte(byte)?;
        match byte {
            b'\r' => Ok(State::SizeLf),
            b'\t' => Ok(State::Extension),
            _ if is_control(byte) => Err(BodyError::InvalidChunkExtension),
            _ => Ok(State::Extension),
        }
    }

    /// The size line's LF; a zero size is the last chunk, otherwise its size must fit.
    fn read_size_lf(&mut self, byte: u8) -> Result<State, BodyError> {
        if byte != b'\n' {
            return Err(BodyError::MissingCrlf);
        }
        if self.size == 0 {
            return Ok(State::TrailerStart);
        }
        // Refused when announced, before any of the chunk's data is read.
        self.announced = self
            .announced
            .checked_add(self.size)
            .filter(|&total| total <= self.max_body)
            .ok_or(BodyError::TooLarge)?;
        Ok(State::Data)
    }

    /// The LF after chunk data starts the next size line.
    fn read_data_lf(&mut self, byte: u8) -> Result<State, BodyError> {
        if byte != b'\n' {
            return Err(BodyError::MissingCrlf);
        }
        self.line_len = 0;
        Ok(State::Size)
    }

    /// CR ends the trailer section; anything else starts a field line, which may not
    /// start with whitespace (obs-fold, RFC 9112 §5.2).
    fn read_trailer_start(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_trailer_byte()?;
        match byte {
            b'\r' => Ok(State::EndLf),
            b' ' | b'\t' => Err(BodyError::InvalidTrailer),
            _ if is_control(byte) => Err(BodyError::InvalidTrailer),
            _ => Ok(State::Trailer),
        }
    }

    /// A trailer field line up to its CR; control bytes other than HTAB are refused.
    fn read_trailer(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_trailer_byte()?;
        match byte {
            b'\r' => Ok(State::TrailerLf),
            b'\t' => Ok(State::Trailer),
            _ if is_control(byte) => Err(BodyError::InvalidTrailer),
            _ => Ok(State::Trailer),
        }
    }

    /// The LF ending a trailer field line.
    fn read_trailer_lf(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_trailer_byte()?;
        if byte == b'\n' {
            Ok(State::TrailerStart)
        } else {
            Err(BodyError::InvalidTrailer)
        }
    }

    /// The LF of the empty line that ends the body.
    fn read_end_lf(&mut self, byte: u8) -> Result<State, BodyError> {
        self.count_trailer_byte()?;
        if byte == b'\n' {
            Ok(State::Done)
        } else {
            Err(BodyError::MissingCrlf)
        }
    }

    /// Counts a byte of the chunk-size line, but not its CR, against
    /// [`MAX_CHUNK_LINE_BYTES`].
    fn count_line_byte(&mut self, byte: u8) -> Result<(), BodyError> {
        if byte == b'\r' {
            return Ok(());
        }
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE_BYTES {
            return Err(BodyError::ChunkLineTooLong);
        }
        Ok(())
    }

    /// Counts a byte of the trailer section against [`MAX_TRAILER_BYTES`].
    fn count_trailer_byte(&mut self) -> Result<(), BodyError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_BYTES {
            return Err(BodyError::TrailerTooLarge);
        }
        Ok(())
    }
}

/// The CR after chunk data.
fn read_data_cr(byte: u8) -> Result<State, BodyError> {
    if byte == b'\r' {
        Ok(State::DataLf)
    } else {
        Err(BodyError::MissingCrlf)
    }
}

/// The value of a hex digit (`HEXDIG` is case-insensitive, RFC 5234 §B.1).
pub(super) fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// What may follow the chunk size (and any whitespace after it): more whitespace, an
/// extension, or the line end.
fn after_size(byte: u8) -> Result<State, BodyError> {
    match byte {
        b' ' | b'\t' => Ok(State::SizeWhitespace),
        b';' => Ok(State::Extension),
        b'\r' => Ok(State::SizeLf),
        b'\n' => Err(BodyError::MissingCrlf),
        _ => Err(BodyError::InvalidChunkSize),
    }
}

/// A CTL byte (RFC 5234 §B.1), CR and LF included.
fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

#[cfg(test)]
mod tests;
