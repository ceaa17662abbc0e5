//! Checking the `broadcast`, `publish` and `sink` routes: where a topic comes from, and the
//! routes' options.

use std::path::PathBuf;

use ringstream_engine::broadcast::valid_topic;
use ringstream_engine::config::{RouteKind, TopicSource};
use ringstream_engine::sink_file::SinkFileConfig;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

/// The placeholder a broadcast or publish path may end with.
pub const TOPIC_PLACEHOLDER: &str = "{topic}";
/// `sink_max_bytes` when the file does not say.
const DEFAULT_SINK_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// `sink_keep` when the file does not say.
const DEFAULT_SINK_KEEP: u32 = 5;
/// Most rotated sink files kept.
const MAX_SINK_KEEP: u32 = 1000;

impl Checker<'_, '_> {
    /// The `broadcast` kind with its options.
    pub(super) fn broadcast_kind(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<RouteKind, ConfigError> {
        let subprotocols = match &raw.subprotocols {
            Some(value) => self.tokens(value, &format!("{key}.subprotocols"))?,
            None => Vec::new(),
        };
        Ok(RouteKind::Broadcast {
            topic: self.topic_source(key, raw)?,
            echo_to_sender: raw.echo_to_sender.as_ref().is_none_or(|v| *v.get_ref()),
            subprotocols,
        })
    }

    /// The `publish` kind with its options (`allowed_clients`: loopback when not set).
    pub(super) fn publish_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let allowed_clients = self.allowed_clients(key, raw)?;
        let token = match &raw.token {
            Some(value) => {
                let token = value.get_ref();
                if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.source.error_at(
                        value.span(),
                        &format!("{key}.token"),
                        "a token is at least 16 printable ASCII characters, no spaces".to_owned(),
                    ));
                }
                Some(token.clone())
            }
            None => None,
        };
        Ok(RouteKind::Publish {
            topic: self.topic_source(key, raw)?,
            token,
            allowed_clients,
        })
    }

    /// The `sink` kind: a file (rotated past `sink_max_bytes`, keeping `sink_keep` old ones)
    /// or none.
    pub(super) fn sink_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let subprotocols = match &raw.subprotocols {
            Some(value) => self.tokens(value, &format!("{key}.subprotocols"))?,
            None => Vec::new(),
        };
        let Some(path) = &raw.sink_file else {
            if let Some(value) = &raw.sink_max_bytes {
                return Err(self.needs_sink_file(key, "sink_max_bytes", value.span()));
            }
            if let Some(value) = &raw.sink_keep {
                return Err(self.needs_sink_file(key, "sink_keep", value.span()));
            }
            return Ok(RouteKind::Sink {
                file: None,
                subprotocols,
            });
        };
        if path.get_ref().is_empty() || path.get_ref().ends_with('/') {
            return Err(self.source.error_at(
                path.span(),
                &format!("{key}.sink_file"),
                format!("{} is not a file path", self.source.written(path.span())),
            ));
        }
        let max_bytes = raw
            .sink_max_bytes
            .as_ref()
            .map_or(DEFAULT_SINK_MAX_BYTES, |v| v.get_ref().0);
        let keep = match &raw.sink_keep {
            Some(value) => self.int(value, &format!("{key}.sink_keep"), 1..=MAX_SINK_KEEP)?,
            None => DEFAULT_SINK_KEEP,
        };
        Ok(RouteKind::Sink {
            file: Some(SinkFileConfig {
                path: PathBuf::from(path.get_ref()),
                max_bytes,
                keep,
            }),
            subprotocols,
        })
    }

    fn needs_sink_file(&self, key: &str, name: &str, span: std::ops::Range<usize>) -> ConfigError {
        self.source.error_at(
            span,
            &format!("{key}.{name}"),
            format!("{name} applies to a sink file; set sink_file = \"PATH\" as well"),
        )
    }

    /// `{topic}` at the end of the path, or a `topic` key; one of the two.
    fn topic_source(&self, key: &str, raw: &RawRoute) -> Result<TopicSource, ConfigError> {
        let in_path = raw.path.get_ref().ends_with(TOPIC_PLACEHOLDER);
        match (&raw.topic, in_path) {
            (Some(value), false) => {
                if !valid_topic(value.get_ref()) {
                    return Err(self.source.error_at(
                        value.span(),
                        &format!("{key}.topic"),
                        format!(
                            "{} is not a topic name (1 to 128 printable ASCII characters, no '/' or spaces)",
                            self.source.written(value.span())
                        ),
                    ));
                }
                Ok(TopicSource::Fixed(value.get_ref().clone()))
            }
            (None, true) => Ok(TopicSource::Path),
            (Some(value), true) => Err(self.source.error_at(
                value.span(),
                &format!("{key}.topic"),
                "the path already names the topic with {topic}; remove one of the two".to_owned(),
            )),
            (None, false) => Err(self.source.error_at(
                raw.kind.span(),
                key,
                format!(
                    "a {} route needs a topic: end its path with /{{topic}} or set topic = \"name\"",
                    raw.kind.get_ref()
                ),
            )),
        }
    }
}
