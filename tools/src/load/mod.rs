//! `sluice-load`: produce / consume / end-to-end load against a Kafka-compatible broker.
//!
//! Module map:
//! - `cli`: flags, presets, defaults → [`cli::Config`] (no I/O).
//! - `payload`, `schedule`: payload bytes and the fixed-rate schedule (pure, unit tested).
//! - `stats`: counters and HDR histograms shared between threads.
//! - `kafka`: librdkafka properties and set-up calls (bounded by `--connect-timeout`).
//! - `produce`, `consume`: the client threads. `run`: the clock, stop logic and progress.
//! - `report`: JSON, summary, perf-test line, HDR file.
//!
//! It depends only on the Kafka client, never on broker internals, so the same numbers can be
//! taken against Sluice, Apache Kafka or Redpanda.

mod cli;
mod consume;
mod kafka;
mod payload;
mod produce;
mod report;
mod run;
mod schedule;
mod stats;

#[cfg(test)]
mod mock_tests;

use std::process::ExitCode;

use clap::Parser;

/// A run that could not happen or not finish.
#[derive(Debug)]
pub enum LoadError {
    /// The bootstrap servers did not answer within `--connect-timeout`.
    Unreachable {
        bootstrap: String,
        timeout_s: f64,
        reason: String,
    },
    /// Creating or inspecting the topic failed.
    Topic(String),
    /// A client could not be created or configured (bad `-X` property, ...).
    Client(String),
    /// Writing `--json` / `--hdr-file` failed.
    Output(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreachable {
                bootstrap,
                timeout_s,
                reason,
            } => write!(
                f,
                "cannot reach bootstrap servers {bootstrap} within {timeout_s:.1} s: {reason}"
            ),
            LoadError::Topic(m) | LoadError::Client(m) | LoadError::Output(m) => f.write_str(m),
        }
    }
}

/// Exit status: setup or runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit status: bad command line (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit status: `--fail-on-error` and the run had problems.
const EXIT_PROBLEMS: u8 = 3;

pub fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let seed_fallback = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64);
    let cfg = match cli::resolve(&args, seed_fallback) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run_and_report(cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run_and_report(cfg: cli::Config) -> Result<ExitCode, LoadError> {
    let fail_on_error = cfg.fail_on_error;
    let json = cfg.json.clone();
    let hdr = cfg.hdr_file.clone();
    let outcome = run::execute(cfg)?;
    let (report, histogram) = report::build(&outcome);
    println!("{}", report::summary(&report));
    if let Some(path) = &json {
        report::write_json(path, &report)?;
    }
    if let Some(path) = &hdr {
        report::write_hdr(path, &histogram)?;
    }
    if fail_on_error && !report.results.problems.is_empty() {
        eprintln!(
            "error: --fail-on-error: {}",
            report.results.problems.join("; ")
        );
        return Ok(ExitCode::from(EXIT_PROBLEMS));
    }
    Ok(ExitCode::SUCCESS)
}
