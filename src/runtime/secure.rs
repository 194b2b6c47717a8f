//! A stream between two nodes of a cluster carrying length-prefixed frames, one request and its
//! answer at a time: plain TCP, or TLS on either side (a follower's connection to its leader's
//! inter-broker listener, the controller endpoint's connections). The TLS session is fed
//! through `security::tls::feed`; a frame's size is checked before its bytes are awaited.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::net::{read_frame, AsyncRead, AsyncWriteExt, BufResult, TcpStream};

/// Ciphertext read at a time.
const READ_BYTES: usize = 64 * 1024;
/// Ciphertext rustls may hold for sending before it is flushed to the socket.
const SEND_BUFFER_BYTES: usize = 256 * 1024;

/// A connection to or from another node.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    sock: TcpStream,
    tls: Connection,
    /// Plaintext received and not yet taken as a frame.
    plain: BytesMut,
}

impl Stream {
    /// The client side of a TLS handshake on `sock`, verifying the peer's certificate for
    /// `host` (a DNS name or an IP address).
    pub async fn tls_client(
        sock: TcpStream,
        host: &str,
        config: Arc<ClientConfig>,
    ) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        handshake(sock, Connection::Client(tls)).await
    }

    /// The server side of a TLS handshake on `sock`.
    pub async fn tls_server(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Stream> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        handshake(sock, Connection::Server(tls)).await
    }

    /// The certificate the peer presented and the trust store verified (TLS only).
    pub fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t.tls.peer_certificates()?.first().cloned(),
        }
    }

    /// Sends one whole frame.
    pub async fn send(&mut self, frame: Vec<u8>) -> io::Result<()> {
        match self {
            Stream::Plain(sock) => sock.write_all(frame).await.0,
            Stream::Tls(t) => {
                let mut at = 0;
                while at < frame.len() {
                    let n = io::Write::write(&mut t.tls.writer(), &frame[at..])?;
                    at += n;
                    if n == 0 {
                        flush(&mut t.sock, &mut t.tls).await?; // the send buffer is full
                    }
                }
                flush(&mut t.sock, &mut t.tls).await
            }
        }
    }

    /// Reads one frame (after its size); a size over `max` is an error before its bytes are
    /// awaited.
    pub async fn read_frame(&mut self, max: usize) -> io::Result<Bytes> {
        match self {
            Stream::Plain(sock) => read_frame(sock, max).await.map(Bytes::from),
            Stream::Tls(t) => loop {
                if t.plain.len() >= 4 {
                    let len = u32::from_be_bytes([t.plain[0], t.plain[1], t.plain[2], t.plain[3]])
                        as usize;
                    if len > max {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("frame of {len} bytes is over the limit of {max}"),
                        ));
                    }
                    if t.plain.len() >= 4 + len {
                        t.plain.advance(4);
                        return Ok(t.plain.split_to(len).freeze());
                    }
                }
                if read_tls(t).await? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            },
        }
    }
}

async fn handshake(mut sock: TcpStream, mut tls: Connection) -> io::Result<Stream> {
    tls.set_buffer_limit(Some(SEND_BUFFER_BYTES));
    flush(&mut sock, &mut tls).await?; // a client's ClientHello
    let mut t = TlsStream {
        sock,
        tls,
        plain: BytesMut::new(),
    };
    while t.tls.is_handshaking() {
        if read_tls(&mut t).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(Stream::Tls(Box::new(t)))
}

/// Reads ciphertext once, feeds it to the session and sends what the session then has to
/// send (handshake flights, alerts); true at the end of the stream or at close_notify.
async fn read_tls(t: &mut TlsStream) -> io::Result<bool> {
    let BufResult(res, cipher) = t.sock.read(Vec::with_capacity(READ_BYTES)).await;
    if res? == 0 {
        return Ok(true);
    }
    let fed = match &mut t.tls {
        Connection::Client(c) => crate::security::tls::feed(c, &cipher, &mut t.plain),
        Connection::Server(s) => crate::security::tls::feed(s, &cipher, &mut t.plain),
    };
    let sent = flush(&mut t.sock, &mut t.tls).await; // also the alert of a failure
    let closed = fed?;
    sent?;
    Ok(closed)
}

/// Sends the records the session holds.
async fn flush(sock: &mut TcpStream, tls: &mut Connection) -> io::Result<()> {
    while tls.wants_write() {
        let mut out = Vec::new();
        tls.write_tls(&mut out)?;
        sock.write_all(out).await.0?;
    }
    Ok(())
}
