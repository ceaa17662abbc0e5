//! The command line: `ringstream serve`, `ringstream check-config`, `ringstream reload` and
//! `ringstream bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringstream_engine::config::{
    FilesConfig, IoDriver, ReceiveMode, Route, RouteKind, ServerConfig, UploadConfig, WsLimits,
};

/// Where `--files DIR` serves DIR.
const FILES_PATH: &str = "/files/";
/// Where `--upload-dir DIR` takes uploads.
const UPLOAD_PATH: &str = "/upload/";

use ringstream::config;

/// ringstream: a thread-per-core io_uring HTTP/1.1 and WebSocket streaming server with abuse
/// protections.
#[derive(Debug, Parser)]
// `--version` names the commit too (`ringstream 0.1.0 (abc1234 2026-12-01)`; build.rs).
#[command(
    name = "ringstream",
    version = env!("RINGSTREAM_VERSION"),
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGTERM or SIGINT, then drain (prints `listening on ADDR` when ready).
    Serve(ServeArgs),
    /// Check a config file: print a one-line summary (exit 0) or the error (exit 2).
    CheckConfig(CheckConfigArgs),
    /// Ask a running server to read its config file again (sends SIGHUP; the outcome is in
    /// its log and in /metrics as ringstream_config_reloads_total).
    Reload(ReloadArgs),
    /// Load generator: WebSocket echo, handshakes and broadcast, file downloads, and the raw-TCP
    /// ceiling (loopback use).
    Bench(crate::bench::BenchArgs),
}

/// `ringstream serve`: flags override the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file [default: the embedded reference config, serving /health on 0.0.0.0:8080]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080; port 0 picks a free port [default: the file's
    /// listen]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Worker threads, each pinned to a core; 0 = one per online CPU [default: the file's workers]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=i64::from(config::MAX_WORKERS)))]
    pub workers: Option<u16>,
    /// Completion driver [default: the file's io_driver, else auto]
    #[arg(long, value_name = "DRIVER")]
    pub io_driver: Option<IoDriverArg>,
    /// How WebSocket sessions receive on io_uring [default: the file's receive, else auto]
    #[arg(long, value_name = "MODE")]
    pub receive: Option<ReceiveArg>,
    /// listen(2) backlog of each worker's socket, 1..=65535 [default: the file's backlog]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(config::MAX_BACKLOG)))]
    pub backlog: Option<u32>,
    /// Start even if another process already serves the port through SO_REUSEPORT
    #[arg(long)]
    pub allow_shared_port: bool,
    /// Serve the files below DIR at /files/ (the root of the config's /files/ route, which is
    /// added if the config has none) [default: the file's root; ./public in the embedded
    /// default]
    #[arg(long, value_name = "DIR")]
    pub files: Option<PathBuf>,
    /// Store uploads (PUT or POST /upload/NAME) in DIR: the root of the config's /upload/
    /// route, which is added if the config has none [default: no uploads in the embedded
    /// default]
    #[arg(long, value_name = "DIR")]
    pub upload_dir: Option<PathBuf>,
    /// Write the server's process id to FILE once it listens (removed when it exits), for
    /// `ringstream reload --pid-file FILE`
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Log filter: a level (error, warn, info, debug, trace) or directives such as
    /// `info,ringstream_engine=debug` [default: $RUST_LOG, else info]
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_filter)]
    pub log_level: Option<String>,
}

/// `ringstream check-config FILE`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML config file to check
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `ringstream reload`: which server.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReloadArgs {
    /// The server's process id
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// The file `serve --pid-file` wrote
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

/// `--io-driver` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoDriverArg {
    /// io_uring where the kernel allows it, else the poll driver
    Auto,
    /// io_uring or refuse to start
    Uring,
    /// The readiness (epoll) driver
    Poll,
}

impl From<IoDriverArg> for IoDriver {
    fn from(arg: IoDriverArg) -> Self {
        match arg {
            IoDriverArg::Auto => Self::Auto,
            IoDriverArg::Uring => Self::Uring,
            IoDriverArg::Poll => Self::Poll,
        }
    }
}

