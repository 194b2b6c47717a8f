//! librdkafka's own transaction tests against a three-node Sluice cluster, through
//! `scripts/librdkafka-suite.sh` (which builds librdkafka 2.12.1's test runner once, from the
//! rdkafka-sys sources in the cargo registry, and starts and stops the brokers): 0103
//! (transactions: commit, abort, fencing, empty transactions, read_committed high watermarks,
//! misuse, consume-transform-produce) and 0129 (a consumer reading past 1,000 aborted records).

mod common;

use std::process::Command;
use std::time::Duration;

/// The whole run: the one-time build of librdkafka (about a minute here) and both tests
/// (about 75 s), with room for a loaded CI machine. The script bounds each test by itself.
const RUN_TIMEOUT: Duration = Duration::from_secs(1500);

#[test]
fn librdkafka_transaction_tests_0103_and_0129_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (status, out) = common::run_bounded(
        Command::new("bash")
            .arg(format!("{root}/scripts/librdkafka-suite.sh"))
            .args(["0103", "0129"])
            .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
            .env("NODES", "3")
            .env("TEST_TIMEOUT_S", "600"),
        RUN_TIMEOUT,
    );
    println!("{out}");
    assert_eq!(
        status,
        Some(0),
        "librdkafka's tests failed or timed out:\n{out}"
    );
    for test in ["0103", "0129"] {
        assert!(
            out.lines().any(|l| l.trim() == format!("{test}   PASS")),
            "{test} did not pass:\n{out}"
        );
    }
}
