//! The runtime seam: what the broker needs from its async runtime, its clocks and its sockets —
//! a shard's runtime, spawning tasks, blocking work, timers, monotonic and wall time, the TCP
//! listener and streams ([`net`]). compio (io_uring) is underneath; no other module of the
//! broker names compio, so a deterministic simulation can put its own scheduler, clock and
//! network here. Files are the storage crate's, behind its own seam (`sluice-storage`'s
//! `runtime` module); the broker's own file work (partition directories, the metadata log)
//! runs with std on blocking threads or its own thread.

use std::future::Future;
use std::time::{Duration, Instant};

pub use compio::time::Elapsed;
pub use sluice_base::now_ms;
/// Tasks, blocking work and sleeps: the storage crate's seam serves the broker too, so both
/// run on the same functions.
pub use sluice_storage::runtime::{sleep, spawn, spawn_blocking, JoinHandle};

/// TCP for client connections: the listener, streams, and the buffer-passing I/O traits they
/// are used through.
pub mod net {
    pub use compio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, AsyncWriteZerocopy};
    pub use compio::net::{TcpListener, TcpStream};
    pub use compio::BufResult;

    /// Reads exactly `n` bytes (`read_exact` fills a buffer's whole capacity, which a `Vec`
    /// may have more of, so it reads into a slice of `n`).
    pub async fn read_exact_vec(stream: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
        use compio::buf::{IntoInner, IoBuf};
        let BufResult(r, buf) = stream.read_exact(Vec::with_capacity(n).slice(..n)).await;
        r?;
        Ok(buf.into_inner())
    }

    /// Connects to `addr` within `limit`, with Nagle off (request/response traffic between
    /// brokers: the controller endpoint, follower fetches).
    pub async fn connect(
        addr: std::net::SocketAddr,
        limit: std::time::Duration,
    ) -> std::io::Result<TcpStream> {
        let stream = super::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Reads one frame: a big-endian `u32` length, then that many bytes; a length over `max`
    /// is an error before anything more is read.
    pub async fn read_frame(stream: &mut TcpStream, max: usize) -> std::io::Result<Vec<u8>> {
        let len = read_exact_vec(stream, 4).await?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is over the limit of {max}"),
            ));
        }
        read_exact_vec(stream, len).await
    }
}

pub mod secure;

#[cfg(test)]
pub mod sim;

/// The async runtime openraft runs on (the controller quorum, `crate::quorum`): compio's
/// adapter, on the shard's own runtime.
#[cfg(not(test))]
pub type RaftRuntime = openraft_rt_compio::CompioRuntime;
/// In the library's unit tests the quorum runs on the deterministic simulator
/// (`crate::quorum::sim`); the binary and the integration tests run it on compio.
#[cfg(test)]
pub type RaftRuntime = sim::SimRuntime;

/// Runs `main` to completion on a new runtime for the current thread (a shard), pinned to `cpu`.
pub fn block_on_pinned<F: Future>(cpu: usize, main: F) -> std::io::Result<F::Output> {
    let rt = compio::runtime::RuntimeBuilder::new()
        .thread_affinity(std::collections::HashSet::from([cpu]))
        .build()?;
    Ok(rt.block_on(main))
}

/// `f`, or `Err(Elapsed)` once `d` has passed.
pub async fn timeout<F: Future>(d: Duration, f: F) -> Result<F::Output, Elapsed> {
    compio::time::timeout(d, f).await
}

/// Monotonic now (deadlines, durations, latency metrics).
pub fn now() -> Instant {
    Instant::now()
}
