//! `sluice-load` against the real broker: a short produce run, then a consume run of the same
//! topic; every produced message is consumed (counts from the JSON reports, never timings), and
//! the JSON has the documented shape. The same against `sluice-sink`, the do-nothing broker
//! benchmarks divide by.
//!
//! The broker binary comes from the same target directory (the workspace test run builds every
//! binary); run through `scripts/test.sh` or `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice_bin() -> PathBuf {
    let load = PathBuf::from(env!("CARGO_BIN_EXE_sluice-load"));
    let broker = load.with_file_name("sluice");
    assert!(
        broker.exists(),
        "broker binary {} not built: run the workspace tests (scripts/test.sh)",
        broker.display()
    );
    broker
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(sluice_bin());
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "none",
        "--cores",
        "2",
        "--data-dir",
    ])
    .arg(dir.path().join("data"));
    start(cmd, "sluice listening on ", dir)
}

/// The do-nothing broker of the same build (tools/src/bin/sluice-sink.rs).
fn start_sink(memory_bytes: usize) -> Broker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-sink"));
    cmd.args(["--listen", "127.0.0.1:0", "--memory-bytes"])
        .arg(memory_bytes.to_string());
    start(
        cmd,
        "sluice-sink listening on ",
        tempfile::tempdir().unwrap(),
    )
}

/// Spawns `cmd` and waits (bounded) for the line `<prefix><address>` on its stdout.
fn start(mut cmd: Command, prefix: &'static str, dir: tempfile::TempDir) -> Broker {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix(prefix) {
                let _ = tx.send(a.to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("broker started");
    Broker {
        child,
        addr,
        _dir: dir,
    }
}

fn run_load(args: &[&str], json: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-load"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice-load {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("records/sec"),
        "perf-test style summary line:\n{stdout}"
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn produce_then_consume_counts_match() {
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let (pj, cj) = (dir.path().join("p.json"), dir.path().join("c.json"));
    let n = "20000";
    let produced = run_load(
        &[
            "produce",
            "--bootstrap",
            &broker.addr,
            "--topic",
            "load-t",
            "--partitions",
            "4",
            "--messages",
            n,
            "--acks",
            "all",
            "--keyed",
            "-q",
        ],
        &pj,
    );
    for key in ["mode", "config", "machine", "results"] {
        assert!(produced.get(key).is_some(), "JSON has {key}");
    }
    assert_eq!(produced["results"]["produced"]["messages"], 20000);
    assert_eq!(produced["results"]["produced"]["errors"], 0);
    assert!(produced["results"]["latency_ms"]["p99"].as_f64().is_some());
    let consumed = run_load(
        &[
            "consume",
            "--bootstrap",
            &broker.addr,
            "--topic",
            "load-t",
            "--from-beginning",
            "--messages",
            n,
            "-q",
        ],
        &cj,
    );
    assert_eq!(consumed["results"]["consumed"]["messages"], 20000);
    assert_eq!(consumed["results"]["consumed"]["errors"], 0);
}

/// `--transaction-size`: transactional producers whose records a read_committed consumer reads
/// in full (the last, partial transaction is committed at the end too).
#[test]
fn transactional_produce_is_read_committed() {
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let (pj, cj) = (dir.path().join("p.json"), dir.path().join("c.json"));
    let produced = run_load(
        &[
            "produce",
            "--bootstrap",
            &broker.addr,
            "--topic",
            "load-txn",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--messages",
            "5050",
            "--transaction-size",
            "100",
            "-q",
        ],
        &pj,
    );
    assert_eq!(produced["results"]["produced"]["messages"], 5050);
    assert_eq!(produced["results"]["produced"]["errors"], 0);
    let consumed = run_load(
        &[
            "consume",
            "--bootstrap",
            &broker.addr,
            "--topic",
            "load-txn",
            "--from-beginning",
            "--messages",
            "5050",
            "-X",
            "isolation.level=read_committed",
            "-q",
        ],
        &cj,
    );
    assert_eq!(consumed["results"]["consumed"]["messages"], 5050);
    assert_eq!(consumed["results"]["consumed"]["errors"], 0);
}

#[test]
fn e2e_consumes_exactly_what_it_produces() {
    let broker = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("e.json");
    let r = run_load(
        &[
            "e2e",
            "--bootstrap",
            &broker.addr,
            "--topic",
            "load-e2e",
            "--partitions",
            "2",
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "-q",
        ],
        &j,
    );
    let p = r["results"]["produced"]["messages"].as_u64().unwrap();
    let c = r["results"]["consumed"]["messages"].as_u64().unwrap();
    assert!(p > 0);
    assert_eq!(p, c, "every produced message consumed");
    assert_eq!(r["results"]["missing"], 0);
}

/// sluice-sink serves what was produced: an idempotent keyed producer's messages all come back
/// to a consumer that checks every batch's CRC (the sink rewrites only base offsets, which the
/// CRC does not cover), and an e2e run consumes exactly what it produced.
#[test]
fn the_sink_serves_what_was_produced() {
    let sink = start_sink(64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let (pj, cj, ej) = (
        dir.path().join("p.json"),
        dir.path().join("c.json"),
        dir.path().join("e.json"),
    );
    let produced = run_load(
        &[
            "produce",
            "--bootstrap",
            &sink.addr,
            "--topic",
            "sink-t",
            "--partitions",
            "4",
            "--messages",
            "20000",
            "--acks",
            "all",
            "--keyed",
            "-X",
            "enable.idempotence=true",
            "-q",
        ],
        &pj,
    );
    assert_eq!(produced["results"]["produced"]["messages"], 20000);
    assert_eq!(produced["results"]["produced"]["errors"], 0);
    let consumed = run_load(
        &[
            "consume",
            "--bootstrap",
            &sink.addr,
            "--topic",
            "sink-t",
            "--from-beginning",
            "--messages",
            "20000",
            "-X",
            "check.crcs=true",
            "-q",
        ],
        &cj,
    );
    assert_eq!(consumed["results"]["consumed"]["messages"], 20000);
    assert_eq!(consumed["results"]["consumed"]["errors"], 0);
    let r = run_load(
        &[
            "e2e",
            "--bootstrap",
            &sink.addr,
            "--topic",
            "sink-e2e",
            "--partitions",
            "2",
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "-q",
        ],
        &ej,
    );
    let p = r["results"]["produced"]["messages"].as_u64().unwrap();
    assert!(p > 0);
    assert_eq!(r["results"]["consumed"]["messages"].as_u64(), Some(p));
    assert_eq!(r["results"]["missing"], 0);
}
