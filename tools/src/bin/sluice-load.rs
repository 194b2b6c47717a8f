//! `sluice-load`: the load generator of Sluice.
//!
//! Drives any Kafka-compatible broker through librdkafka (the `rdkafka` crate) in three modes —
//! `produce`, `consume` and `e2e` — and reports throughput and coordinated-omission-safe latency
//! (HDR histograms, microsecond resolution) as a live progress line, a summary, a
//! `kafka-producer-perf-test`-style line and optional JSON / HDR percentile files.
//! Everything lives in `tools/src/load/`; this file only hands over to it. See
//! `docs/sluice-load.md` for the user guide and `docs/sluice-load.schema.json` for the JSON.

#[path = "../load/mod.rs"]
mod load;

fn main() -> std::process::ExitCode {
    load::main()
}
