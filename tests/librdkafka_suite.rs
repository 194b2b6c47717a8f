//! librdkafka's own transaction tests against a three-node Sluice cluster, through
//! `scripts/librdkafka-suite.sh` (which builds librdkafka 2.12.1's test runner once, from the
//! rdkafka-sys sources in the cargo registry, and starts and stops the brokers): 0103
//! (transactions: commit, abort, fencing, empty transactions, read_committed high watermarks,
//! misuse, consume-transform-produce) and 0129 (a consumer reading past 1,000 aborted records).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run: the one-time build of librdkafka (about a minute here) and both tests
/// (about 75 s), with room for a loaded CI machine. The script bounds each test by itself.
const RUN_TIMEOUT: Duration = Duration::from_secs(1500);

#[test]
fn librdkafka_transaction_tests_0103_and_0129_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("bash")
        .arg(format!("{root}/scripts/librdkafka-suite.sh"))
        .args(["0103", "0129"])
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .env("NODES", "3")
        .env("TEST_TIMEOUT_S", "600")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("run scripts/librdkafka-suite.sh");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for the script") {
            Some(status) => break status.code(),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // On timeout this stops the script and the brokers it started (same process group).
    // SAFETY: signalling the process group created for our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let out = reader.join().unwrap_or_default();
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
