//! A connection's two halves, plain TCP or TLS: the reader appends request bytes to the
//! connection's buffer, the writer sends response frames.
//!
//! TLS (SSL and SASL_SSL listeners): the handshake runs before the halves split; then both
//! halves share one rustls `ServerConnection`, borrowed only between awaits (one thread, so
//! the borrows never overlap). The reader feeds it ciphertext and takes plaintext; the writer
//! gives it a response's plaintext and sends the records it makes, at most
//! `TLS_SEND_BUFFER_BYTES` at a time. Zero-copy sends are off under TLS (the bytes on the wire
//! are not the cached batches). A kernel-TLS fast path would take the session keys after the
//! handshake and turn the writer back into a plain socket writer; this kernel has none.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::{ServerConfig, ServerConnection};
use sluice_net::ResponseFrame;

use crate::limits::READ_CHUNK_BYTES;
use crate::runtime::net::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufResult, TcpStream};
use crate::security::tls;

/// Ciphertext rustls may hold for sending before the writer flushes it to the socket.
const TLS_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// How long a client has to complete the TLS handshake (or `--connections-max-idle-ms`, if
/// shorter).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS session after its handshake, with what the client sent past it.
pub struct Accepted {
    pub tls: ServerConnection,
    /// Plaintext that arrived with the handshake's last flight.
    pub early: BytesMut,
}

/// Runs the server side of a TLS handshake on `stream`. An error names what failed; the alert
/// rustls queued for it has been sent.
pub async fn accept(
    stream: &mut TcpStream,
    config: Arc<ServerConfig>,
) -> std::io::Result<Accepted> {
    let mut tls = ServerConnection::new(config).map_err(std::io::Error::other)?;
    tls.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
    let mut early = BytesMut::new();
    let mut cipher = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        send_pending(stream, &mut tls).await?;
        if !tls.is_handshaking() {
            return Ok(Accepted { tls, early });
        }
        cipher.clear();
        let BufResult(res, c) = stream.read(cipher).await;
        cipher = c;
        if res? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Err(e) = tls::feed(&mut tls, &cipher, &mut early) {
            let _ = send_pending(stream, &mut tls).await; // the alert
            return Err(e);
        }
    }
}

/// Sends whatever rustls has queued (handshake flights, alerts).
async fn send_pending(stream: &mut TcpStream, tls: &mut ServerConnection) -> std::io::Result<()> {
    while tls.wants_write() {
        let mut out = Vec::new();
        tls.write_tls(&mut out)?;
        stream.write_all(out).await.0?;
    }
    Ok(())
}

/// The reading half.
pub enum Reader {
    Plain(TcpStream),
    Tls {
        sock: TcpStream,
        tls: Rc<RefCell<ServerConnection>>,
        cipher: Vec<u8>,
    },
}

impl Reader {
    /// Appends what arrives to `buf`; `Ok(0)` at the end of the stream.
    pub async fn append(&mut self, mut buf: BytesMut) -> BufResult<usize, BytesMut> {
        match self {
            Reader::Plain(sock) => sock.append(buf).await,
            Reader::Tls { sock, tls, cipher } => loop {
                // Read as much ciphertext as the caller made room for plaintext (a large
                // request's reads grow as the plain path's do); plaintext is never longer.
                let mut c = std::mem::take(cipher);
                c.clear();
                c.reserve((buf.capacity() - buf.len()).max(READ_CHUNK_BYTES));
                let BufResult(res, c) = sock.read(c).await;
                *cipher = c;
                let n = match res {
                    Ok(0) => return BufResult(Ok(0), buf),
                    Ok(n) => n,
                    Err(e) => return BufResult(Err(e), buf),
                };
                let before = buf.len();
                let mut session = tls.borrow_mut();
                let closed = match tls::feed(&mut session, &cipher[..n], &mut buf) {
                    Ok(closed) => closed,
                    Err(e) => return BufResult(Err(e), buf),
                };
                if buf.len() > before {
                    return BufResult(Ok(buf.len() - before), buf);
                }
                if closed {
                    return BufResult(Ok(0), buf);
                }
                // Part of a record: read on.
            },
        }
    }
}

/// The writing half.
pub enum Writer {
    Plain(TcpStream),
    Tls {
        sock: TcpStream,
        tls: Rc<RefCell<ServerConnection>>,
        out: Vec<u8>,
    },
}

impl Writer {
    pub fn socket(&self) -> &TcpStream {
        match self {
            Writer::Plain(sock) | Writer::Tls { sock, .. } => sock,
        }
    }

    /// Whether responses may go out with SEND_ZC (plain sockets only).
    pub fn may_zero_copy(&self) -> bool {
        matches!(self, Writer::Plain(_))
    }

    /// Encrypts and sends one frame (TLS only; plain frames go straight to the socket).
    pub async fn write_tls_frame(&mut self, frame: ResponseFrame) -> std::io::Result<()> {
        let Writer::Tls { sock, tls, out } = self else {
            return Err(std::io::Error::other("not a TLS connection"));
        };
        for piece in &frame {
            let mut at = 0;
            while at < piece.len() {
                let n = tls.borrow_mut().writer().write(&piece[at..])?;
                at += n;
                if n == 0 {
                    flush(sock, tls, out).await?; // the send buffer is full
                }
            }
        }
        flush(sock, tls, out).await
    }
}

/// Sends the records rustls holds.
async fn flush(
    sock: &mut TcpStream,
    tls: &RefCell<ServerConnection>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    loop {
        let mut o = std::mem::take(out);
        o.clear();
        {
            let mut tls = tls.borrow_mut();
            while tls.wants_write() {
                tls.write_tls(&mut o)?;
            }
        }
        if o.is_empty() {
            *out = o;
            return Ok(());
        }
        let BufResult(res, o) = sock.write_all(o).await;
        *out = o;
        res?;
    }
}

/// Splits a connection into its halves; `tls` is its session after the handshake.
pub fn split(stream: TcpStream, tls: Option<ServerConnection>) -> (Reader, Writer) {
    let (rd, wr) = stream.into_split();
    match tls {
        None => (Reader::Plain(rd), Writer::Plain(wr)),
        Some(tls) => {
            let tls = Rc::new(RefCell::new(tls));
            (
                Reader::Tls {
                    sock: rd,
                    tls: tls.clone(),
                    cipher: Vec::with_capacity(READ_CHUNK_BYTES),
                },
                Writer::Tls {
                    sock: wr,
                    tls,
                    out: Vec::with_capacity(TLS_SEND_BUFFER_BYTES + 1024),
                },
            )
        }
    }
}
