//! One client connection: a reader that frames, decodes and dispatches requests in order, and a
//! writer that sends responses in that same order with vectored writes.
//!
//! Bounds: a frame's size is checked before its body is buffered (`--socket-request-max-bytes`);
//! the buffer grows with the bytes that actually arrive, and a large partial request first takes
//! its size from the shard's read budget (`--shard-memory-budget-bytes`) — without budget the
//! socket is simply not read (backpressure); at most `--max-inflight-requests` responses may be
//! pending before the reader stops reading; a connection silent for
//! `--connections-max-idle-ms` is closed.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::runtime::net::{AsyncWriteExt, BufResult, TcpStream};
use crate::runtime::JoinHandle;
use bytes::BytesMut;
use futures_util::FutureExt;
use sluice_net::{FrameReader, ResponseFrame};
use tracing::{debug, error, info, warn};

use crate::config::SecurityProtocol;
use crate::kafka::dispatch::{dispatch, Conn, Dispatched};
use crate::kafka::transport::{self, Writer, TLS_HANDSHAKE_TIMEOUT};
use crate::limits::{READ_BUDGET_RETRY_MS, READ_CHUNK_BYTES};
use crate::metrics::ShardMetrics;
use crate::security::sasl::Session;
use crate::shard::Shard;

type Pending = JoinHandle<Option<ResponseFrame>>;

/// Counts a request from dispatch until its response is written or dropped.
struct InflightGuard(Rc<Shard>);

impl InflightGuard {
    fn new(shard: &Rc<Shard>) -> InflightGuard {
        shard.inflight.set(shard.inflight.get() + 1);
        InflightGuard(shard.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}

/// Read budget held for one partial large request; released on drop.
struct BudgetHold {
    shard: Rc<Shard>,
    bytes: usize,
}

impl BudgetHold {
    fn try_take(shard: &Rc<Shard>, bytes: usize) -> Option<BudgetHold> {
        let used = shard.read_budget_used.get();
        if used > 0 && used + bytes > shard.config.args.shard_memory_budget_bytes {
            return None;
        }
        shard.read_budget_used.set(used + bytes);
        Some(BudgetHold {
            shard: shard.clone(),
            bytes,
        })
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        let used = self.shard.read_budget_used.get();
        self.shard
            .read_budget_used
            .set(used.saturating_sub(self.bytes));
    }
}

/// Serves a connection; a panic inside is logged and closes only this connection.
/// `listener` indexes `config.listeners`.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, listener: usize) {
    shard.connections.set(shard.connections.get() + 1);
    let outcome = std::panic::AssertUnwindSafe(serve_inner(shard.clone(), stream, peer, listener))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        error!(%peer, shard = shard.id, "connection task panicked; connection closed, shard keeps serving");
    }
    shard
        .connections
        .set(shard.connections.get().saturating_sub(1));
}

async fn serve_inner(shard: Rc<Shard>, mut stream: TcpStream, peer: SocketAddr, listener: usize) {
    let _ = stream.set_nodelay(true);
    let protocol = shard
        .config
        .listeners
        .get(listener)
        .map_or(SecurityProtocol::Plaintext, |l| l.protocol);
    let mut conn = Conn {
        listener: protocol.name(),
        session: Session::new(protocol.sasl()),
        host: Rc::from(peer.ip().to_string()),
        mute: Default::default(),
    };
    let idle = Duration::from_millis(shard.config.args.connections_max_idle_ms.max(1));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let tls = match (protocol.tls(), &shard.config.tls) {
        (false, _) => None,
        (true, None) => return, // Config refuses a TLS listener without a keystore
        (true, Some(ctx)) => {
            let limit = TLS_HANDSHAKE_TIMEOUT.min(idle);
            let accepted = crate::runtime::timeout(
                limit,
                transport::accept(&mut stream, ctx.config(protocol.sasl())),
            )
            .await;
            match accepted {
                Ok(Ok(a)) => {
                    if let Some(p) = a.tls.peer_certificates().and_then(|c| c.first()) {
                        match crate::security::tls::principal_of(p) {
                            Some(principal) => conn.session.set_certificate_principal(principal),
                            None => {
                                warn!(%peer, "closing connection: its certificate's subject cannot be read");
                                return;
                            }
                        }
                    }
                    buf.extend_from_slice(&a.early);
                    Some(a.tls)
                }
                Ok(Err(e)) => {
                    ShardMetrics::add(&shard.metrics.tls_handshake_failures, 1);
                    info!(%peer, error = %e, "closing connection: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    ShardMetrics::add(&shard.metrics.tls_handshake_failures, 1);
                    info!(%peer, ?limit, "closing connection: no TLS handshake in time");
                    return;
                }
            }
        }
    };
    let (mut rd, wr) = transport::split(stream, tls);
    let (tx, rx) =
        flume::bounded::<(Pending, InflightGuard)>(shard.config.args.max_inflight_requests);
    let zero_copy = shard.config.args.zero_copy_send && wr.may_zero_copy();
    let writer = crate::runtime::spawn(write_responses(shard.clone(), wr, rx, peer, zero_copy));
    let frames = FrameReader::new(shard.config.args.socket_request_max_bytes);
    let mut hold: Option<BudgetHold> = None;
    'read: loop {
        loop {
            let frame = match frames.next_frame(&mut buf) {
                Ok(Some(f)) => (f, crate::runtime::now()),
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'read;
                }
            };
            hold = None;
            // A client over its quota waits before its next request is read (Kafka mutes
            // the channel for the throttle time).
            if let Some(until) = conn.mute.take() {
                let wait = until.saturating_duration_since(crate::runtime::now());
                if !wait.is_zero() {
                    crate::runtime::sleep(wait.min(crate::security::quota::MAX_THROTTLE)).await;
                }
            }
            let guard = InflightGuard::new(&shard);
            match dispatch(&shard, frame.0, frame.1, &mut conn).await {
                Dispatched::Respond(fut) => {
                    let handle = crate::runtime::spawn(fut);
                    if tx.send_async((handle, guard)).await.is_err() {
                        break 'read; // writer gone: peer closed
                    }
                    if conn.session.failed() {
                        // Its answer goes out; then the connection closes (Kafka's way).
                        info!(%peer, "closing connection: SASL authentication failed");
                        break 'read;
                    }
                }
                Dispatched::Close(reason) => {
                    warn!(%peer, %reason, "closing connection");
                    break 'read;
                }
            }
        }
        // The frame in progress has a validated size; large ones take it from the budget first.
        let pending_size = match frames.peek_size(&buf) {
            Ok(Some(size)) => Some(size),
            _ => None,
        };
        if let Some(size) = pending_size.filter(|&s| s > READ_CHUNK_BYTES) {
            if hold.is_none() {
                let deadline = crate::runtime::now() + idle;
                hold = loop {
                    if let Some(h) = BudgetHold::try_take(&shard, size) {
                        break Some(h);
                    }
                    if crate::runtime::now() >= deadline || shard.shutting_down.get() {
                        info!(%peer, size, "closing connection: no read budget for its request");
                        break 'read;
                    }
                    crate::runtime::sleep(Duration::from_millis(READ_BUDGET_RETRY_MS)).await;
                };
            }
        }
        match pending_size {
            // A large frame, its size now held from the budget, is read into a buffer of
            // exactly its size: its bytes are copied once, by the socket, not again at every
            // doubling of the buffer, and no read runs past it into the next frame (whose
            // start would be copied out again). Only its first chunk is copied here.
            Some(size) if hold.is_some() => {
                if buf.capacity() < 4 + size {
                    let mut whole = BytesMut::with_capacity(4 + size);
                    whole.extend_from_slice(&buf);
                    buf = whole;
                }
            }
            // Small frames: a chunk at a time, never more than the frame announced.
            Some(size) => buf.reserve((4 + size).saturating_sub(buf.len()).max(1)),
            None => buf.reserve(READ_CHUNK_BYTES),
        }
        let read = crate::runtime::timeout(idle, rd.append(buf)).await;
        let Ok(BufResult(res, b)) = read else {
            info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection");
            break;
        };
        buf = b;
        match res {
            Ok(0) => break,
            Ok(n) => ShardMetrics::add(&shard.metrics.bytes_received, n as u64),
            Err(e) => {
                debug!(%peer, error = %e, "read failed");
                break;
            }
        }
    }
    drop(hold);
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "connection closed");
}

