//! Checking the `broadcast` and `publish` routes: where their topic comes from, and their
//! options.

use ringstream_engine::broadcast::valid_topic;
use ringstream_engine::config::{RouteKind, TopicSource, loopback};

use super::error::ConfigError;
use super::raw::RawRoute;
use super::resolve::Checker;

/// The placeholder a broadcast or publish path may end with.
pub const TOPIC_PLACEHOLDER: &str = "{topic}";

impl Checker<'_, '_> {
    /// The `broadcast` kind with its options.
    pub(super) fn broadcast_kind(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<RouteKind, ConfigError> {
        self.refuse_option(key, "token", raw.token.as_ref(), "publish routes")?;
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
        self.refuse_option(
            key,
            "echo_to_sender",
            raw.echo_to_sender.as_ref(),
            "broadcast routes",
        )?;
        self.refuse_option(
            key,
            "subprotocols",
            raw.subprotocols.as_ref(),
            "WebSocket routes",
        )?;
        let allowed_clients = match &raw.allowed_clients {
            Some(value) => self.cidrs(value, &format!("{key}.allowed_clients"))?,
            None => loopback(),
        };
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
