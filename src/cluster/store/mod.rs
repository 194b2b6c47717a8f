//! The metadata log on disk: records appended in order, with snapshots.
//!
//! ```text
//! <data-dir>/__cluster_metadata/
//!   00000000000000000001.log        frames of records from offset 1 (the base in the name)
//!   00000000000000001025.log        a later segment, started after a snapshot
//!   00000000000000001024.snapshot   the image at offset 1024, as records (see image.rs)
//!   reserve                         space kept for writes on a full disk
//! frame: body_len u32 | crc32c(body) u32 | body = first offset u64 | records (JSON array)
//! snapshot: magic "SLMS" | version u16 = 2 | frames, all with the snapshot's offset
//! ```
//!
//! One frame holds the records of one change (offsets `first..first + n`), so a change is
//! written whole or not at all.
//!
//! Appends are written and fdatasync'ed by one thread of their own ([`MetadataStore`]), so no
//! reactor blocks on them; the caller awaits the result. After [`SNAPSHOT_EVERY`] records the
//! thread writes a snapshot (tmp → fsync → rename → fsync dir), starts a new segment and
//! removes what the snapshot covers. Loading takes the newest snapshot and replays the records
//! after it. A frame cut short or failing its CRC at the very end of the last segment is a torn
//! write (the append never succeeded) and is cut off; anywhere else the log is corrupt and the
//! broker refuses to start.
//!
//! Space reserve: beside the log, `reserve` holds [`RESERVE_BYTES`]. When an append that frees
//! space (DeleteTopics) fails for want of space, the reserve is given back and the append
//! retried once, so an operator can always free a full disk; the reserve is taken again after
//! the next write that finds room for it.
//!
//! Migration: a data directory of Sluice ≤ 0.1 (`metadata.snapshot`, one JSON image) is
//! converted on load into a snapshot at offset 1 and the old file renamed to
//! `metadata.snapshot.migrated`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::frames;
use super::image::{new_cluster_id, MetadataImage};
use super::record::MetadataRecord;

/// Records between snapshots.
pub const SNAPSHOT_EVERY: u64 = 1024;
/// Space kept for metadata writes on a full disk.
pub const RESERVE_BYTES: u64 = 4 << 20;
/// Records per snapshot frame.
const SNAPSHOT_FRAME_RECORDS: usize = 512;
/// Appends queued for the writer thread.
const WRITE_QUEUE_DEPTH: usize = 64;
const RESERVE_FILE: &str = "reserve";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLMS";
const SNAPSHOT_VERSION: u16 = 2;
const LEGACY_FILE: &str = "metadata.snapshot";

/// Failure to read or write the metadata log.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
    #[error("the metadata writer has stopped")]
    Stopped,
}

impl MetadataError {
    fn is_no_space(&self) -> bool {
        matches!(self, MetadataError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> MetadataError + '_ {
    move |source| MetadataError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn metadata_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster_metadata")
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

/// `(offset, is_snapshot)` of a file named by this module.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 {
        return None;
    }
    let n = stem.parse().ok()?;
    match ext {
        "log" => Some((n, false)),
        "snapshot" => Some((n, true)),
        _ => None,
    }
}

fn encode_frame(out: &mut Vec<u8>, offset: u64, records: &[MetadataRecord]) {
    let mut body = offset.to_be_bytes().to_vec();
    // Serialising these plain types cannot fail.
    body.extend(serde_json::to_vec(records).unwrap_or_default());
    frames::encode(out, &body);
}

/// A frame body's first offset and records.
fn decode_body(body: &[u8]) -> Result<(u64, Vec<MetadataRecord>), &'static str> {
    let (off, json) = body
        .split_first_chunk::<8>()
        .ok_or("frame shorter than its offset")?;
    let records = serde_json::from_slice(json).map_err(|_| "unknown or unparseable record")?;
    Ok((u64::from_be_bytes(*off), records))
}

/// Reads a snapshot file: its records, all at the offset in its name.
fn read_snapshot(path: &Path, offset: u64) -> Result<Vec<MetadataRecord>, MetadataError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let corrupt = |why: &str| MetadataError::Corrupt(path.to_owned(), why.to_owned());
    if bytes.get(..4) != Some(SNAPSHOT_MAGIC) {
        return Err(corrupt("bad magic"));
    }
    if bytes.get(4..6) != Some(&SNAPSHOT_VERSION.to_be_bytes()[..]) {
        return Err(corrupt("unknown version"));
    }
    let (bodies, _) = frames::scan(&bytes[6..], false).map_err(corrupt)?;
    let mut records = Vec::new();
    for body in bodies {
        match decode_body(body).map_err(corrupt)? {
            (o, r) if o == offset => records.extend(r),
            _ => return Err(corrupt("a record of another offset")),
        }
    }
    Ok(records)
}

