//! Logging: `tracing` events formatted to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber. `level` is a checked `--log-level` value.
pub fn init(level: Option<&str>) -> anyhow::Result<()> {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    let filter = match level {
        Some(level) => builder.parse(level)?,
        None => builder.from_env_lossy(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
