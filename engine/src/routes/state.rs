//! What routes need beyond their configuration, opened once at start-up and shared by every
//! worker: a sink route's file writer, a files route's root directory and its route-wide
//! bandwidth budget, an upload route's directory.

use std::sync::Arc;
use std::time::Duration;

use ringstream_limits::gcra::{AtomicGcraState, Gcra};

use crate::config::{RouteKind, ServerConfig};
use crate::error::EngineError;
use crate::routes::auth::cache::AuthCache;
use crate::routes::files::root::FileRoot;
use crate::routes::sink::file::SinkWriter;
use crate::routes::upload::store::UploadDir;

/// The state of every route, by route index.
pub type RouteStates = Arc<[RouteState]>;

/// One route's shared state (empty for most kinds).
#[derive(Debug, Default)]
pub struct RouteState {
    /// A sink route's file.
    pub sink: Option<SinkWriter>,
    /// A files route's root (`None` for an optional root that does not exist).
    pub root: Option<FileRoot>,
    /// A files route's `global_bandwidth`, shared by every connection on every core.
    pub global_bandwidth: Option<SharedRate>,
    /// An upload route's directory.
    pub upload: Option<Arc<UploadDir>>,
    /// The kept answers of the route's auth endpoint (with `auth_cache`).
    pub auth_cache: Option<AuthCache>,
}

/// A byte rate shared across cores: one quota, one atomic state.
#[derive(Debug)]
pub struct SharedRate {
    /// Bytes per second, with a burst of one piece.
    pub quota: Gcra,
    /// The budget's state.
    pub state: AtomicGcraState,
}

impl SharedRate {
    /// `bytes_per_second` with bursts of `burst` bytes; `None` when the rate is 0.
    pub fn new(bytes_per_second: u64, burst: u64) -> Option<Self> {
        Some(Self {
            quota: Gcra::new(bytes_per_second, Duration::from_secs(1), burst)?,
            state: AtomicGcraState::default(),
        })
    }
}

/// Opens what each route needs: sink files (a torn last line is cut), files roots (a missing
/// optional root is logged once and served as empty).
pub fn open(config: &ServerConfig) -> Result<RouteStates, EngineError> {
    let mut states = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let mut state = RouteState::default();
        if let Some(auth) = route.auth.as_ref().filter(|auth| !auth.cache.is_zero()) {
            state.auth_cache = Some(AuthCache::new(auth.cache));
        }
        match &route.kind {
            RouteKind::Sink {
                file: Some(file), ..
            } => state.sink = Some(SinkWriter::open(file.clone())?),
            RouteKind::Files(files) => {
                state.root = match FileRoot::open(&files.root) {
                    Ok(root) => Some(root),
                    Err(e) if files.root_optional && e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::warn!(
                            route = %route.path,
                            root = %files.root.display(),
                            "the files root does not exist: the route answers 404 (pass --files DIR)"
                        );
                        None
                    }
                    Err(e) => {
                        return Err(EngineError::Io(std::io::Error::new(
                            e.kind(),
                            format!(
                                "files route {}: root {}: {e}",
                                route.path,
                                files.root.display()
                            ),
                        )));
                    }
                };
                let rate = route.limits.bandwidth.global;
                let burst = crate::routes::files::pace::cap_burst(rate, files.chunk_size as u64);
                state.global_bandwidth = SharedRate::new(rate, burst);
            }
            RouteKind::Upload(upload) => {
                let (dir, removed) = UploadDir::open(&upload.dir).map_err(|e| {
                    EngineError::Io(std::io::Error::new(
                        e.kind(),
                        format!(
                            "upload route {}: directory {}: {e}",
                            route.path,
                            upload.dir.display()
                        ),
                    ))
                })?;
                if removed > 0 {
                    tracing::info!(
                        route = %route.path,
                        removed,
                        "deleted the temporary files of uploads a previous run did not finish"
                    );
                }
                state.upload = Some(Arc::new(dir));
            }
            _ => {}
        }
        states.push(state);
    }
    Ok(states.into())
}
