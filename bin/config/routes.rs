//! The route kinds this build serves, in one table ([`KINDS`]: each kind's name, the route
//! keys it takes and the function that builds it), and checking one `[[routes]]` entry with it.

use std::ops::Range;

use ringstream_engine::config::{HttpLimits, Route, RouteKind, TopicSource, WsLimits};
use toml::Spanned;

use super::broadcast::TOPIC_PLACEHOLDER;
use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

/// Builds a kind's [`RouteKind`] from its route (`key` names the route in messages), once the
/// route is known to write only keys the kind takes.
type Resolve = fn(&Checker<'_, '_>, &str, &RawRoute) -> Result<RouteKind, ConfigError>;

/// One route kind: what the file calls it, what it takes, how it is built.
pub(super) struct Kind {
    /// `kind = "..."`.
    pub(super) name: &'static str,
    /// The kind-specific keys it takes; a route of this kind writing any other is refused.
    pub(super) keys: &'static [Key],
    /// Builds the route's [`RouteKind`]; a kind cannot be listed without one.
    resolve: Resolve,
}

/// Every route kind this build serves, in the order messages list them.
pub(super) const KINDS: [Kind; 12] = [
    Kind {
        name: "health",
        keys: &[],
        resolve: |_, _, _| Ok(RouteKind::Health),
    },
    Kind {
        name: "static_text",
        keys: &[Key::Body, Key::ContentType],
        resolve: |checker, key, raw| checker.static_text_kind(key, raw),
    },
    Kind {
        name: "echo",
        keys: &[Key::ResponsePrefix, Key::Subprotocols],
        resolve: |checker, key, raw| checker.echo_kind(key, raw),
    },
    Kind {
        name: "broadcast",
        keys: &[Key::Subprotocols, Key::Topic, Key::EchoToSender],
        resolve: |checker, key, raw| checker.broadcast_kind(key, raw),
    },
    Kind {
        name: "publish",
        keys: &[Key::AllowedClients, Key::Topic, Key::Token],
        resolve: |checker, key, raw| checker.publish_kind(key, raw),
    },
    Kind {
        name: "sink",
        keys: &[
            Key::Subprotocols,
            Key::SinkFile,
            Key::SinkMaxBytes,
            Key::SinkKeep,
        ],
        resolve: |checker, key, raw| checker.sink_kind(key, raw),
    },
    Kind {
        name: "files",
        keys: &[
            Key::Root,
            Key::Index,
            Key::Hidden,
            Key::Attachment,
            Key::MaxRanges,
            Key::ChunkSize,
            Key::Send,
        ],
        resolve: |checker, key, raw| checker.files_kind(key, raw),
    },
    Kind {
        name: "upload",
        keys: &[
            Key::UploadDir,
            Key::MaxUploadSize,
            Key::Overwrite,
            Key::Fsync,
            Key::MaxUploadsPerClient,
        ],
        resolve: |checker, key, raw| checker.upload_kind(key, raw),
    },
    Kind {
        name: "proxy",
        keys: &[
            Key::Upstreams,
            Key::ConnectTimeout,
            Key::UpstreamTimeout,
            Key::Balance,
            Key::MaxFails,
            Key::FailTimeout,
            Key::PoolIdleTimeout,
            Key::PoolSize,
            Key::StripPrefix,
            Key::Host,
            Key::HealthCheck,
            Key::HealthInterval,
        ],
        resolve: |checker, key, raw| checker.proxy_kind(key, raw),
    },
    Kind {
        name: "stats",
        keys: &[Key::AllowedClients],
        resolve: |checker, key, raw| checker.stats_kind(key, raw),
    },
    Kind {
        name: "metrics",
        keys: &[Key::AllowedClients],
        resolve: |checker, key, raw| checker.metrics_kind(key, raw),
    },
    Kind {
        name: "dashboard",
        keys: &[Key::AllowedClients],
        resolve: |checker, key, raw| checker.dashboard_kind(key, raw),
    },
];

/// The kind named `name`; the error is the message to show at the `kind` value.
pub(super) fn kind_named(name: &str) -> Result<&'static Kind, String> {
    KINDS.iter().find(|kind| kind.name == name).ok_or_else(|| {
        let names: Vec<&str> = KINDS.iter().map(|kind| kind.name).collect();
        format!(
            "unknown route kind `{name}` (expected one of: {})",
            names.join(", ")
        )
    })
}

