//! permessage-deflate (RFC 7692): negotiating it in the handshake (`offer`) and compressing and
//! decompressing messages with a cap on what a message may inflate to (`codec`).
//!
//! The engine does not offer it to clients yet: these are its parts, tested here.

mod codec;
mod offer;

pub use codec::{Deflater, InflateError, Inflater};
pub use offer::{DeflateConfig, DeflateParams, negotiate};
