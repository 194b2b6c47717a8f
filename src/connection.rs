//! One client connection: a reader that frames, decodes and dispatches requests in order, and a
//! writer that sends responses in that same order with vectored writes.
//!
//! Bounds: a frame's size is checked before its body is buffered (`--socket-request-max-bytes`);
//! at most `--max-inflight-requests` responses may be pending, after which the reader stops
//! reading (backpressure instead of an unbounded queue).

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use sluice_net::{FrameReader, ResponseFrame};
use tracing::{debug, info, warn};

use crate::dispatch::{dispatch, Dispatched};
use crate::limits::READ_CHUNK_BYTES;
use crate::shard::Shard;

type Pending = JoinHandle<Option<ResponseFrame>>;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = flume::bounded::<Pending>(shard.config.args.max_inflight_requests);
    let zero_copy = shard.config.args.zero_copy_send;
    let writer = compio::runtime::spawn(write_responses(wr, rx, peer, zero_copy));
    let frames = FrameReader::new(shard.config.args.socket_request_max_bytes);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    'read: loop {
        loop {
            let frame = match frames.next_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'read;
                }
            };
            match dispatch(&shard, frame).await {
                Dispatched::Respond(fut) => {
                    let handle = compio::runtime::spawn(fut);
                    if tx.send_async(handle).await.is_err() {
                        break 'read; // writer gone: peer closed
                    }
                }
                Dispatched::Close(reason) => {
                    warn!(%peer, %reason, "closing connection");
                    break 'read;
                }
            }
        }
        // Reserve for the frame in progress (its size is already validated) or a fresh chunk.
        let want = match frames.peek_size(&buf) {
            Ok(Some(size)) => (4 + size).saturating_sub(buf.len()).max(1),
            _ => READ_CHUNK_BYTES,
        };
        buf.reserve(want.min(READ_CHUNK_BYTES.max(want)));
        let compio::BufResult(res, b) = rd.append(buf).await;
        buf = b;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                debug!(%peer, error = %e, "read failed");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "connection closed");
}

async fn write_responses(mut wr: TcpStream, rx: flume::Receiver<Pending>, peer: SocketAddr, zero_copy: bool) {
    while let Ok(pending) = rx.recv_async().await {
        let frame = match pending.await {
            Ok(Some(frame)) if frame.is_empty() => {
                shutdown(&wr);
                return;
            }
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                info!(%peer, error = ?e, "request handler failed; closing connection");
                shutdown(&wr);
                return;
            }
        };
        let res = if zero_copy {
            write_zero_copy(&mut wr, frame).await
        } else {
            wr.write_vectored_all(frame).await.0
        };
        if let Err(e) = res {
            debug!(%peer, error = %e, "write failed");
            return;
        }
    }
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
    use compio::io::AsyncWriteZerocopy;
    while !frame.is_empty() {
        let compio::BufResult(res, ready) = wr.write_zerocopy_vectored(frame).await;
        // The buffers come back only once the kernel is done with them.
        frame = ready.await;
        let mut sent = res?;
        if sent == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while sent > 0 {
            let Some(first) = frame.first_mut() else { break };
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
