//! Small conversions between our types and `kafka-protocol`'s.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

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
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "failpoint {name}: aborting");
        std::process::abort();
    }
}
