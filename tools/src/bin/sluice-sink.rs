//! `sluice-sink`: a do-nothing Kafka broker — the client's ceiling in a benchmark.
//!
//! Answers Produce at once and serves Fetch from memory (`tools/src/sink/`), so a load run
//! against it measures what the client and the loopback can do with no broker work at all.
//! Benchmarks divide Sluice's figures by the sink's (BENCHMARKS.md). One thread per connection,
//! blocking sockets, at most `--max-connections` of them.
//!
//! ```sh
//! sluice-sink --listen 127.0.0.1:9095        # prints "sluice-sink listening on 127.0.0.1:9095"
//! sluice-load produce --bootstrap 127.0.0.1:9095 --topic t --partitions 4 --messages 2000000
//! ```

#[path = "../sink/mod.rs"]
mod sink;

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use sluice_net::FrameReader;

use sink::{Reply, Sink, SinkConfig};

/// Largest request frame accepted (Kafka's socket.request.max.bytes).
const FRAME_MAX: usize = 100 * 1024 * 1024;
/// Fewest bytes asked of the socket per read.
const READ_MIN: usize = 64 * 1024;

/// A do-nothing Kafka broker: answers Produce at once and serves Fetch from memory.
#[derive(Parser, Debug)]
#[command(name = "sluice-sink", version)]
struct Cli {
    /// Address to listen on (port 0: any free port; the line printed at start names it).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: String,
    /// Partitions of a topic that is auto-created or created with -1 partitions.
    #[arg(long, default_value_t = 1)]
    default_partitions: i32,
    /// Bytes of produced batches kept for Fetch, split evenly over all partitions; the oldest
    /// are dropped beyond it.
    #[arg(long, default_value_t = 1 << 30)]
    memory_bytes: usize,
    /// Most connections served at once; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    keep_freed_memory();
    let listener = match TcpListener::bind(&cli.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice-sink: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sluice-sink: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sink = Arc::new(Sink::new(SinkConfig {
        host: addr.ip().to_string(),
        port: i32::from(addr.port()),
        default_partitions: cli.default_partitions,
        memory_bytes: cli.memory_bytes,
    }));
    println!("sluice-sink listening on {addr}");
    let _ = std::io::stdout().flush();
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sluice-sink: accept: {e}");
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= cli.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            eprintln!(
                "sluice-sink: more than {} connections: closing one",
                cli.max_connections
            );
            continue;
        }
        let (sink, open) = (sink.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("sink-conn".into())
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                if let Err(e) = serve(&sink, stream) {
                    eprintln!("sluice-sink: connection {peer} closed: {e}");
                }
                open.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            eprintln!("sluice-sink: cannot start a connection thread: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// Serves one connection: requests in order, each answered before the next is read.
fn serve(sink: &Sink, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let frames = FrameReader::new(FRAME_MAX);
    let mut buf = BytesMut::with_capacity(READ_MIN);
    loop {
        loop {
            let frame = frames
                .next_frame(&mut buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let Some(frame) = frame else { break };
            match sink.handle(frame) {
                Reply::Frame(pieces) => write_all(&mut stream, &pieces)?,
                Reply::Nothing => {}
                Reply::Close(reason) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, reason))
                }
            }
        }
        // Room for the rest of the frame being read, so a large Produce lands in one buffer
        // (the sink keeps its batches: no copy of a partial frame into a bigger one later).
        let want = match frames.peek_size(&buf) {
            Ok(Some(size)) => (4 + size).saturating_sub(buf.len()).max(READ_MIN),
            _ => READ_MIN,
        };
        buf.reserve(want);
        let old = buf.len();
        buf.resize(old + want, 0);
        let n = stream.read(&mut buf[old..])?;
        buf.truncate(old + n);
        if n == 0 {
            return Ok(());
        }
    }
}

/// Writes every piece, as few `writev` calls as the kernel allows.
fn write_all(stream: &mut TcpStream, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Makes glibc's malloc keep and reuse the memory of dropped batches instead of returning it to
/// the kernel: without this every produced megabyte lands in freshly mapped pages, and the page
/// faults (the kernel zeroing each page) cost the sink more CPU than Sluice spends storing the
/// same data — a ceiling must not.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
