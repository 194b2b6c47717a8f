//! `/metrics`, `/ready` and `/live` over a small blocking HTTP server on its own thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{render, ControlRequest, ShardSnapshot};

/// Longest a scrape waits for a shard's snapshot.
const SCRAPE_SHARD_WAIT: Duration = Duration::from_secs(2);

/// Shared between the HTTP thread and `server::run`.
pub struct Endpoint {
    pub shards: Vec<flume::Sender<ControlRequest>>,
    /// Shards that finished start-up.
    pub ready_shards: AtomicUsize,
}

/// Binds `addr` and serves `/metrics`, `/ready`, `/live` on a background thread.
pub fn spawn_http(addr: SocketAddr, endpoint: Arc<Endpoint>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &endpoint) {
                    warn!(error = %e, "metrics request failed");
                }
            }
        })?;
    info!(listen = %bound, "metrics endpoint listening");
    Ok(bound)
}

fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = [0u8; 4096];
    let mut len = 0;
    while len < req.len() && !req[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut req[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&req[..len]);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let total = endpoint.shards.len();
    let ready = endpoint.ready_shards.load(Ordering::Relaxed) >= total;
    let (status, ctype, body) = match path {
        "/live" => ("200 OK", "text/plain", "live\n".to_owned()),
        "/ready" if ready => ("200 OK", "text/plain", "ready\n".to_owned()),
        "/ready" => (
            "503 Service Unavailable",
            "text/plain",
            "starting\n".to_owned(),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            render(&collect(endpoint), ready),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

fn collect(endpoint: &Endpoint) -> Vec<ShardSnapshot> {
    let waits: Vec<flume::Receiver<ShardSnapshot>> = endpoint
        .shards
        .iter()
        .map(|tx| {
            let (reply_tx, reply_rx) = flume::bounded(1);
            let _ = tx.send_timeout(reply_tx, SCRAPE_SHARD_WAIT);
            reply_rx
        })
        .collect();
    waits
        .into_iter()
        .filter_map(|rx| rx.recv_timeout(SCRAPE_SHARD_WAIT).ok())
        .collect()
}
