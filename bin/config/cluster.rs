//! Checking `[cluster]`: the Redis URLs, the node's id, what per-client rules do while Redis
//! is away, and the secret named clients are hashed with.

use ringstream_engine::config::{
    ClusterConfig, MAX_NODE_ID, MAX_REDIS_SERVERS, RedisErrorPolicy, default_node_id, valid_node_id,
};
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawCluster, RedisUrls};

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
        let Some(urls) = &raw.redis else {
            return Err(self.source.error_at(
                table.span(),
                "cluster.redis",
                "[cluster] needs redis = \"redis://HOST:PORT\" (the Redis the nodes share)"
                    .to_owned(),
            ));
        };
        let redis = self.redis_urls(urls)?;
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
        let mut cluster = ClusterConfig::new(redis, node_id);
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

    /// `redis`: one URL or a list of distinct ones, each checked where it is written.
    fn redis_urls(&self, urls: &Spanned<RedisUrls>) -> Result<Vec<String>, ConfigError> {
        let listed: Vec<(&str, std::ops::Range<usize>)> = match urls.get_ref() {
            RedisUrls::One(url) => vec![(url.as_str(), urls.span())],
            RedisUrls::Many(list) => list
                .iter()
                .map(|u| (u.get_ref().as_str(), u.span()))
                .collect(),
        };
        let error = |span, message: String| self.source.error_at(span, "cluster.redis", message);
        if listed.is_empty() || listed.len() > MAX_REDIS_SERVERS {
            return Err(error(
                urls.span(),
                format!(
                    "list 1 to {MAX_REDIS_SERVERS} Redis servers (topics and clients are spread \
                     over them), not {}",
                    listed.len()
                ),
            ));
        }
        for (index, (url, span)) in listed.iter().enumerate() {
            if !redis_url(url) {
                return Err(error(
                    span.clone(),
                    format!(
                        "{} is not a Redis URL (\"redis://[user:password@]host:port[/db]\", e.g. \
                         \"redis://127.0.0.1:6379\")",
                        self.source.written(span.clone())
                    ),
                ));
            }
            if listed[..index].iter().any(|(earlier, _)| earlier == url) {
                return Err(error(
                    span.clone(),
                    format!(
                        "{} is listed twice (each Redis server once)",
                        self.source.written(span.clone())
                    ),
                ));
            }
        }
        Ok(listed.into_iter().map(|(url, _)| url.to_owned()).collect())
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
        assert_eq!(cluster.redis, ["redis://127.0.0.1:6390"]);
        assert_eq!(cluster.node_id, "a");
        assert_eq!(cluster.on_redis_error, RedisErrorPolicy::Local);
        assert_eq!(cluster.secret, "redis://127.0.0.1:6390");
        let text = with_route("[cluster]\nredis = [\"redis://a:1\", \"redis://b:2/1\"]\n");
        let cluster = parse(&text, "config.toml").unwrap().cluster.unwrap();
        assert_eq!(cluster.redis, ["redis://a:1", "redis://b:2/1"]);
        assert_eq!(cluster.secret, "redis://a:1 redis://b:2/1");
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
                "[cluster]\nredis = [\n  \"redis://a\",\n  \"b:1\",\n]\n"
            )),
            "config.toml:4: cluster.redis: \"b:1\" is not a Redis URL \
             (\"redis://[user:password@]host:port[/db]\", e.g. \"redis://127.0.0.1:6379\")"
        );
        assert_eq!(
            error(&with_route(
                "[cluster]\nredis = [\"redis://a\", \"redis://a\"]\n"
            )),
            "config.toml:2: cluster.redis: \"redis://a\" is listed twice (each Redis server \
             once)"
        );
        assert_eq!(
            error(&with_route("[cluster]\nredis = []\n")),
            "config.toml:2: cluster.redis: list 1 to 64 Redis servers (topics and clients are \
             spread over them), not 0"
        );
        assert!(
            error(&with_route("[cluster]\nredis = 5\n")).contains("a Redis URL or a list of them"),
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