/// Reads a segment's records. A bad or short frame ending the file is a torn write when
/// `last` (the newest segment): the valid length is returned with the records; anywhere else
/// it is corruption.
fn read_segment(
    path: &Path,
    last: bool,
) -> Result<(Vec<(u64, MetadataRecord)>, usize), MetadataError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let corrupt = |why: &str| MetadataError::Corrupt(path.to_owned(), why.to_owned());
    // A torn last write of the newest segment is cut off; anywhere else it is corruption.
    let (bodies, at) = frames::scan(&bytes, last).map_err(corrupt)?;
    let mut records = Vec::new();
    for body in bodies {
        let (first, r) = decode_body(body).map_err(corrupt)?;
        records.extend((first..).zip(r));
    }
    Ok((records, at))
}

fn fsync_dir(dir: &Path) -> Result<(), MetadataError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Takes the reserve if it is missing or short; best effort (a full disk leaves it for later).
fn ensure_reserve(dir: &Path) {
    use std::os::fd::AsRawFd;
    let path = dir.join(RESERVE_FILE);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return;
    }
    let Ok(f) = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    else {
        return;
    };
    // SAFETY: fallocate on an fd owned by `f` for the duration of the call.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, RESERVE_BYTES as libc::off_t) };
    if rc != 0 || f.sync_all().is_err() {
        drop(f);
        let _ = fs::remove_file(&path);
        warn!("no room for the metadata space reserve yet; retried on the next write");
    }
}

/// The on-disk log, owned by the writer thread after start-up.
struct Log {
    dir: PathBuf,
    /// The newest segment, open for appends, and its length.
    segment: fs::File,
    segment_path: PathBuf,
    segment_len: u64,
    /// The image at the log's end (to write snapshots from).
    image: MetadataImage,
    /// Offset of the newest snapshot (0: none).
    snapshot_offset: u64,
}

impl Log {
    /// Loads (or creates) the log under `data_dir`; returns it with its image.
    fn open(data_dir: &Path, node: i32) -> Result<Log, MetadataError> {
        let dir = metadata_dir(data_dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        migrate_legacy(&dir, node)?;
        let (mut snapshots, mut segments) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            match parse_name(&name.to_string_lossy()) {
                Some((n, true)) => snapshots.push(n),
                Some((n, false)) => segments.push(n),
                None => {}
            }
        }
        snapshots.sort_unstable();
        segments.sort_unstable();
        let mut image = MetadataImage::default();
        let snapshot_offset = snapshots.last().copied().unwrap_or(0);
        if snapshot_offset > 0 {
            let path = snapshot_path(&dir, snapshot_offset);
            let records = read_snapshot(&path, snapshot_offset)?;
            image = MetadataImage::from_records(snapshot_offset, &records)
                .map_err(|e| MetadataError::Corrupt(path, e.to_string()))?;
        }
        let mut tail = None;
        for (i, base) in segments.iter().enumerate() {
            let path = segment_path(&dir, *base);
            let last = i + 1 == segments.len();
            let (records, valid) = read_segment(&path, last)?;
            for (offset, r) in records {
                if offset <= image.epoch {
                    continue;
                }
                if offset != image.epoch + 1 {
                    return Err(MetadataError::Corrupt(
                        path,
                        format!("offset {offset} follows {}", image.epoch),
                    ));
                }
                image
                    .apply(offset, &r)
                    .map_err(|e| MetadataError::Corrupt(path.clone(), e.to_string()))?;
            }
            if last {
                tail = Some((path, valid as u64));
            }
        }
        let (segment_path, segment_len) = match tail {
            Some(t) => t,
            None => (segment_path(&dir, image.epoch + 1), 0),
        };
        let segment = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&segment_path)
            .map_err(io_err(&segment_path))?;
        if segment.metadata().map_err(io_err(&segment_path))?.len() != segment_len {
            warn!(file = %segment_path.display(), valid = segment_len, "cutting off a torn metadata write");
            segment
                .set_len(segment_len)
                .and_then(|()| segment.sync_all())
                .map_err(io_err(&segment_path))?;
        }
        fsync_dir(&dir)?;
        let mut log = Log {
            dir,
            segment,
            segment_path,
            segment_len,
            image,
            snapshot_offset,
        };
        if log.image.epoch == 0 {
            let cluster_id = new_cluster_id();
            log.append(&[MetadataRecord::Cluster { cluster_id }], false)?;
        }
        ensure_reserve(&log.dir);
        Ok(log)
    }

    /// Appends `records` (offsets follow the log's end) durably; returns the first offset.
    fn append(
        &mut self,
        records: &[MetadataRecord],
        frees_space: bool,
    ) -> Result<u64, MetadataError> {
        let first = self.image.epoch + 1;
        // Validate against a copy first: a record that does not apply is never written.
        let mut next = self.image.clone();
        for (offset, r) in (first..).zip(records) {
            next.apply(offset, r)
                .map_err(|e| MetadataError::Corrupt(self.segment_path.clone(), e.to_string()))?;
        }
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, first, records);
        let result = match self.write(&bytes) {
            Err(e) if frees_space && e.is_no_space() && self.dir.join(RESERVE_FILE).exists() => {
                warn!("disk full: releasing the metadata space reserve to write metadata");
                let _ = fs::remove_file(self.dir.join(RESERVE_FILE));
                self.write(&bytes)
            }
            other => other,
        };
        result?;
        self.image = next;
        ensure_reserve(&self.dir);
        if self.image.epoch >= self.snapshot_offset + SNAPSHOT_EVERY {
            if let Err(e) = self.snapshot() {
                warn!(error = %e, "writing a metadata snapshot failed; retried after the next change");
            }
        }
        Ok(first)
    }

    /// Writes `bytes` at the segment's end and syncs; on failure cuts the segment back.
    fn write(&mut self, bytes: &[u8]) -> Result<(), MetadataError> {
        use std::io::{Seek, SeekFrom};
        let path = self.segment_path.clone();
        let result = self
            .segment
            .seek(SeekFrom::Start(self.segment_len))
            .and_then(|_| self.segment.write_all(bytes))
            .and_then(|()| self.segment.sync_data());
        if let Err(e) = result {
            let _ = self.segment.set_len(self.segment_len);
            return Err(io_err(&path)(e));
        }
        self.segment_len += bytes.len() as u64;
        Ok(())
    }

    /// Writes a snapshot of the image, starts a new segment, removes what the snapshot covers.
    fn snapshot(&mut self) -> Result<(), MetadataError> {
        let offset = self.image.epoch;
        write_snapshot(&self.dir, offset, &self.image.records())?;
        let next_path = segment_path(&self.dir, offset + 1);
        let next = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&next_path)
            .map_err(io_err(&next_path))?;
        fsync_dir(&self.dir)?;
        self.segment = next;
        self.segment_path = next_path;
        self.segment_len = 0;
        self.snapshot_offset = offset;
        // Older segments and snapshots are covered by this snapshot.
        for entry in fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
        {
            let name = entry.file_name();
            match parse_name(&name.to_string_lossy()) {
                Some((n, true)) if n < offset => {}
                Some((n, false)) if n <= offset => {}
                _ => continue,
            }
            let _ = fs::remove_file(entry.path());
        }
        info!(offset, "metadata snapshot written");
        Ok(())
    }
}

