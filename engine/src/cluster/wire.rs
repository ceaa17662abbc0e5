//! What nodes say to each other through Redis: channel and key names, a topic message with its
//! origin, and the control messages (a node's count of a client, a ban, a heartbeat).
//!
//! Everything is plain bytes or short text, so `redis-cli MONITOR` shows what happens. A
//! client's key is written `4.HEX`, `6.HEX` or `n.HEX`; a named client's hash is one the
//! nodes agree on (`[cluster] secret`).

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use ringstream_limits::identity::ClientKey;

/// Every key and channel starts with this.
pub const PREFIX: &str = "ringstream:";
/// The channel of control messages.
pub const CONTROL: &str = "ringstream:ctl";
pub use crate::config::MAX_NODE_ID;

/// The channel of topic `name`.
pub fn topic_channel(name: &str) -> String {
    format!("{PREFIX}t:{name}")
}

/// The topic a channel carries, if it is a topic's.
pub fn channel_topic(channel: &str) -> Option<&str> {
    channel.strip_prefix(PREFIX)?.strip_prefix("t:")
}

/// The hash holding node `node`'s clients' connection counts.
pub fn counts_key(node: &str) -> String {
    format!("{PREFIX}conns:{node}")
}

/// The key that says node `node` is alive (it expires unless the node renews it).
pub fn node_key(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

/// What a node key holds: which shard of how many the node takes the server to be
/// (`index/servers`, as `[cluster] redis` lists them).
pub fn shard_place(index: usize, servers: usize) -> String {
    format!("{index}/{servers}")
}

/// A node key's value as [`shard_place`] wrote it (a bare `1`, as nodes that knew one server
/// only wrote, reads as `0/1`).
pub fn parse_shard_place(value: &str) -> String {
    if value.contains('/') {
        value.to_owned()
    } else {
        shard_place(0, 1)
    }
}

/// The pattern matching every live node's key.
pub const NODES_PATTERN: &str = "ringstream:node:*";

/// The node a node key names.
pub fn key_node(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.strip_prefix("node:")
}

/// The key holding a ban of `client` (it expires with the ban).
pub fn ban_key(client: ClientKey) -> String {
    format!("{PREFIX}ban:{}", client_text(client))
}

/// The pattern matching every ban.
pub const BANS_PATTERN: &str = "ringstream:ban:*";

/// The client a ban key names.
pub fn ban_client(key: &str) -> Option<ClientKey> {
    parse_client(key.strip_prefix(PREFIX)?.strip_prefix("ban:")?)
}

/// A topic message: the origin node's id, then the encoded server frame members are sent.
pub fn topic_message(node: &str, frame: &[u8]) -> Bytes {
    let node = &node.as_bytes()[..node.len().min(MAX_NODE_ID)];
    let mut message = BytesMut::with_capacity(1 + node.len() + frame.len());
    message.extend_from_slice(&[node.len() as u8]);
    message.extend_from_slice(node);
    message.extend_from_slice(frame);
    message.freeze()
}

/// A topic message's origin and frame (the frame shares `message`'s allocation).
pub fn split_topic_message(message: &Bytes) -> Option<(&[u8], Bytes)> {
    let len = usize::from(*message.first()?);
    let node = message.get(1..1 + len)?;
    Some((node, message.slice(1 + len..)))
}

/// `client` as text.
pub fn client_text(client: ClientKey) -> String {
    match client {
        ClientKey::V4(address) => format!("4.{address:x}"),
        ClientKey::V6(network) => format!("6.{network:x}"),
        ClientKey::Named(hash) => format!("n.{hash:x}"),
    }
}

/// A client written by [`client_text`].
pub fn parse_client(text: &str) -> Option<ClientKey> {
    let (kind, hex) = text.split_once('.')?;
    match kind {
        "4" => u32::from_str_radix(hex, 16).ok().map(ClientKey::V4),
        "6" => u128::from_str_radix(hex, 16).ok().map(ClientKey::V6),
        "n" => u64::from_str_radix(hex, 16).ok().map(ClientKey::Named),
        _ => None,
    }
}

/// A message on [`CONTROL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Node `node` has `count` connections of `client` open.
    Count {
        /// The node.
        node: String,
        /// The client.
        client: ClientKey,
        /// Its connections there.
        count: u32,
    },
    /// `client` is banned for `millis` more milliseconds.
    Ban {
        /// The client.
        client: ClientKey,
        /// What is left of the ban.
        millis: u64,
    },
    /// Node `node` is alive (its heartbeat).
    Alive {
        /// The node.
        node: String,
    },
    /// Node `node` stopped; its counts are gone.
    Gone {
        /// The node.
        node: String,
    },
    /// Node `node` writes all its counts anew (after a reconnection): forget what it said
    /// before; its counts follow.
    Reset {
        /// The node.
        node: String,
    },
}

