//! `sluice`: a Kafka-compatible streaming broker, thread-per-core on io_uring.
//!
//! Running `sluice` with only flags starts the broker (see `sluice --help`); `sluice topic ...`,
//! `sluice group ...`, `sluice cluster ...`, `sluice produce` and `sluice consume` are the admin
//! CLI (the `sluice-cli` crate, `cli/`).

use std::process::ExitCode;

use clap::Parser;
use sluice::config::{BrokerArgs, Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka-compatible streaming broker, thread-per-core on io_uring",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(subcommand)]
    command: Option<sluice_cli::Command>,
}

fn init_logging(level: &str, format: LogFormat) {
    // openraft narrates every election at info; its warnings are what an operator needs,
    // except its heartbeat worker's, one per heartbeat (tens a second) while a voter is down,
    // which buried everything else in a failing test's log tail (replication warns once).
    let level = if level.contains("openraft") || level.contains('=') {
        level.to_owned()
    } else {
        format!("{level},openraft=warn,openraft::core::heartbeat=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| sluice::util::LossyStderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        return sluice_cli::run(command);
    }
    init_logging(&cli.broker.log_level, cli.broker.log_format);
    let config = match Config::from_args(cli.broker) {
        Ok(c) => c,
        Err(e) => {
            sluice::util::print_err(&format!("sluice: {e}"));
            return ExitCode::from(2);
        }
    };
    match sluice::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            sluice::util::print_err(&format!("sluice: {e}"));
            ExitCode::FAILURE
        }
    }
}