fn write_snapshot(
    dir: &Path,
    offset: u64,
    records: &[MetadataRecord],
) -> Result<(), MetadataError> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    for chunk in records.chunks(SNAPSHOT_FRAME_RECORDS) {
        encode_frame(&mut bytes, offset, chunk);
    }
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    fsync_dir(dir)
}

mod legacy;

use legacy::migrate_legacy;

struct AppendReq {
    records: Vec<MetadataRecord>,
    frees_space: bool,
    done: flume::Sender<Result<u64, MetadataError>>,
}

/// The metadata log's writer: a thread of its own, fed through a bounded queue.
#[derive(Clone)]
pub struct MetadataStore {
    tx: flume::Sender<AppendReq>,
}

impl MetadataStore {
    /// Loads the log under `data_dir` (blocking; at start-up, before any reactor runs) and
    /// starts its writer thread. Returns the store and the image at the log's end.
    pub fn open(
        data_dir: &Path,
        node: i32,
    ) -> Result<(MetadataStore, MetadataImage), MetadataError> {
        let mut log = Log::open(data_dir, node)?;
        let image = log.image.clone();
        let (tx, rx) = flume::bounded::<AppendReq>(WRITE_QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("sluice-metadata".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let _ = req.done.send(log.append(&req.records, req.frees_space));
                }
            })
            .map_err(io_err(data_dir))?;
        Ok((MetadataStore { tx }, image))
    }

    /// Appends `records` durably; returns the offset of the first. `frees_space`: the change
    /// frees disk space, so it may use the space reserve.
    pub async fn append(
        &self,
        records: Vec<MetadataRecord>,
        frees_space: bool,
    ) -> Result<u64, MetadataError> {
        let (done, rx) = flume::bounded(1);
        let req = AppendReq {
            records,
            frees_space,
            done,
        };
        self.tx
            .send_async(req)
            .await
            .map_err(|_| MetadataError::Stopped)?;
        rx.recv_async().await.map_err(|_| MetadataError::Stopped)?
    }
}

/// Reads the image of a data directory without starting a writer (tools, tests); `node` as
/// for [`MetadataStore::open`].
pub fn load(data_dir: &Path, node: i32) -> Result<MetadataImage, MetadataError> {
    Log::open(data_dir, node).map(|log| log.image)
}

#[cfg(test)]
mod tests;
