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
