//! Small conversions between our types and `kafka-protocol`'s.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub use sluice_base::now_ms;

pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

pub fn uuid(id: &[u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id)
}

/// Crash-test hook: aborts the process (as `kill -9` would stop it, without any cleanup) when
/// the `SLUICE_FAILPOINT` environment variable names this point. Read once.
pub fn failpoint(name: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("SLUICE_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        print_err(&format!("failpoint {name}: aborting"));
        std::process::abort();
    }
}

/// Standard error for logs and diagnostics: a failed write (a full disk, a closed pipe) drops
/// the line and counts it in `sluice_log_write_errors_total`; it never panics or aborts, as
/// `eprintln!` and tracing's own error report would.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            crate::metrics::LOG_WRITE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Writes one line to standard error through [`LossyStderr`].
pub fn print_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(LossyStderr, "{line}");
}

/// The first address `host:port` resolves to (DNS off the reactor, on a blocking thread).
pub async fn resolve(host: &str, port: i32) -> std::io::Result<std::net::SocketAddr> {
    let port = u16::try_from(port)
        .map_err(|_| std::io::Error::other(format!("port {port} is out of range")))?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, port));
    }
    let host = host.to_owned();
    crate::runtime::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        (host.as_str(), port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))
    })
    .await
    .unwrap_or_else(|| Err(std::io::Error::other("resolver task failed")))
}
