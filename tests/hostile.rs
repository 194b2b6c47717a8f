//! Hostile input: oversize and negative frame sizes, random bytes, random well-framed requests
//! for every API key and version, corrupt and truncated record batches, hundreds of idle
//! connections and a stalled partial frame. Afterwards the broker still answers a normal client
//! at once, earlier data reads back intact, and its log shows no panic.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::{idempotent_batch, Raw};
use common::*;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use sluice_base::Rng;

/// Sends `data` and waits (bounded) until the broker answers something or closes.
fn poke(addr: &str, data: &[u8]) -> &'static str {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(data).is_err() {
        return "closed";
    }
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => "closed",
        Ok(_) => "answered",
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            "waiting"
        }
        Err(_) => "closed",
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn produce_raw(raw: &mut Raw, topic: &str, partition: i32, records: Bytes) -> i16 {
    raw.produce(topic, partition, records).0
}

#[test]
fn hostile_clients_do_not_hurt_anyone_else() {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1234_u64);
    println!("HOSTILE_SEED={seed}");
    let mut rng = Rng::new(seed);
    let broker = Broker::start(&["--cores", "2", "--socket-request-max-bytes", "1048576"]);
    broker.create_topic("safe", 2, &[]);
    let producer = broker.producer(&[("acks", "all")]);
    let before: Vec<Out> = (0..500)
        .map(|i| Out {
            partition: Some(i % 2),
            value: Some(format!("before-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    for r in produce_all(&producer, "safe", &before) {
        r.expect("delivered");
    }

    // Hundreds of idle connections and a stalled partial frame stay open meanwhile.
    let idle: Vec<TcpStream> = (0..420)
        .map(|_| TcpStream::connect(&broker.addr).expect("idle connect"))
        .collect();
    let mut stalled = TcpStream::connect(&broker.addr).unwrap();
    stalled.write_all(&[0, 0, 0x10, 0, 0, 3, 0]).unwrap(); // announces 4096 bytes, sends 3

    // Frame sizes: oversize and negative close the connection at once.
    assert_eq!(
        poke(&broker.addr, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
        "closed"
    );
    assert_eq!(
        poke(&broker.addr, &[0x00, 0x20, 0x00, 0x00]),
        "closed",
        "2 MiB > 1 MiB limit"
    );
    assert_eq!(poke(&broker.addr, &[0xff, 0xff, 0xff, 0xfe]), "closed");
    assert_eq!(poke(&broker.addr, &framed(&[])), "closed", "empty request");

    // Random bytes.
    for _ in 0..50 {
        let n = (rng.next_u64() % 300) as usize;
        let data = rng.bytes(n);
        let _ = poke(&broker.addr, &data);
    }
    // Random well-framed requests for every API key (known or not) and version.
    for key in -1i16..=75 {
        for version in [-1i16, 0, 1, 2, 3, 4, 5, 7, 9, 12, 13, 16, 17, 40] {
            let mut body = BytesMut::new();
            body.put_i16(key);
            body.put_i16(version);
            body.put_i32(7);
            body.put_i16(4);
            body.put_slice(b"evil");
            let n = (rng.next_u64() % 64) as usize;
            body.put_slice(&rng.bytes(n));
            let r = poke(&broker.addr, &framed(&body));
            assert_ne!(
                r, "waiting",
                "api {key} v{version}: neither answered nor closed"
            );
        }
    }
    // Truncated copies of a valid request.
    let mut valid = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(12)
        .with_correlation_id(1)
        .encode(&mut valid, 2)
        .unwrap();
    kafka_protocol::messages::MetadataRequest::default()
        .encode(&mut valid, 12)
        .unwrap();
    for cut in 0..valid.len() {
        assert_ne!(
            poke(&broker.addr, &framed(&valid[..cut])),
            "waiting",
            "cut at {cut}"
        );
    }

    // ApiVersions at a version we lack: v0 body with UNSUPPORTED_VERSION, connection usable.
    let mut raw = Raw::connect(&broker.addr);
    let mut future_version = BytesMut::new();
    future_version.put_i16(ApiKey::ApiVersions as i16);
    future_version.put_i16(9);
    future_version.put_i32(1);
    future_version.put_i16(-1);
    future_version.put_u8(0);
    raw.send_frame(&future_version);
    let mut frame = raw.recv_frame().expect("answered");
    assert_eq!(&frame[..4], &1i32.to_be_bytes(), "correlation id");
    let _ = frame.split_to(4);
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0)
        .unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(!resp.api_keys.is_empty());

    // Corrupt and truncated batches are refused and never stored.
    let good = idempotent_batch(-1, -1, 0, 3, "ok");
    let mut raw = Raw::connect(&broker.addr);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert_eq!(
        produce_raw(&mut raw, "safe", 0, Bytes::from(bad_crc)),
        ResponseError::CorruptMessage.code()
    );
    let truncated = good.slice(..good.len() - 5);
    assert_eq!(
        produce_raw(&mut raw, "safe", 0, truncated),
        ResponseError::CorruptMessage.code()
    );
    let mut bad_magic = good.to_vec();
    bad_magic[16] = 1;
    assert_eq!(
        produce_raw(&mut raw, "safe", 0, Bytes::from(bad_magic)),
        ResponseError::CorruptMessage.code()
    );
    let garbage = Bytes::from(rng.bytes(200));
    assert_eq!(
        produce_raw(&mut raw, "safe", 0, garbage),
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(
        produce_raw(&mut raw, "safe", 9, good.clone()),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        produce_raw(&mut raw, "__consumer_offsets", 0, good.clone()),
        ResponseError::InvalidTopicException.code(),
        "clients cannot write the internal offsets topic"
    );
    assert_eq!(
        produce_raw(&mut raw, "no-such-topic-x", 0, good.clone()),
        0,
        "auto-created"
    );
    assert_eq!(
        produce_raw(&mut raw, "safe", 0, good),
        0,
        "a valid batch still works on the same connection"
    );

    // A normal client is served at once; earlier data is intact.
    let after: Vec<Out> = (0..200)
        .map(|i| Out {
            partition: Some(i % 2),
            value: Some(format!("after-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    let started = Instant::now();
    for r in produce_all(&producer, "safe", &after) {
        r.expect("delivered after the abuse");
    }
    let got = consume_n(&broker.consumer(&[]), "safe", 2, 500 + 3 + 200);
    assert_eq!(got.len(), 703);
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    for b in &before {
        assert!(values.contains(&String::from_utf8(b.value.clone().unwrap()).unwrap()));
    }
    assert!(started.elapsed() < WAIT);
    drop(idle);
    drop(stalled);
    let log = broker.log();
    assert!(!log.contains("panicked"), "no panic in the broker log");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let broker = Broker::start(&["--connections-max-idle-ms", "300"]);
    let mut s = TcpStream::connect(&broker.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[0, 0, 0, 50, 1]).unwrap(); // a stalled partial frame
    let mut buf = [0u8; 8];
    let started = Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed by the broker");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn connection_limit_closes_extra_connections() {
    let broker = Broker::start(&["--cores", "1", "--max-connections", "5"]);
    // Each held connection gets an answer, so the broker has accepted and counted all five.
    let held: Vec<Raw> = (0..5)
        .map(|_| {
            let mut raw = Raw::connect(&broker.addr);
            raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
            assert!(raw.recv_frame().is_some(), "held connection served");
            raw
        })
        .collect();
    let mut extra = TcpStream::connect(&broker.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        extra.read(&mut buf).unwrap_or(0),
        0,
        "sixth connection closed"
    );
    drop(held);
    // Once others leave, a client gets in again.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut raw = Raw::connect(&broker.addr);
        raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        if raw.recv_frame().is_some() {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
}
