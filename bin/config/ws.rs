//! Checking the WebSocket keys of a `[limits]` / `[routes.limits]` table and of an `echo` route.

use ringstream_engine::config::{OnLimit, RouteKind, WsLimits, bounds};
use ringstream_engine::subscriber_queue::SlowConsumer;
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawLimits, RawRoute};

/// Most frames per second or per minute a rate may name.
const MAX_RATE: u32 = 100_000_000;
/// Least `max_message_size`: a close frame's payload (125 bytes) must fit.
const MIN_MESSAGE_SIZE: u64 = 125;
/// Most fragments one message may be split into.
const MAX_FRAGMENTS: usize = 1_000_000;
/// Least `max_backpressure`: one largest control frame.
const MIN_BACKPRESSURE: u64 = 1024;
/// Most `max_backpressure`: what one client may hold of the server's memory.
const MAX_BACKPRESSURE: u64 = 1024 * 1024 * 1024;

impl Checker<'_, '_> {
    /// `base` with the WebSocket values of `raw` applied, each checked; `key` names the table.
    pub(super) fn ws_limits(
        &self,
        base: &WsLimits,
        raw: &RawLimits,
        key: &str,
    ) -> Result<WsLimits, ConfigError> {
        let mut out = base.clone();
        let name = |field: &str| format!("{key}.{field}");
        if let Some(value) = &raw.max_message_size {
            out.max_message_size = self.size(
                value,
                &name("max_message_size"),
                MIN_MESSAGE_SIZE..=bounds::MAX_MESSAGE_SIZE_CEILING,
                "",
            )? as u64;
        }
        if let Some(value) = &raw.max_fragments {
            out.max_fragments = self.int(value, &name("max_fragments"), 1..=MAX_FRAGMENTS)?;
        }
        if let Some(value) = &raw.rate_limit {
            out.rate_limit = self.int(value, &name("rate_limit"), 0..=MAX_RATE)?;
        }
        if let Some(value) = &raw.messages_per_minute {
            out.messages_per_minute =
                self.int(value, &name("messages_per_minute"), 0..=MAX_RATE)?;
        }
        if let Some(value) = &raw.bytes_per_minute {
            out.bytes_per_minute = value.get_ref().0;
        }
        if let Some(value) = &raw.on_limit {
            out.on_limit = match value.get_ref().as_str() {
                "close" => OnLimit::Close,
                "drop" => OnLimit::Drop,
                _ => return Err(self.one_of(value, &name("on_limit"), &["close", "drop"])),
            };
        }
        if let Some(value) = &raw.heartbeat_interval {
            out.heartbeat_interval = self.timeout(value, &name("heartbeat_interval"))?;
        }
        if let Some(value) = &raw.timeout {
            out.timeout = self.timeout(value, &name("timeout"))?;
        }
        if let Some(value) = &raw.allowed_origins {
            out.allowed_origins = self.tokens(value, &name("allowed_origins"))?;
        }
        if let Some(value) = &raw.permessage_deflate {
            out.permessage_deflate = *value.get_ref();
        }
        if let Some(value) = &raw.deflate_context_takeover {
            out.deflate_context_takeover = *value.get_ref();
        }
        if let Some(value) = &raw.deflate_window_bits {
            out.deflate_window_bits = self.int(value, &name("deflate_window_bits"), 9..=15)?;
        }
        if let Some(value) = &raw.max_backpressure {
            out.max_backpressure = self.size(
                value,
                &name("max_backpressure"),
                MIN_BACKPRESSURE..=MAX_BACKPRESSURE,
                "",
            )?;
        }
        if let Some(value) = &raw.slow_consumer {
            out.slow_consumer = match value.get_ref().as_str() {
                "close" => SlowConsumer::Close,
                "drop" => SlowConsumer::Drop,
                "keep_latest" => SlowConsumer::KeepLatest,
                _ => {
                    return Err(self.one_of(
                        value,
                        &name("slow_consumer"),
                        &["close", "drop", "keep_latest"],
                    ));
                }
            };
        }
        if let Some(value) = &raw.slow_consumer_code {
            let code: u16 = self.int(value, &name("slow_consumer_code"), 1008..=1013)?;
            if code != 1008 && code != 1013 {
                return Err(self.source.error_at(
                    value.span(),
                    &name("slow_consumer_code"),
                    format!("{code} is not 1008 (policy violation) or 1013 (try again later)"),
                ));
            }
            out.slow_consumer_code = code;
        }
        Ok(out)
    }

    /// The `echo` kind with its options.
    pub(super) fn echo_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let subprotocols = match &raw.subprotocols {
            Some(value) => self.tokens(value, &format!("{key}.subprotocols"))?,
            None => Vec::new(),
        };
        let response_prefix = raw
            .response_prefix
            .as_ref()
            .map(|p| p.get_ref().as_bytes().to_vec())
            .unwrap_or_default();
        Ok(RouteKind::Echo {
            response_prefix,
            subprotocols,
        })
    }

    /// A list of header-safe, non-empty values (origins, subprotocol names).
    pub(super) fn tokens(
        &self,
        value: &Spanned<Vec<String>>,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        for item in value.get_ref() {
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_graphic()) || item.contains(',')
            {
                return Err(self.source.error_at(
                    value.span(),
                    key,
                    format!("{item:?} is not a valid entry (printable ASCII, no spaces or commas)"),
                ));
            }
        }
        Ok(value.get_ref().clone())
    }
}
