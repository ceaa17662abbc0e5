//! The routes a server serves: one `[[routes]]` entry, the kinds of route, and the settings
//! of the kinds that need more than a line (files, uploads, where a topic's name comes from).

use std::path::PathBuf;

use ringstream_limits::cidr::CidrSet;

use super::{AuthConfig, HttpLimits, ProxyConfig, WsLimits};
use crate::routes::handler::WsHandler;
use crate::routes::sink::file::SinkFileConfig;

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Path prefix, matched on segment boundaries (`/health` matches `/health` and `/health/x`,
    /// not `/healthz`); a prefix ending in `/` matches everything below it.
    pub path: String,
    /// What the route serves.
    pub kind: RouteKind,
    /// The global `[limits]` with this route's overrides applied.
    pub limits: HttpLimits,
    /// The WebSocket protections, resolved the same way (used by WebSocket kinds only).
    pub ws: WsLimits,
    /// The app endpoint asked before a request is answered or upgraded (`auth`).
    pub auth: Option<Box<AuthConfig>>,
}

/// What a route serves.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    /// 200 `ok`, for load balancers and probes.
    Health,
    /// A fixed body with a fixed content type.
    StaticText {
        /// The response body.
        body: String,
        /// The `Content-Type` header value.
        content_type: String,
    },
    /// WebSocket echo: every message comes back to its sender, unmasked in place.
    Echo {
        /// Bytes put in front of every echoed message (BustAPI's `response_prefix`).
        response_prefix: Vec<u8>,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// WebSocket served by a handler registered in code: every protection of the route applies
    /// before the handler sees a message (see [`crate::routes::handler`]).
    Handler {
        /// Runs once per connection, on the worker that accepted it.
        handler: WsHandler,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// WebSocket pub/sub: each connection joins a topic, and every message a member sends is
    /// delivered to every member of the topic, on every worker (see [`crate::routes::broadcast`]).
    Broadcast {
        /// Where the topic's name comes from.
        topic: TopicSource,
        /// Whether a member also receives its own messages.
        echo_to_sender: bool,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// `POST` a message to a topic's members over HTTP (notifications out); answers with the
    /// number of members it reached.
    Publish {
        /// Where the topic's name comes from.
        topic: TopicSource,
        /// When set, a request must carry `Authorization: Bearer <token>` (401 otherwise).
        token: Option<String>,
        /// Addresses allowed to publish (403 for others).
        allowed_clients: CidrSet,
    },
    /// WebSocket telemetry in: messages are received under every protection, counted, never
    /// answered, and appended as JSON lines to a file when one is configured.
    Sink {
        /// The file messages are appended to (none: they are only counted).
        file: Option<SinkFileConfig>,
        /// Subprotocols offered to clients, in order of preference; empty offers none.
        subprotocols: Vec<String>,
    },
    /// Static files below a root directory: `GET` and `HEAD`, ranges, conditionals, and the
    /// bandwidth caps of the route's limits (see [`crate::routes::files`]).
    Files(Box<FilesConfig>),
    /// Uploads: `PUT` or `POST /upload/NAME` streams the body to a temporary file in the
    /// directory, renamed to NAME only once complete (see [`crate::routes::upload`]).
    Upload(Box<UploadConfig>),
    /// A reverse proxy: requests below the path go to an upstream (the user's app) once every
    /// protection of the route has passed (see [`crate::routes::proxy`]).
    Proxy(Box<ProxyConfig>),
    /// `/stats`: the server's counters and configured limits as JSON.
    Stats {
        /// Addresses allowed to read it (403 for others).
        allowed_clients: CidrSet,
    },
    /// `/metrics`: the same counters in the Prometheus text format.
    Metrics {
        /// Addresses allowed to read it (403 for others).
        allowed_clients: CidrSet,
    },
    /// `/dashboard`: one self-contained page that shows the `/stats` document live, and that
    /// document itself below the route (`/dashboard/stats`), so the page needs no other route.
    Dashboard {
        /// Addresses allowed to read it (403 for others).
        allowed_clients: CidrSet,
    },
}

impl RouteKind {
    /// A WebSocket route served by `handler`, offering no subprotocol.
    pub fn handler(handler: WsHandler) -> Self {
        Self::Handler {
            handler,
            subprotocols: Vec::new(),
        }
    }

    /// The kind's name in the configuration file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::StaticText { .. } => "static_text",
            Self::Echo { .. } => "echo",
            Self::Handler { .. } => "handler",
            Self::Broadcast { .. } => "broadcast",
            Self::Publish { .. } => "publish",
            Self::Sink { .. } => "sink",
            Self::Files(_) => "files",
            Self::Upload(_) => "upload",
            Self::Proxy(_) => "proxy",
            Self::Stats { .. } => "stats",
            Self::Metrics { .. } => "metrics",
            Self::Dashboard { .. } => "dashboard",
        }
    }

    /// Whether the route speaks WebSocket after an HTTP upgrade.
    pub fn is_websocket(&self) -> bool {
        matches!(
            self,
            Self::Echo { .. } | Self::Handler { .. } | Self::Broadcast { .. } | Self::Sink { .. }
        )
    }

    /// Where a broadcast or publish route takes its topic from (`None` for other kinds).
    pub fn topic(&self) -> Option<&TopicSource> {
        match self {
            Self::Broadcast { topic, .. } | Self::Publish { topic, .. } => Some(topic),
            _ => None,
        }
    }

    /// The subprotocols a WebSocket route offers (none for other kinds).
    pub fn subprotocols(&self) -> &[String] {
        match self {
            Self::Echo { subprotocols, .. }
            | Self::Handler { subprotocols, .. }
            | Self::Broadcast { subprotocols, .. }
            | Self::Sink { subprotocols, .. } => subprotocols,
            Self::Health
            | Self::StaticText { .. }
            | Self::Publish { .. }
            | Self::Files(_)
            | Self::Upload(_)
            | Self::Proxy(_)
            | Self::Stats { .. }
            | Self::Metrics { .. }
            | Self::Dashboard { .. } => &[],
        }
    }
}

