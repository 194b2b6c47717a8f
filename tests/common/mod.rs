//! Test harness: starts the real `sluice` binary on a free loopback port with its own data dir,
//! and gives rdkafka clients for it. Every wait here is bounded.

#![allow(dead_code)]

pub mod cluster;
pub mod pki;
pub mod proxy;
pub mod raw;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::TopicPartitionList;

pub const WAIT: Duration = Duration::from_secs(30);

/// A running broker process; stopped (SIGKILL) on drop if still running.
pub struct Broker {
    pub child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// Address of the metrics endpoint (`/metrics`, `/ready`, `/live`).
    pub metrics_addr: String,
    /// Each listener's bound address by name (`SASL_PLAINTEXT` → `127.0.0.1:PORT`).
    pub listeners: std::collections::BTreeMap<String, String>,
    /// Extra environment of the broker process (e.g. `SLUICE_FAILPOINT`), kept for restarts.
    pub env: Vec<(String, String)>,
    /// When set, the broker's stdout and stderr go straight to this file (appended) instead of
    /// pipes, as with `sluice > file 2>&1`.
    pub output: Option<PathBuf>,
    /// Where the piped stderr is kept (without `output`): beside the first data dir, and there
    /// for the broker's life, also when a test moves `data_dir` (a disk the test fills must not
    /// swallow the log lines that say so).
    log_file: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_with_env(args, &[])
    }

    /// A broker listening on `listen` (a fixed address other nodes are told about).
    pub fn start_at(listen: &str, args: &[&str]) -> Broker {
        Broker::start_on(listen, args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Broker {
        Broker::start_on("127.0.0.1:0", args, env)
    }

    fn start_on(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let log_file = data_dir.with_extension("log");
        let mut b = Broker {
            child: None,
            addr: String::new(),
            data_dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            metrics_addr: String::new(),
            listeners: Default::default(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            output: None,
            log_file,
            _tmp: Some(tmp),
        };
        if !b.args.iter().any(|a| a == "--metrics-listen") {
            b.args
                .extend(["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        b.spawn(listen);
        b
    }

    fn spawn(&mut self, listen: &str) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(path) = &self.output {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("broker output file");
            let seen = std::fs::read_to_string(path).unwrap_or_default().len();
            let child = cmd
                .stdout(file.try_clone().expect("dup"))
                .stderr(file)
                .spawn()
                .expect("spawn sluice");
            let deadline = Instant::now() + WAIT;
            loop {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let new = text.get(seen..).unwrap_or_default();
                let line = |prefix: &str| {
                    new.lines()
                        .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
                };
                if let Some(addr) = line("sluice listening on ") {
                    self.addr = addr;
                    self.metrics_addr = line("sluice metrics on ").unwrap_or_default();
                    self.listeners = listener_lines(new);
                    break;
                }
                assert!(Instant::now() < deadline, "broker did not start:\n{new}");
                std::thread::sleep(Duration::from_millis(20));
            }
            self.child = Some(child);
            return;
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = self.log_file.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut metrics = String::new();
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sluice metrics on ") {
                    metrics = addr.to_owned();
                }
                if line.starts_with("sluice listener ") {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                if let Some(addr) = line.strip_prefix("sluice listening on ") {
                    let _ = tx.send((addr.to_owned(), metrics.clone(), listener_lines(&seen)));
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
            panic!("broker did not start; log:\n{log}")
        });
        self.addr = addr.0;
        self.metrics_addr = addr.1;
        self.listeners = addr.2;
        self.child = Some(child);
    }

    /// A counter of the metrics endpoint, summed over its series (e.g. every shard's).
    pub fn metric(&self, name: &str) -> u64 {
        let (status, body) = http_get(&self.metrics_addr, "/metrics");
        assert_eq!(status, 200, "metrics endpoint");
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Broker log so far (stderr).
    pub fn log(&self) -> String {
        let path = self.output.clone().unwrap_or_else(|| self.log_file.clone());
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let child = self.child.take()?;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_child(child, "stop after SIGTERM")
    }

    /// Waits (bounded) for the broker to exit by itself: its exit code, None if a signal
    /// ended it.
    pub fn wait_exit(&mut self) -> Option<i32> {
        wait_child(self.child.take().expect("running"), "exit")
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, …) to the running broker.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// SIGKILL (crash).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same address and data dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        let addr = self.addr.clone();
        // The broker itself waits for its killed predecessor's socket (`restart_at` tests
        // that); retry for a port in the ephemeral range a client connection took meanwhile.
        let deadline = Instant::now() + WAIT;
        loop {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn(&addr)));
            match r {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => std::panic::resume_unwind(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Starts again on the same data dir at a new address (`addr`).
    pub fn restart_at(&mut self, addr: &str) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn(addr);
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr)
            .set("broker.address.family", "v4")
            .set("socket.timeout.ms", "10000");
        c
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("admin client")
    }

    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin = self.admin();
        let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let res = futures_executor::block_on(admin.create_topics([&t], &AdminOptions::new()))
            .expect("create_topics");
        for r in res {
            r.expect("topic created");
        }
    }

    pub fn consumer(&self, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut c = self.client_config();
        c.set("group.id", "unused-no-commits")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c.create().expect("consumer")
    }
}

/// Waits up to WAIT for `child` to exit: its exit code, None if a signal ended it. Past the
/// deadline it is killed and the test fails ("broker did not {what}").
fn wait_child(mut child: Child, what: &str) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker did not {what} within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Debugging: SLUICE_TEST_KEEP=1 keeps the data directory and log of every broker.
        if std::env::var_os("SLUICE_TEST_KEEP").is_some() {
            if let Some(tmp) = self._tmp.take() {
                eprintln!("kept {}", tmp.keep().display());
            }
        }
    }
}

/// A consumed record, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

pub fn own(m: &BorrowedMessage<'_>) -> Rec {
    use rdkafka::message::Headers;
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Rec {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().to_millis(),
        headers,
    }
}

/// Assigns `partitions` of `topic` from the start and reads until `n` records came or WAIT passed.
pub fn consume_n(consumer: &BaseConsumer, topic: &str, partitions: i32, n: usize) -> Vec<Rec> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + WAIT;
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(own(&m)),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

/// Where a record landed: `(partition, offset)`, or why it did not.
pub type Delivery = Result<(i32, i64), KafkaError>;

/// Collects delivery reports: `(record index, delivery)`.
#[derive(Default)]
pub struct Deliveries {
    pub out: Mutex<Vec<(usize, Delivery)>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let r = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        if let Ok(mut out) = self.out.lock() {
            out.push((*index, r));
        }
    }
}