/// A route key that only some kinds take ([`Kind::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// `body` (static_text).
    Body,
    /// `content_type` (static_text).
    ContentType,
    /// `response_prefix` (echo).
    ResponsePrefix,
    /// `subprotocols` (the WebSocket kinds).
    Subprotocols,
    /// `allowed_clients` (stats, metrics, dashboard, publish).
    AllowedClients,
    /// `topic` (broadcast, publish).
    Topic,
    /// `echo_to_sender` (broadcast).
    EchoToSender,
    /// `token` (publish).
    Token,
    /// `sink_file` (sink).
    SinkFile,
    /// `sink_max_bytes` (sink).
    SinkMaxBytes,
    /// `sink_keep` (sink).
    SinkKeep,
    /// `root` (files).
    Root,
    /// `index` (files).
    Index,
    /// `hidden` (files).
    Hidden,
    /// `attachment` (files).
    Attachment,
    /// `max_ranges` (files).
    MaxRanges,
    /// `chunk_size` (files).
    ChunkSize,
    /// `send` (files).
    Send,
    /// `upload_dir` (upload).
    UploadDir,
    /// `max_upload_size` (upload).
    MaxUploadSize,
    /// `overwrite` (upload).
    Overwrite,
    /// `fsync` (upload).
    Fsync,
    /// `max_uploads_per_client` (upload).
    MaxUploadsPerClient,
    /// `upstreams` (proxy).
    Upstreams,
    /// `connect_timeout` (proxy).
    ConnectTimeout,
    /// `upstream_timeout` (proxy).
    UpstreamTimeout,
    /// `balance` (proxy).
    Balance,
    /// `max_fails` (proxy).
    MaxFails,
    /// `fail_timeout` (proxy).
    FailTimeout,
    /// `pool_idle_timeout` (proxy).
    PoolIdleTimeout,
    /// `pool_size` (proxy).
    PoolSize,
    /// `strip_prefix` (proxy).
    StripPrefix,
    /// `host` (proxy).
    Host,
    /// `health_check` (proxy).
    HealthCheck,
    /// `health_interval` (proxy).
    HealthInterval,
}

impl Key {
    /// Every key, in the order a route's keys are checked: the first one its kind does not
    /// take is the one reported.
    const ALL: [Key; 35] = [
        Key::Body,
        Key::ContentType,
        Key::ResponsePrefix,
        Key::Subprotocols,
        Key::AllowedClients,
        Key::Topic,
        Key::EchoToSender,
        Key::Token,
        Key::SinkFile,
        Key::SinkMaxBytes,
        Key::SinkKeep,
        Key::Root,
        Key::Index,
        Key::Hidden,
        Key::Attachment,
        Key::MaxRanges,
        Key::ChunkSize,
        Key::Send,
        Key::UploadDir,
        Key::MaxUploadSize,
        Key::Overwrite,
        Key::Fsync,
        Key::MaxUploadsPerClient,
        Key::Upstreams,
        Key::ConnectTimeout,
        Key::UpstreamTimeout,
        Key::Balance,
        Key::MaxFails,
        Key::FailTimeout,
        Key::PoolIdleTimeout,
        Key::PoolSize,
        Key::StripPrefix,
        Key::Host,
        Key::HealthCheck,
        Key::HealthInterval,
    ];