async fn write_responses(
    shard: Rc<Shard>,
    mut wr: Writer,
    rx: flume::Receiver<(Pending, InflightGuard)>,
    peer: SocketAddr,
    zero_copy: bool,
) {
    while let Ok((pending, _guard)) = rx.recv_async().await {
        let frame = match pending.await {
            Ok(Some(frame)) if frame.is_empty() => {
                shutdown(wr.socket());
                return;
            }
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                info!(%peer, error = ?e, "request handler failed; closing connection");
                shutdown(wr.socket());
                return;
            }
        };
        let len: usize = frame.iter().map(bytes::Bytes::len).sum();
        ShardMetrics::add(&shard.metrics.bytes_sent, len as u64);
        if let Err(e) = write_frame(&mut wr, frame, zero_copy).await {
            // Close, so the client sees it now rather than waiting for an answer.
            debug!(%peer, error = %e, "write failed; closing connection");
            shutdown(wr.socket());
            return;
        }
    }
}

/// Buffers one vectored write may carry: Linux refuses more than `IOV_MAX` (1024) with EINVAL. A
/// Fetch of many small batches has more pieces than that (two per partition plus one per batch).
const IOVECS_PER_WRITE_MAX: usize = 1024;

/// Writes one response frame, at most [`IOVECS_PER_WRITE_MAX`] buffers per vectored write.
async fn write_frame(
    wr: &mut Writer,
    mut frame: ResponseFrame,
    zero_copy: bool,
) -> std::io::Result<()> {
    let wr = match wr {
        Writer::Plain(sock) => sock,
        tls @ Writer::Tls { .. } => return tls.write_tls_frame(frame).await,
    };
    while !frame.is_empty() {
        let rest = frame.split_off(frame.len().min(IOVECS_PER_WRITE_MAX));
        if zero_copy {
            write_zero_copy(wr, frame).await?;
        } else {
            wr.write_vectored_all(frame).await.0?;
        }
        frame = rest;
    }
    Ok(())
}

/// Shuts the socket down both ways so the peer and our reader see the close at once.
fn shutdown(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown(2) on a socket fd we own; it touches no memory.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Sends `frame` with io_uring SEND_ZC: the kernel reads the cached batches in place and tells
/// us when they may be released. Pays off on real NICs; on loopback it was measured slower.
async fn write_zero_copy(wr: &mut TcpStream, mut frame: ResponseFrame) -> std::io::Result<()> {
    use crate::runtime::net::AsyncWriteZerocopy;
    while !frame.is_empty() {
        let BufResult(res, ready) = wr.write_zerocopy_vectored(frame).await;
        // The buffers come back only once the kernel is done with them.
        frame = ready.await;
        let mut sent = res?;
        if sent == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while sent > 0 {
            let Some(first) = frame.first_mut() else {
                break;
            };
            if first.len() <= sent {
                sent -= first.len();
                frame.remove(0);
            } else {
                bytes::Buf::advance(first, sent);
                sent = 0;
            }
        }
    }
    Ok(())
}
