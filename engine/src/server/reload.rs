//! Reload on SIGHUP: the configuration is read again by its source (the file, checked like at
//! start-up), keys that need a restart keep their running values with one log line each, and
//! the rest replaces the configuration for new connections ([`Server::reload`]). A file that
//! does not load, or a route state that cannot be opened, changes nothing: the error is logged
//! and counted (`ringstream_config_reloads_total{result="failed"}`).

use crate::config::ServerConfig;
use crate::server::start::Server;

/// Where a reload reads the configuration: `Err` carries the message to log (for a file,
/// `file:line: key: message`).
pub type ReloadSource<'a> = dyn FnMut() -> Result<ServerConfig, String> + 'a;

/// Reads the configuration again and hands it to the workers, logging and counting the
/// outcome. Returns whether the new configuration took over.
pub fn reload(server: &Server, source: &mut ReloadSource<'_>) -> bool {
    let outcome = source().and_then(|next| server.reload(next).map_err(|e| e.to_string()));
    match outcome {
        Ok(kept) => {
            for key in &kept {
                tracing::warn!(
                    key,
                    "reload: {key} changed, but it needs a restart; it keeps its running value"
                );
            }
            server.metrics().count_reload(true);
            tracing::info!(
                restart_needed = kept.len(),
                "configuration reloaded: new connections get it, open ones keep theirs"
            );
            true
        }
        Err(error) => {
            server.metrics().count_reload(false);
            tracing::error!("reload refused, the running configuration is kept: {error}");
            false
        }
    }
}

/// Sets in `next` the running value of every key that needs a restart (the listeners, the
/// workers and their driver, the server-wide connection limits, the access log, the size of
/// the client table, the cluster); returns the names of those that differed.
pub fn keep_restart_keys(running: &ServerConfig, next: &mut ServerConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if next.$($field)+ != running.$($field)+ {
                next.$($field)+ = running.$($field)+.clone();
                kept.push($name);
            }
        };
    }
    keep!("listen", listen);
    keep!("workers", workers);
    keep!("backlog", backlog);
    keep!("io_driver", io_driver);
    keep!("io_uring_setup", io_uring_setup);
    keep!("receive", receive);
    keep!("allow_shared_port", allow_shared_port);
    keep!("max_connections", connection_limits.max_connections);
    keep!("max_buffered_bytes", connection_limits.max_buffered_bytes);
    keep!("access_log", access_log);
    keep!("max_tracked_clients", clients.max_tracked_clients);
    keep!("cluster", cluster);
    // Certificates are taken up by a reload; turning TLS on or off changes what the listeners
    // speak and waits for a restart.
    if next.tls.is_some() != running.tls.is_some() {
        next.tls.clone_from(&running.tls);
        kept.push("tls");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keys_keep_their_running_values_and_are_named() {
        let running = ServerConfig::new(([127, 0, 0, 1], 8080).into());
        let mut next = ServerConfig::new(([127, 0, 0, 1], 9090).into());
        next.workers = 7;
        next.drain_timeout = std::time::Duration::from_secs(3);
        next.clients.max_concurrent_connections = 5;
        let kept = keep_restart_keys(&running, &mut next);
        assert_eq!(kept, ["listen", "workers"]);
        assert_eq!(
            (next.listen, next.workers),
            (running.listen, running.workers)
        );
        assert_eq!(
            next.drain_timeout,
            std::time::Duration::from_secs(3),
            "reloadable"
        );
        assert_eq!(next.clients.max_concurrent_connections, 5, "reloadable");
    }
}
