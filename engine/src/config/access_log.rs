//! The access log's settings: where lines go and in which format.

use std::path::PathBuf;

/// Where access log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Appended to this file (reopened when it is moved away, and on SIGUSR1).
    File(PathBuf),
    /// The process's standard output.
    Stdout,
}

/// The shape of one access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// nginx's `combined` (client, time, request line, status, bytes, referer, user agent),
    /// then `rt=` (seconds), `id=` (request id) and `route=`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// `access_log = "PATH" | "stdout"` with `access_log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// Their format.
    pub format: AccessLogFormat,
}
