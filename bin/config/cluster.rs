//! Checking `[cluster]`: the Redis URL, the node's id, what per-client rules do while Redis
//! is away, and the secret named clients are hashed with.

use ringstream_engine::config::{
    ClusterConfig, MAX_NODE_ID, RedisErrorPolicy, default_node_id, valid_node_id,
};
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawCluster;

impl Checker<'_, '_> {
    /// The `[cluster]` table, if there is one.
    pub(super) fn cluster(
        &self,
        raw: Option<&Spanned<RawCluster>>,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        let raw = table.get_ref();
        let Some(url) = &raw.redis else {
            return Err(self.source.error_at(
                table.span(),
                "cluster.redis",
                "[cluster] needs redis = \"redis://HOST:PORT\" (the Redis the nodes share)"
                    .to_owned(),
            ));
        };
        if !redis_url(url.get_ref()) {
            return Err(self.source.error_at(
                url.span(),
                "cluster.redis",
                format!(
                    "{} is not a Redis URL (\"redis://[user:password@]host:port[/db]\", e.g. \
                     \"redis://127.0.0.1:6379\")",
                    self.source.written(url.span())
                ),
            ));
        }
        let node_id = match &raw.node_id {
            Some(id) if valid_node_id(id.get_ref()) => id.get_ref().clone(),
            Some(id) => {
                return Err(self.source.error_at(
                    id.span(),
                    "cluster.node_id",
                    format!(
                        "{} is not a node id (1 to {MAX_NODE_ID} visible ASCII characters, \
                         no spaces)",
                        self.source.written(id.span())
                    ),
                ));
            }
            None => default_node_id(),
        };
        let mut cluster = ClusterConfig::new(url.get_ref().clone(), node_id);
        if let Some(value) = &raw.on_redis_error {
            cluster.on_redis_error = self.redis_error_policy(value, "cluster.on_redis_error")?;
        }
        if let Some(secret) = &raw.secret {
            if secret.get_ref().is_empty() {
                return Err(self.source.error_at(
                    secret.span(),
                    "cluster.secret",
                    "the secret may not be empty (leave it out to use the redis URL)".to_owned(),
                ));
            }
            cluster.secret = secret.get_ref().clone();
        }
        Ok(Some(cluster))
    }

    /// `"local"`, `"open"` or `"closed"`.
    pub(super) fn redis_error_policy(
        &self,
        value: &Spanned<String>,
        key: &str,
    ) -> Result<RedisErrorPolicy, ConfigError> {
        match value.get_ref().as_str() {
            "local" => Ok(RedisErrorPolicy::Local),
            "open" => Ok(RedisErrorPolicy::Open),
            "closed" => Ok(RedisErrorPolicy::Closed),
            _ => Err(self.one_of(value, key, &["local", "open", "closed"])),
        }
    }
}

/// Whether `url` is `redis://[user[:password]@]host[:port][/db]` with a host and, if given, a
/// port and a database number.
fn redis_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("redis://") else {
        return false;
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (host_port, None),
    };
    !host.is_empty()
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
        && (db.is_empty() || db.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::redis_url;
    use crate::config::parse;
    use crate::config::tests::{error, with_route};
    use ringstream_engine::config::RedisErrorPolicy;

    #[test]
    fn a_cluster_section_is_read_with_its_defaults() {
        let text = with_route("[cluster]\nredis = \"redis://127.0.0.1:6390\"\nnode_id = \"a\"\n");
        let cluster = parse(&text, "config.toml").unwrap().cluster.unwrap();
        assert_eq!(cluster.redis, "redis://127.0.0.1:6390");
        assert_eq!(cluster.node_id, "a");
        assert_eq!(cluster.on_redis_error, RedisErrorPolicy::Local);
        assert_eq!(cluster.secret, cluster.redis);
        let text = with_route(
            "[limits]\non_redis_error = \"closed\"\n[cluster]\nredis = \"redis://h\"\n\
             on_redis_error = \"open\"\nsecret = \"s\"\n",
        );
        let config = parse(&text, "config.toml").unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(
            (cluster.on_redis_error, cluster.secret.as_str()),
            (RedisErrorPolicy::Open, "s")
        );
        assert_eq!(
            config.clients.on_redis_error,
            Some(RedisErrorPolicy::Closed)
        );
        assert!(!cluster.node_id.is_empty(), "a default node id");
    }

    #[test]
    fn cluster_errors_name_the_key_and_line() {
        assert_eq!(
            error(&with_route("[cluster]\nnode_id = \"a\"\n")),
            "config.toml:1: cluster.redis: [cluster] needs redis = \"redis://HOST:PORT\" (the \
             Redis the nodes share)"
        );
        assert_eq!(
            error(&with_route("[cluster]\nredis = \"127.0.0.1:6379\"\n")),
            "config.toml:2: cluster.redis: \"127.0.0.1:6379\" is not a Redis URL \
             (\"redis://[user:password@]host:port[/db]\", e.g. \"redis://127.0.0.1:6379\")"
        );
        assert_eq!(
            error(&with_route(
                "[cluster]\nredis = \"redis://h\"\nnode_id = \"a b\"\n"
            )),
            "config.toml:3: cluster.node_id: \"a b\" is not a node id (1 to 64 visible ASCII \
             characters, no spaces)"
        );
        assert_eq!(
            error(&with_route(
                "[cluster]\nredis = \"redis://h\"\non_redis_error = \"maybe\"\n"
            )),
            "config.toml:3: cluster.on_redis_error: \"maybe\" is not one of: local, open, closed"
        );
        assert_eq!(
            error(&with_route("[limits]\non_redis_error = \"open\"\n")),
            "config.toml:2: limits.on_redis_error: on_redis_error says what per-client rules do \
             while Redis is away; it needs a [cluster] section"
        );
        assert_eq!(
            error(&with_route("[cluster]\nredis = \"redis://h\"\nport = 1\n")),
            "config.toml:3: unknown key 'cluster.port' (expected one of: redis, node_id, \
             on_redis_error, secret)"
        );
    }

    #[test]
    fn redis_urls() {
        for good in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "redis://user:pa:ss@10.0.0.1:6380/2",
            "redis://[::1]:6379",
        ] {
            assert!(redis_url(good), "{good}");
        }
        for bad in [
            "127.0.0.1:6379",
            "redis://",
            "redis://host:0",
            "redis://host:port",
            "redis://host:6379/db",
            "http://host:6379",
        ] {
            assert!(!redis_url(bad), "{bad}");
        }
    }
}