/// A `files` route: where the files are and how they are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The root directory; nothing outside it is ever served.
    pub root: PathBuf,
    /// When the root does not exist, serve nothing (404) after one warning instead of refusing
    /// to start (the embedded default's `./public`).
    pub root_optional: bool,
    /// The file a directory request serves (`index.html`); without it directories are 404.
    pub index: Option<String>,
    /// Whether names starting with `.` are served.
    pub allow_hidden: bool,
    /// Whether every file is sent with `Content-Disposition: attachment`.
    pub attachment: bool,
    /// Most ranges one request may ask for; past it the whole file is sent. Only 1 is
    /// supported (no `multipart/byteranges`).
    pub max_ranges: usize,
    /// Bytes read from the file and sent at a time (per connection, the most a download keeps
    /// in memory).
    pub chunk_size: usize,
    /// How the file's bytes reach the socket (BENCHMARKS.md compares them).
    pub send: SendPath,
}

/// How a files route sends a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPath {
    /// `sendfile(2)` for each piece whose pages are all in the page cache; a piece that is
    /// not is read through io_uring (never on the worker thread) and sent from the buffer.
    #[default]
    Auto,
    /// `sendfile(2)` for every piece: no copy through a buffer, but a page not in the page
    /// cache is read from disk inside the call, on the worker thread.
    Sendfile,
    /// An io_uring read into the connection's buffer, then a send that copies it.
    Copy,
    /// An io_uring read into the buffer, then `IORING_OP_SEND_ZC` (no copy on the send).
    Zerocopy,
}

impl FilesConfig {
    /// `root` with every default: no index, hidden names refused, no attachment, one range,
    /// 64 KiB pieces.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            root_optional: false,
            index: None,
            allow_hidden: false,
            attachment: false,
            max_ranges: 1,
            chunk_size: 64 * 1024,
            send: SendPath::Auto,
        }
    }
}

/// An `upload` route: where uploads go and how they are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// The directory uploads are stored in (it must exist).
    pub dir: PathBuf,
    /// Largest upload in bytes: 413 before reading when `Content-Length` says more, and
    /// mid-stream for a chunked body.
    pub max_upload_size: u64,
    /// Replace an existing file of the same name (409 otherwise).
    pub overwrite: bool,
    /// `fsync` the file and the directory before answering 201.
    pub fsync: bool,
    /// Uploads one client may have in progress at once (429 past it).
    pub max_uploads_per_client: u32,
}

impl UploadConfig {
    /// `dir` with every default: 1 GiB, no overwrite, no fsync, 4 at once per client.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_upload_size: 1024 * 1024 * 1024,
            overwrite: false,
            fsync: false,
            max_uploads_per_client: 4,
        }
    }
}

/// Where a broadcast or publish route's topic name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSource {
    /// The path segment after the route's prefix (`path = "/ws/broadcast/{topic}"` in the
    /// file, stored as the prefix `/ws/broadcast/`).
    Path,
    /// One topic for the whole route.
    Fixed(String),
}

impl TopicSource {
    /// The topic a request for `path` on a route with prefix `prefix` names, if valid.
    pub fn resolve<'a>(&'a self, prefix: &str, path: &'a str) -> Option<&'a str> {
        let name = match self {
            Self::Fixed(name) => name.as_str(),
            Self::Path => path.strip_prefix(prefix)?,
        };
        crate::routes::broadcast::valid_topic(name).then_some(name)
    }
}