    /// The key's name in the file, and where `raw` writes it if it does.
    fn written(self, raw: &RawRoute) -> (&'static str, Option<Range<usize>>) {
        match self {
            Key::Body => ("body", at(&raw.body)),
            Key::ContentType => ("content_type", at(&raw.content_type)),
            Key::ResponsePrefix => ("response_prefix", at(&raw.response_prefix)),
            Key::Subprotocols => ("subprotocols", at(&raw.subprotocols)),
            Key::AllowedClients => ("allowed_clients", at(&raw.allowed_clients)),
            Key::Topic => ("topic", at(&raw.topic)),
            Key::EchoToSender => ("echo_to_sender", at(&raw.echo_to_sender)),
            Key::Token => ("token", at(&raw.token)),
            Key::SinkFile => ("sink_file", at(&raw.sink_file)),
            Key::SinkMaxBytes => ("sink_max_bytes", at(&raw.sink_max_bytes)),
            Key::SinkKeep => ("sink_keep", at(&raw.sink_keep)),
            Key::Root => ("root", at(&raw.root)),
            Key::Index => ("index", at(&raw.index)),
            Key::Hidden => ("hidden", at(&raw.hidden)),
            Key::Attachment => ("attachment", at(&raw.attachment)),
            Key::MaxRanges => ("max_ranges", at(&raw.max_ranges)),
            Key::ChunkSize => ("chunk_size", at(&raw.chunk_size)),
            Key::Send => ("send", at(&raw.send)),
            Key::UploadDir => ("upload_dir", at(&raw.upload_dir)),
            Key::MaxUploadSize => ("max_upload_size", at(&raw.max_upload_size)),
            Key::Overwrite => ("overwrite", at(&raw.overwrite)),
            Key::Fsync => ("fsync", at(&raw.fsync)),
            Key::MaxUploadsPerClient => ("max_uploads_per_client", at(&raw.max_uploads_per_client)),
            Key::Upstreams => ("upstreams", at(&raw.upstreams)),
            Key::ConnectTimeout => ("connect_timeout", at(&raw.connect_timeout)),
            Key::UpstreamTimeout => ("upstream_timeout", at(&raw.upstream_timeout)),
            Key::Balance => ("balance", at(&raw.balance)),
            Key::MaxFails => ("max_fails", at(&raw.max_fails)),
            Key::FailTimeout => ("fail_timeout", at(&raw.fail_timeout)),
            Key::PoolIdleTimeout => ("pool_idle_timeout", at(&raw.pool_idle_timeout)),
            Key::PoolSize => ("pool_size", at(&raw.pool_size)),
            Key::StripPrefix => ("strip_prefix", at(&raw.strip_prefix)),
            Key::Host => ("host", at(&raw.host)),
            Key::HealthCheck => ("health_check", at(&raw.health_check)),
            Key::HealthInterval => ("health_interval", at(&raw.health_interval)),
        }
    }

    /// What goes before the name in "only ... take a body".
    fn article(self) -> &'static str {
        match self {
            Key::Body | Key::ContentType | Key::ResponsePrefix => "a ",
            _ => "",
        }
    }

    /// The kinds that take the key, as the refusal names them (a test checks it against
    /// [`KINDS`]).
    fn owners(self) -> &'static str {
        match self {
            Key::Body | Key::ContentType => "static_text routes",
            Key::ResponsePrefix => "echo routes",
            Key::Subprotocols => "WebSocket routes",
            Key::AllowedClients => "stats, metrics, dashboard and publish routes",
            Key::Topic => "broadcast and publish routes",
            Key::EchoToSender => "broadcast routes",
            Key::Token => "publish routes",
            Key::SinkFile | Key::SinkMaxBytes | Key::SinkKeep => "sink routes",
            Key::Root
            | Key::Index
            | Key::Hidden
            | Key::Attachment
            | Key::MaxRanges
            | Key::ChunkSize
            | Key::Send => "files routes",
            Key::UploadDir
            | Key::MaxUploadSize
            | Key::Overwrite
            | Key::Fsync
            | Key::MaxUploadsPerClient => "upload routes",
            Key::Upstreams
            | Key::ConnectTimeout
            | Key::UpstreamTimeout
            | Key::Balance
            | Key::MaxFails
            | Key::FailTimeout
            | Key::PoolIdleTimeout
            | Key::PoolSize
            | Key::StripPrefix
            | Key::Host
            | Key::HealthCheck
            | Key::HealthInterval => "proxy routes",
        }
    }
}

/// Where an optional value is written.
fn at<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

