//! Cluster metadata: topics, their ids, partition counts and config overrides.
//!
//! Single writer: the controller on shard 0 changes it and persists it; every shard holds an
//! immutable [`MetadataImage`] (`Arc`) that the controller replaces by message.
//!
//! On disk (`<data-dir>/__cluster_metadata/metadata.snapshot`), written tmp → fsync → rename →
//! fsync dir. Beside it, `reserve` holds [`RESERVE_BYTES`] of allocated space: when a write
//! fails for want of space, the reserve is given back and the write retried once, so the
//! metadata stays writable on a full disk — DeleteTopics is how an operator frees space. The
//! reserve is taken again after the next write that finds room for it.
//! ```text
//! magic "SLMD" (4) | version u16 = 1 | body_len u32 | crc32c(body) u32 | body (JSON)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"SLMD";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 4 + 2 + 4 + 4;
/// Space kept for metadata writes on a full disk (a snapshot is a few KiB per topic).
pub const RESERVE_BYTES: u64 = 4 << 20;
const RESERVE_FILE: &str = "reserve";

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    /// Dynamic topic config overrides (`retention.ms` etc.).
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

/// An immutable view of the cluster metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Bumped on every change.
    pub epoch: u64,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Producer ids below this may have been handed out: a restarted controller allocates
    /// from here, so ids never repeat (InitProducerId).
    #[serde(default)]
    pub producer_id_block_end: i64,
    #[serde(skip)]
    pub by_id: HashMap<[u8; 16], String>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&Arc<TopicMeta>> {
        self.by_id.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn reindex(&mut self) {
        self.by_id = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }
}

/// Failure to read or write the metadata snapshot.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata snapshot {0} is corrupt: {1}")]
    Corrupt(PathBuf, &'static str),
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

/// Loads the snapshot, or creates a fresh image with a new cluster id.
pub fn load(data_dir: &Path) -> Result<MetadataImage, MetadataError> {
    let dir = metadata_dir(data_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join("metadata.snapshot");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let image = MetadataImage {
                cluster_id: new_cluster_id(),
                ..Default::default()
            };
            store(data_dir, &image, false)?;
            return Ok(image);
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut image = decode(&bytes).map_err(|why| MetadataError::Corrupt(path.clone(), why))?;
    image.reindex();
    ensure_reserve(&dir);
    Ok(image)
}

fn decode(bytes: &[u8]) -> Result<MetadataImage, &'static str> {
    let header = bytes.get(..HEADER_BYTES).ok_or("shorter than its header")?;
    if &header[..4] != MAGIC {
        return Err("bad magic");
    }
    if u16::from_be_bytes([header[4], header[5]]) != VERSION {
        return Err("unknown version");
    }
    let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
    let crc = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
    let body = bytes
        .get(HEADER_BYTES..HEADER_BYTES + len)
        .ok_or("truncated body")?;
    if crc32c::crc32c(body) != crc {
        return Err("CRC mismatch");
    }
    serde_json::from_slice(body).map_err(|_| "unparseable body")
}

fn is_no_space(e: &MetadataError) -> bool {
    matches!(e, MetadataError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
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
        tracing::warn!("no room for the metadata space reserve yet; retried on the next write");
    }
}

/// Writes the snapshot atomically (tmp → fsync → rename → fsync dir). With `frees_space` (a
/// change that frees disk space, such as deleting a topic) it falls back on the space reserve
/// when the disk is full (see the module documentation); other changes fail as the disk does,
/// so the reserve is there when it is needed.
pub fn store(
    data_dir: &Path,
    image: &MetadataImage,
    frees_space: bool,
) -> Result<(), MetadataError> {
    let dir = metadata_dir(data_dir);
    let result = match store_once(data_dir, image) {
        Err(e) if frees_space && is_no_space(&e) && dir.join(RESERVE_FILE).exists() => {
            tracing::warn!("disk full: releasing the metadata space reserve to write metadata");
            let _ = fs::remove_file(dir.join(RESERVE_FILE));
            store_once(data_dir, image)
        }
        other => other,
    };
    if result.is_ok() {
        ensure_reserve(&dir);
    }
    result
}

fn store_once(data_dir: &Path, image: &MetadataImage) -> Result<(), MetadataError> {
    let dir = metadata_dir(data_dir);
    let path = dir.join("metadata.snapshot");
    let tmp = dir.join("metadata.snapshot.tmp");
    let body = serde_json::to_vec(image).map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&out).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))?;
    Ok(())
}

fn new_cluster_id() -> String {
    // Kafka cluster ids are 22-char URL-safe base64 of a UUID; any stable string works for clients.
    uuid::Uuid::new_v4().simple().to_string()[..22].to_owned()
}

pub fn new_topic_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = load(dir.path()).unwrap();
        image.topics.insert(
            "t".into(),
            Arc::new(TopicMeta {
                name: "t".into(),
                id: [1; 16],
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
                internal: false,
            }),
        );
        store(dir.path(), &image, false).unwrap();
        let again = load(dir.path()).unwrap();
        assert_eq!(again.cluster_id, image.cluster_id);
        assert_eq!(again.topic("t"), image.topic("t"));
        assert_eq!(again.topic_by_id(&[1; 16]).unwrap().name, "t");

        let path = metadata_dir(dir.path()).join("metadata.snapshot");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(load(dir.path()), Err(MetadataError::Corrupt(..))));
        assert_eq!(
            fs::metadata(metadata_dir(dir.path()).join(RESERVE_FILE))
                .unwrap()
                .len(),
            RESERVE_BYTES,
            "the space reserve is taken"
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
