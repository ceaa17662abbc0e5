//! Logging: `tracing` events formatted to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`
//! (the Redis client's own lines from `error` up, unless the filter names `fred`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber. `level` is a checked `--log-level` value.
pub fn init(level: Option<&str>) -> anyhow::Result<()> {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    let mut filter = match level {
        Some(level) => builder.parse(level)?,
        None => builder.from_env_lossy(),
    };
    // The Redis client of `[cluster]` warns at every failed reconnection attempt; the cluster
    // logs each change of Redis's state once itself. Its own lines show when asked for by name.
    let asked = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_default();
    if !asked.contains("fred") {
        filter = filter.add_directive("fred=error".parse()?);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