impl Checker<'_, '_> {
    /// Checks `routes[index]` and builds it, its limits layered over `global` and `global_ws`.
    pub(super) fn route(
        &self,
        index: usize,
        raw: &RawRoute,
        global: &HttpLimits,
        global_ws: &WsLimits,
    ) -> Result<Route, ConfigError> {
        let key = format!("routes[{index}]");
        let path = raw.path.get_ref();
        if !path.starts_with('/')
            || path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(self.source.error_at(
                raw.path.span(),
                &format!("{key}.path"),
                format!(
                    "{} is not a route path (it starts with '/' and holds no spaces, '?' or '#')",
                    self.source.written(raw.path.span())
                ),
            ));
        }
        if let Some((name, span)) = raw.limits.server_wide_key() {
            let why = if name == "max_connections" {
                ""
            } else {
                " (it runs before a request names its route)"
            };
            return Err(self.source.error_at(
                span,
                &format!("{key}.limits.{name}"),
                format!("{name} applies to the whole server{why}; set it in [limits]"),
            ));
        }
        let kind = self.route_kind(&key, raw)?;
        let path = match kind.topic() {
            Some(TopicSource::Path) => path
                .strip_suffix(TOPIC_PLACEHOLDER)
                .unwrap_or(path)
                .to_owned(),
            _ => path.clone(),
        };
        if path.contains(['{', '}']) {
            return Err(self.source.error_at(
                raw.path.span(),
                &format!("{key}.path"),
                format!(
                    "{} holds a placeholder; only broadcast and publish paths may, and only a \
                     final /{{topic}}",
                    self.source.written(raw.path.span())
                ),
            ));
        }
        let mut limits = self.limits(global, &raw.limits, &format!("{key}.limits"))?;
        // A route that names its own request quota gets its own budget per client.
        limits.request_rate.own_budget =
            raw.limits.rate_limit_requests.is_some() || raw.limits.burst.is_some();
        let ws = self.ws_limits(global_ws, &raw.limits, &format!("{key}.limits"))?;
        let auth = self.auth(&key, raw)?;
        Ok(Route {
            path,
            kind,
            limits,
            ws,
            auth,
        })
    }

    /// The route's kind, checked and built (`key` names the route).
    fn route_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let kind = kind_named(raw.kind.get_ref()).map_err(|message| {
            self.source
                .error_at(raw.kind.span(), &format!("{key}.kind"), message)
        })?;
        self.refuse_foreign_keys(key, kind, raw)?;
        (kind.resolve)(self, key, raw)
    }

    /// An error for the first key of `raw` that `kind` does not take.
    fn refuse_foreign_keys(
        &self,
        key: &str,
        kind: &Kind,
        raw: &RawRoute,
    ) -> Result<(), ConfigError> {
        for option in Key::ALL {
            let (name, span) = option.written(raw);
            if let Some(span) = span
                && !kind.keys.contains(&option)
            {
                return Err(self.source.error_at(
                    span,
                    &format!("{key}.{name}"),
                    format!("only {} take {}{name}", option.owners(), option.article()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{KINDS, Key};

    /// The WebSocket kinds, as "WebSocket routes" names them.
    const WEBSOCKET: [&str; 3] = ["echo", "broadcast", "sink"];

    #[test]
    fn kind_names_are_unique() {
        let names: BTreeSet<&str> = KINDS.iter().map(|kind| kind.name).collect();
        assert_eq!(names.len(), KINDS.len());
    }

    #[test]
    fn every_key_a_kind_takes_is_checked_and_every_checked_key_is_taken() {
        for kind in &KINDS {
            for key in kind.keys {
                assert!(Key::ALL.contains(key), "{} takes {key:?}", kind.name);
            }
        }
        for key in Key::ALL {
            assert!(
                KINDS.iter().any(|kind| kind.keys.contains(&key)),
                "no kind takes {key:?}"
            );
        }
    }

    #[test]
    fn each_refusal_names_the_kinds_that_take_the_key() {
        for key in Key::ALL {
            let takers: BTreeSet<&str> = KINDS
                .iter()
                .filter(|kind| kind.keys.contains(&key))
                .map(|kind| kind.name)
                .collect();
            let owners = key.owners().strip_suffix(" routes").unwrap_or_default();
            let named: BTreeSet<&str> = if owners == "WebSocket" {
                WEBSOCKET.into_iter().collect()
            } else {
                owners
                    .split([',', ' '])
                    .filter(|w| !w.is_empty() && *w != "and")
                    .collect()
            };
            assert_eq!(named, takers, "{key:?}");
        }
    }
}