pub type TestProducer = ThreadedProducer<Deliveries>;

impl Broker {
    pub fn producer(&self, extra: &[(&str, &str)]) -> TestProducer {
        let mut c = self.client_config();
        c.set("linger.ms", "5").set("message.timeout.ms", "30000");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c.create_with_context(Deliveries::default())
            .expect("producer")
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Produces every record and waits for all deliveries; results are in input order.
pub fn produce_all(producer: &TestProducer, topic: &str, records: &[Out]) -> Vec<Delivery> {
    producer.context().out.lock().expect("lock").clear();
    for (i, r) in records.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8], Box<usize>> =
            BaseRecord::with_opaque_to(topic, Box::new(i)).headers(headers);
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(t) = r.timestamp {
            rec = rec.timestamp(t);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(Instant::now() < deadline, "send kept failing: {e}");
                    rec = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    let _ = producer.flush(WAIT);
    let mut out = std::mem::take(&mut *producer.context().out.lock().expect("lock"));
    assert_eq!(
        out.len(),
        records.len(),
        "every record gets a delivery report"
    );
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// A free loopback address whose port is below the kernel's ephemeral range (32768+ here):
/// a broker restarted after kill -9 gets its port back, which a client connection's source
/// port could otherwise have taken meanwhile. Bounded: 1000 tries.
pub fn address_outside_ephemeral_range() -> String {
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = sluice_base::Rng::new(seed);
    for _ in 0..1000 {
        let port = 20_000 + rng.next_u64() % 12_000;
        let addr = format!("127.0.0.1:{port}");
        if std::net::TcpListener::bind(&addr).is_ok() {
            return addr;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A plain HTTP/1.1 GET (metrics endpoint): (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let status = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn dir_exists(p: &Path) -> bool {
    p.is_dir()
}

/// `sluice listener NAME on ADDR` lines → NAME → ADDR.
fn listener_lines(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("sluice listener "))
        .filter_map(|l| l.split_once(" on "))
        .map(|(n, a)| (n.to_owned(), a.to_owned()))
        .collect()
}

/// Runs `cmd` in its own process group with stdout and stderr merged (the caller arranges `2>&1`),
/// killing the group after `timeout`. Returns the exit code (None if killed) and the output.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("spawn the script");
    let mut stdout = child.stdout.take().expect("stdout");
    // Reading in a thread keeps the script from blocking on a full pipe.
    let collector = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait on the script") {
            Some(status) => break status.code(),
            None if Instant::now() >= deadline => break None,
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    // On timeout this kills the script; after a normal exit it kills anything the script left
    // behind that would hold the pipe open (ESRCH, harmless, when nothing is left).
    // SAFETY: signalling the process group created for our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let output = collector.join().unwrap_or_default();
    (status, output)
}
