//! What routes need beyond their configuration, opened at start-up and shared by every
//! worker: a sink route's file writer, a files route's root directory and its route-wide
//! bandwidth budget, an upload route's directory, an auth hook's cache. On reload a route
//! whose resources did not change keeps its state (the same writer, budget and cache), and an
//! upload directory already open stays the one open (its uploads in progress go on).

use std::sync::Arc;
use std::time::Duration;

use ringstream_limits::gcra::{AtomicGcraState, Gcra};

use std::path::Path;

use crate::config::{Route, RouteKind, ServerConfig};
use crate::error::EngineError;
use crate::routes::auth::cache::AuthCache;
use crate::routes::files::root::FileRoot;
use crate::routes::sink::file::SinkWriter;
use crate::routes::upload::store::UploadDir;

/// The state of every route, by route index.
pub type RouteStates = Arc<[Arc<RouteState>]>;

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
    reopen(config, None, &[])
}

/// What each route of a reloaded `config` needs: the state of a route of `latest` (the
/// configuration it replaces, with its states) with the same path and resources is kept, an
/// upload directory an earlier generation opened (`earlier`: the states of every generation
/// since start-up, whose connections may still upload) is shared, and the rest is opened.
pub fn reopen(
    config: &ServerConfig,
    latest: Option<(&ServerConfig, &RouteStates)>,
    earlier: &[RouteStates],
) -> Result<RouteStates, EngineError> {
    let mut states = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        if let Some(kept) = latest.and_then(|latest| kept_state(route, latest)) {
            states.push(kept);
            continue;
        }
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
                let burst = crate::routes::files::pace::cap_burst(rate);
                state.global_bandwidth = SharedRate::new(rate, burst);
            }
            RouteKind::Upload(upload) if let Some(dir) = open_upload_dir(&upload.dir, earlier) => {
                state.upload = Some(dir);
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
        states.push(Arc::new(state));
    }
    Ok(states.into())
}

/// The state a route of `latest` had, when it had the same path, kind, bandwidth and auth
/// hook (so the same files, writer, budget and cache).
fn kept_state(
    route: &Route,
    (config, states): (&ServerConfig, &RouteStates),
) -> Option<Arc<RouteState>> {
    let index = config.routes.iter().position(|old| {
        old.path == route.path
            && old.kind == route.kind
            && old.auth == route.auth
            && old.limits.bandwidth == route.limits.bandwidth
    })?;
    states.get(index).cloned()
}

/// An upload directory at `path` that a generation still alive opened: its uploads in
/// progress keep their temporary files, which opening it again would delete.
fn open_upload_dir(path: &Path, alive: &[RouteStates]) -> Option<Arc<UploadDir>> {
    alive
        .iter()
        .flat_map(|states| states.iter())
        .find_map(|state| {
            state
                .upload
                .as_ref()
                .filter(|dir| dir.path() == path)
                .cloned()
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::config::{FilesConfig, UploadConfig};

    #[test]
    fn a_reload_keeps_unchanged_states_and_shares_open_upload_directories() {
        let dir = std::env::temp_dir().join(format!("ringstream-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let upload = || RouteKind::Upload(Box::new(UploadConfig::new(dir.clone())));
        let files = || RouteKind::Files(Box::new(FilesConfig::new(dir.clone())));
        let mut first = ServerConfig::new(([127, 0, 0, 1], 0).into());
        first = first.route("/files/", files()).route("/up/", upload());
        let before = open(&first).unwrap();
        // An upload in progress has its temporary file in the directory.
        let temp = dir.join(".ringstream-upload-1.part");
        std::fs::write(&temp, b"half").unwrap();

        let mut next = ServerConfig::new(([127, 0, 0, 1], 0).into());
        next = next.route("/files/", files()).route("/other-up/", upload());
        next.routes[0].limits.bandwidth.global = 1000;
        let third = next.clone().route("/more-files/", files());
        let after = reopen(&next, Some((&first, &before)), &[Arc::clone(&before)]).unwrap();
        assert!(
            !Arc::ptr_eq(&after[0], &before[0]),
            "a new global bandwidth is a new budget"
        );
        let before_dir = before[1].upload.as_ref().unwrap();
        assert!(Arc::ptr_eq(after[1].upload.as_ref().unwrap(), before_dir));
        assert!(temp.exists(), "the upload in progress keeps its file");
        let alive = [Arc::clone(&before), Arc::clone(&after)];
        let again = reopen(&third, Some((&next, &after)), &alive).unwrap();
        assert!(
            Arc::ptr_eq(&again[0], &after[0]),
            "unchanged: the same state"
        );
        assert!(Arc::ptr_eq(&again[1], &after[1]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
