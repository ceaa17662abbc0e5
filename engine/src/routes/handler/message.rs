//! What a handler sends and receives, and why a send or a close can fail.

use std::fmt;

use bytes::Bytes;

/// A whole WebSocket message: text (valid UTF-8, checked by the engine) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    text: bool,
    data: Bytes,
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: true,
            data: Bytes::from(text.into()),
        }
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self {
            text: false,
            data: data.into(),
        }
    }

    /// A message received from a client; `text` payloads were validated as UTF-8 by the
    /// session.
    pub(crate) fn received(text: bool, data: Bytes) -> Self {
        Self { text, data }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The text of a text message; `None` for a binary one.
    pub fn as_text(&self) -> Option<&str> {
        if self.text {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }

    /// The payload bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The payload, without copying.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::binary(data)
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::binary(data)
    }
}

/// The connection is closed (by the client, a protection, the drain or the handler): nothing
/// more can be sent. [`crate::routes::handler::WebSocket::close_code`] tells how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the WebSocket connection is closed")
    }
}

impl std::error::Error for Closed {}

/// A close the handler asked for that cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// RFC 6455 §7.4 does not allow this code on the wire (1005, 1006 and 1015 are for
    /// reporting only; 0–999, 1004, 1016–2999 and codes from 5000 are reserved).
    InvalidCode(u16),
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCode(code) => write!(f, "close code {code} may not be sent"),
        }
    }
}

impl std::error::Error for CloseError {}
