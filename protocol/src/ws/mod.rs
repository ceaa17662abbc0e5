//! WebSocket (RFC 6455), server side, no I/O: the handshake, frame headers, masking, and the
//! session that turns frames into messages under the configured limits.

pub mod coding;
pub mod deflate;
pub mod follow;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod session;

pub use coding::{OpCode, close_code, is_sendable_close_code, is_valid_close_code};
pub use follow::FrameFollower;
pub use frame::{FrameError, FrameHeader};
pub use mask::apply_mask;
pub use session::{write_close_frame, write_frame_header};
