//! Broadcast (pub/sub): topics whose members receive every message published to them, on
//! whichever core they are.
//!
//! - [`topics`]: the server-wide registry of topics, with each topic's subscriber count per
//!   worker (presence, and which cores a message must reach). Touched when a member joins or
//!   leaves and by HTTP publishes, never per delivered frame.
//! - [`hub`]: one inbox per worker, through which the publishing core hands a frame to every
//!   other core that has subscribers: one post per core, not one per subscriber.
//! - [`local`]: each worker's own members per topic and their bounded queues
//!   ([`crate::routes::broadcast::member_queue`]); delivery on a core takes no lock.
//!
//! - [`compress`]: the message compressed once per delivery and window size for the members
//!   that agreed permessage-deflate, by the worker's compressors (which the echo route's
//!   replies share when the server keeps no context).
//!
//! A published message is encoded into a server frame once; every member's queue on every
//! core holds a refcounted [`bytes::Bytes`] view of that one allocation (or of its compressed
//! frame, made once per worker and window size).

pub mod compress;
pub mod hub;
pub mod local;
pub mod member;
pub mod member_queue;
pub mod publish;
pub mod topics;

pub use hub::Hub;
pub use local::{LocalTopics, Member, Membership};
pub use topics::{Topic, TopicRegistry, valid_topic};

use bytes::{BufMut, Bytes, BytesMut};
use ringstream_protocol::ws::frame::MAX_HEADER_LEN;
use ringstream_protocol::ws::{FrameHeader, OpCode};

/// Encodes one message as the server frame every subscriber is sent.
pub fn encode_frame(text: bool, payload: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_HEADER_LEN];
    let len = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        mask: None,
        payload_len: payload.len() as u64,
    }
    .encode(&mut header);
    let mut frame = BytesMut::with_capacity(len + payload.len());
    frame.put_slice(&header[..len]);
    frame.put_slice(payload);
    frame.freeze()
}