impl Control {
    /// The message as sent.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = match self {
            Self::Count {
                node,
                client,
                count,
            } => write!(text, "c {node} {} {count}", client_text(*client)),
            Self::Ban { client, millis } => write!(text, "b {} {millis}", client_text(*client)),
            Self::Alive { node } => write!(text, "h {node}"),
            Self::Gone { node } => write!(text, "g {node}"),
            Self::Reset { node } => write!(text, "r {node}"),
        };
        text
    }

    /// A message as received (`None`: not one of these).
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let kind = words.next()?;
        let control = match kind {
            "c" => Self::Count {
                node: words.next()?.to_owned(),
                client: parse_client(words.next()?)?,
                count: words.next()?.parse().ok()?,
            },
            "b" => Self::Ban {
                client: parse_client(words.next()?)?,
                millis: words.next()?.parse().ok()?,
            },
            "h" => Self::Alive {
                node: words.next()?.to_owned(),
            },
            "g" => Self::Gone {
                node: words.next()?.to_owned(),
            },
            "r" => Self::Reset {
                node: words.next()?.to_owned(),
            },
            _ => return None,
        };
        words.next().is_none().then_some(control)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn clients_and_keys_read_back_as_written() {
        for client in [
            ClientKey::V4(0x7f00_0001),
            ClientKey::V6(0x2001_0db8 << 96),
            ClientKey::Named(u64::MAX),
        ] {
            assert_eq!(parse_client(&client_text(client)), Some(client));
            assert_eq!(ban_client(&ban_key(client)), Some(client));
        }
        assert_eq!(parse_client("4.zz"), None);
        assert_eq!(parse_client("x.1"), None);
        assert_eq!(key_node(&node_key("a-1")), Some("a-1"));
        assert_eq!(parse_shard_place(&shard_place(2, 3)), "2/3");
        assert_eq!(parse_shard_place("1"), "0/1");
        assert_eq!(channel_topic(&topic_channel("room.1")), Some("room.1"));
        assert_eq!(channel_topic("ringstream:ctl"), None);
    }

    #[test]
    fn a_topic_message_carries_its_origin_and_the_frame_unchanged() {
        let message = topic_message("node-7", b"\x81\x02hi");
        let (node, frame) = split_topic_message(&message).unwrap();
        assert_eq!((node, &frame[..]), (&b"node-7"[..], &b"\x81\x02hi"[..]));
        assert!(split_topic_message(&Bytes::from_static(b"\x09ab")).is_none());
        assert!(split_topic_message(&Bytes::new()).is_none());
    }

    #[test]
    fn control_messages_read_back_and_garbage_is_none() {
        let all = [
            Control::Count {
                node: "a".into(),
                client: ClientKey::V4(1),
                count: 3,
            },
            Control::Ban {
                client: ClientKey::Named(5),
                millis: 60_000,
            },
            Control::Alive { node: "b".into() },
            Control::Gone { node: "b".into() },
            Control::Reset { node: "c".into() },
        ];
        for control in all {
            assert_eq!(Control::decode(&control.encode()), Some(control));
        }
        for garbage in ["", "c a 4.1", "c a 4.1 x", "h", "h a b", "z a", "b 4.1 -1"] {
            assert_eq!(Control::decode(garbage), None, "{garbage:?}");
        }
    }
}
