//! Loading a TOML config file (or the embedded default) into the engine's [`ServerConfig`].
//!
//! - `raw`: the file as written, with spans; unknown keys are refused there.
//! - `units`: size (`"64KiB"`) and duration (`"500ms"`) strings.
//! - `checker`: one value against its bounds, the error pointing at its line.
//! - `resolve`: the top-level keys and the defaults ← `[limits]` ← `[routes.limits]` layering.
//! - `routes`: the table of route kinds (name, keys taken, builder) and one route's checks.
//! - `static_text`, `broadcast`, `files`: the kinds' own keys (`broadcast` covers publish and
//!   sink, `files` covers upload).
//! - `ws`, `clients`: the WebSocket keys and the echo kind, and the per-client keys and the
//!   observability kinds.
//! - `error`: `file:line: key: message` errors, toml's own reworded the same way.

mod auth;
mod broadcast;
mod checker;
mod clients;
mod cluster;
mod error;
mod files;
mod proxy;
mod raw;
mod resolve;
mod routes;
mod static_text;
mod tls;
mod units;
mod values;
mod ws;

use std::path::Path;

use anyhow::Context as _;
use ringstream_engine::config::{IoDriver, RouteKind, ServerConfig};

pub use error::ConfigError;
pub use resolve::{MAX_BACKLOG, MAX_WORKERS};
pub use units::parse_size;

/// The reference config, served when no `--config` is given.
const DEFAULT_TOML: &str = include_str!("../default.toml");

/// How errors in the embedded default name it.
const DEFAULT_NAME: &str = "<embedded default.toml>";

/// Parses and checks config `text`; `name` is the file name errors show.
pub fn parse(text: &str, name: &str) -> Result<ServerConfig, ConfigError> {
    let source = error::Source { name, text };
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    resolve::resolve(&raw, &source)
}

/// Reads, parses and checks the config file at `path`.
pub fn load_file(path: &Path) -> anyhow::Result<ServerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// The embedded default config (`bin/default.toml`). Its files root (`./public`, relative to
/// the working directory) may be missing: the route then answers 404 after one warning.
pub fn embedded_default() -> anyhow::Result<ServerConfig> {
    let mut config = parse(DEFAULT_TOML, DEFAULT_NAME)?;
    for route in &mut config.routes {
        if let RouteKind::Files(files) = &mut route.kind {
            files.root_optional = true;
        }
    }
    Ok(config)
}

/// One line describing what `config` serves, for `check-config` and the start-up log.
pub fn summary(config: &ServerConfig) -> String {
    let workers = match config.workers {
        0 => "one per CPU".to_owned(),
        n => n.to_string(),
    };
    let io_driver = match config.io_driver {
        IoDriver::Auto => "auto",
        IoDriver::Uring => "uring",
        IoDriver::Poll => "poll",
    };
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|route| format!("{} ({})", route.path, route.kind.name()))
        .collect();
    format!(
        "listen {}{}, workers {workers}, io_driver {io_driver}, max_connections {}, {} route{}: {}",
        config.listen,
        if config.tls.is_some() { " (TLS)" } else { "" },
        config.connection_limits.max_connections,
        routes.len(),
        if routes.len() == 1 { "" } else { "s" },
        routes.join(", ")
    )
}

#[cfg(test)]
mod documented_keys;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
pub(crate) mod tests;
