//! `[cluster]`: several nodes sharing topics and per-client limits through Redis.

/// What a per-client rule does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisErrorPolicy {
    /// Each node decides from its own counts, with the limit divided by the number of nodes
    /// it last knew.
    #[default]
    Local,
    /// Each node decides from its own counts with the whole limit.
    Open,
    /// Refuse with 503 + `Retry-After` until Redis is back.
    Closed,
}

impl RedisErrorPolicy {
    /// The configuration's name of the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis servers, each as `redis://[user:password@]host:port[/db]` (checked at load):
    /// one, or several that topics and clients are spread over (every node lists them in the
    /// same order).
    pub redis: Vec<String>,
    /// This node's name in Redis (its counts' key, its messages' origin): unique per node.
    pub node_id: String,
    /// What per-client rules do while Redis is away, unless `[limits]` says otherwise.
    pub on_redis_error: RedisErrorPolicy,
    /// What clients named by a header, a query parameter or the auth hook are hashed with, so
    /// that every node counts one such client under one key.
    pub secret: String,
}

impl ClusterConfig {
    /// A cluster through the Redis servers `redis`, this node named `node_id`, with the
    /// default policy and the Redis URLs (space-separated) as the secret.
    pub fn new(redis: Vec<String>, node_id: impl Into<String>) -> Self {
        Self {
            secret: redis.join(" "),
            redis,
            node_id: node_id.into(),
            on_redis_error: RedisErrorPolicy::default(),
        }
    }
}

/// Longest node id, in bytes (it leads every topic message).
pub const MAX_NODE_ID: usize = 64;

/// Most Redis servers one cluster spreads over (each costs a node two connections).
pub const MAX_REDIS_SERVERS: usize = 64;

/// Whether `id` can name a node: 1 to [`MAX_NODE_ID`] visible ASCII characters.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NODE_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The node name used when `node_id` is not set: the host's name and the process id.
pub fn default_node_id() -> String {
    let mut host = [0u8; 256];
    // SAFETY: `host` is writable for its whole length, which is what is passed.
    let status = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) };
    let name = if status == 0 {
        let end = host.iter().position(|&b| b == 0).unwrap_or(host.len());
        String::from_utf8_lossy(&host[..end]).into_owned()
    } else {
        "node".to_owned()
    };
    let id = format!("{name}-{}", std::process::id());
    let id: String = id.chars().filter(char::is_ascii_graphic).collect();
    id.get(id.len().saturating_sub(MAX_NODE_ID)..)
        .unwrap_or("node")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        assert!(valid_node_id("web-1.example"));
        assert!(valid_node_id(&default_node_id()));
        assert!(!valid_node_id("a b"));
        assert!(!valid_node_id(""));
        assert!(!valid_node_id(&"x".repeat(MAX_NODE_ID + 1)));
    }
}