/// `--receive` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiveArg {
    /// A receive per read, then the buffer ring once the session's first bursts were small
    Auto,
    /// One receive submitted per read, into the connection's own buffer
    PerRead,
    /// One multishot receive per WebSocket session into the worker's buffer ring (io_uring only)
    Ring,
}

impl From<ReceiveArg> for ReceiveMode {
    fn from(arg: ReceiveArg) -> Self {
        match arg {
            ReceiveArg::Auto => Self::Auto,
            ReceiveArg::PerRead => Self::PerRead,
            ReceiveArg::Ring => Self::Ring,
        }
    }
}

impl ServeArgs {
    /// The config file (or the embedded default) with this command line's overrides applied.
    pub fn load_config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => config::load_file(path)?,
            None => config::embedded_default()?,
        };
        self.apply_overrides(&mut config);
        Ok(config)
    }

    fn apply_overrides(&self, config: &mut ServerConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(workers) = self.workers {
            config.workers = usize::from(workers);
        }
        if let Some(io_driver) = self.io_driver {
            config.io_driver = io_driver.into();
        }
        if let Some(receive) = self.receive {
            config.receive = receive.into();
        }
        if let Some(backlog) = self.backlog {
            config.backlog = backlog;
        }
        if self.allow_shared_port {
            config.allow_shared_port = true;
        }
        if let Some(dir) = &self.files {
            let route = config
                .routes
                .iter_mut()
                .find(|r| r.path == FILES_PATH && matches!(r.kind, RouteKind::Files(_)));
            match route {
                Some(route) => {
                    if let RouteKind::Files(files) = &mut route.kind {
                        files.root.clone_from(dir);
                        files.root_optional = false;
                    }
                }
                None => add_route(
                    config,
                    FILES_PATH,
                    RouteKind::Files(Box::new(FilesConfig::new(dir.clone()))),
                ),
            }
        }
        if let Some(dir) = &self.upload_dir {
            let route = config
                .routes
                .iter_mut()
                .find(|r| r.path == UPLOAD_PATH && matches!(r.kind, RouteKind::Upload(_)));
            match route {
                Some(route) => {
                    if let RouteKind::Upload(upload) = &mut route.kind {
                        upload.dir.clone_from(dir);
                    }
                }
                None => add_route(
                    config,
                    UPLOAD_PATH,
                    RouteKind::Upload(Box::new(UploadConfig::new(dir.clone()))),
                ),
            }
        }
    }
}

/// Adds a route at `path` with the config's global limits.
fn add_route(config: &mut ServerConfig, path: &str, kind: RouteKind) {
    let limits = config.limits.clone();
    config.routes.push(Route {
        path: path.into(),
        kind,
        limits,
        ws: WsLimits::default(),
        auth: None,
    });
}

/// Checks a `--log-level` value up front, so that a typo is a usage error.
fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["ringstream", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let args = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "3",
            "--io-driver",
            "poll",
            "--backlog",
            "128",
            "--allow-shared-port",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let config = args.load_config().unwrap();
        assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.workers, 3);
        assert_eq!(config.io_driver, IoDriver::Poll);
        assert_eq!(config.backlog, 128);
        assert!(config.allow_shared_port);
        assert_eq!(args.log_level.as_deref(), Some("debug"));
    }

    #[test]
    fn no_flags_keep_the_file() {
        let config = serve(&[]).unwrap().load_config().unwrap();
        assert_eq!(config, config::embedded_default().unwrap());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["--workers", "1025"][..],
            &["--backlog", "0"],
            &["--backlog", "65536"],
            &["--io-driver", "epoll"],
            &["--listen", "localhost"],
            &["--log-level", "info,,=["],
        ] {
            assert!(serve(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn check_config_takes_a_file() {
        let cli = Cli::try_parse_from(["ringstream", "check-config", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig(a) if a.file == Path::new("x.toml")));
        assert!(Cli::try_parse_from(["ringstream", "check-config"]).is_err());
    }
}
