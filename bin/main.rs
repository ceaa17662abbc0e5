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
    match serve(config) {
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

/// Runs the engine until SIGTERM/SIGINT and the drain. Once every worker accepts, prints
/// `listening on ADDR` as the first line on stdout: tests and scripts wait for it to learn the
/// port.
fn serve(config: ServerConfig) -> anyhow::Result<()> {
    ringstream_engine::run(config, |addr| {
        // A closed stdout must not stop the server.
        let _ = writeln!(std::io::stdout(), "listening on {addr}");
    })?;
    Ok(())
}
