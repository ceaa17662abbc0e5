//! `ringstream`: parses the command line, sets up logging, loads the config and runs the engine.

mod bench;
mod cli;
mod logging;

use ringstream::config;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use ringstream_engine::config::ServerConfig;

/// Exit status for a bad config or command line: nothing was started (clap uses it too).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    match cli::Cli::parse().command {
        cli::Command::Serve(args) => serve_command(&args),
        cli::Command::CheckConfig(args) => check_config_command(&args),
        cli::Command::Reload(args) => match reload_command(&args) {
            Ok(pid) => {
                println!("sent SIGHUP to {pid}");
                ExitCode::SUCCESS
            }
            Err(error) => report(&error, 1),
        },
        cli::Command::Bench(args) => match bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => report(&error, 1),
        },
    }
}

fn serve_command(args: &cli::ServeArgs) -> ExitCode {
    let loaded = logging::init(args.log_level.as_deref()).and_then(|()| args.load_config());
    let config = match loaded {
        Ok(config) => config,
        Err(error) => return report(&error, EXIT_USAGE),
    };
    tracing::info!("starting: {}", config::summary(&config));
    match serve(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error, 1),
    }
}

fn check_config_command(args: &cli::CheckConfigArgs) -> ExitCode {
    match config::load_file(&args.file) {
        Ok(config) => {
            println!("{}: ok: {}", args.file.display(), config::summary(&config));
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, EXIT_USAGE),
    }
}

/// Prints the error chain as `error: outer: inner` and gives the exit status.
fn report(error: &anyhow::Error, status: u8) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(status)
}

/// Runs the engine until SIGTERM/SIGINT and the drain; SIGHUP reads the config file (or the
/// embedded default) again with the same command-line overrides. Once every worker accepts,
/// prints `listening on ADDR` as the first line on stdout (tests and scripts wait for it to
/// learn the port) and writes the pid file.
fn serve(config: ServerConfig, args: &cli::ServeArgs) -> anyhow::Result<()> {
    let mut source = || {
        let config = args.load_config().map_err(|e| format!("{e:#}"))?;
        tracing::info!("reloading: {}", config::summary(&config));
        Ok(config)
    };
    let mut pid_written = None;
    let result = ringstream_engine::run_reloadable(
        config,
        |addr| {
            // A closed stdout must not stop the server.
            let _ = writeln!(std::io::stdout(), "listening on {addr}");
            if let Some(path) = &args.pid_file {
                match std::fs::write(path, format!("{}\n", std::process::id())) {
                    Ok(()) => pid_written = Some(path.clone()),
                    Err(e) => {
                        tracing::error!(path = %path.display(), "cannot write the pid file: {e}")
                    }
                }
            }
        },
        &mut source,
    );
    if let Some(path) = pid_written {
        let _ = std::fs::remove_file(path);
    }
    result?;
    Ok(())
}

/// `ringstream reload`: sends SIGHUP to the server `--pid` or `--pid-file` names.
fn reload_command(args: &cli::ReloadArgs) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    let pid = match (args.pid, &args.pid_file) {
        (Some(pid), _) => pid,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the pid file {}", path.display()))?;
            text.trim()
                .parse::<i32>()
                .ok()
                .filter(|&pid| pid > 0)
                .with_context(|| {
                    format!("{}: not a process id: {:?}", path.display(), text.trim())
                })?
        }
        (None, None) => anyhow::bail!("give --pid or --pid-file"),
    };
    // SAFETY: `kill` has no memory-safety preconditions; a wrong pid is an error it reports.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let error = std::io::Error::last_os_error();
        anyhow::bail!("cannot signal process {pid}: {error}");
    }
    Ok(pid)
}
