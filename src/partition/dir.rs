//! Partition directories and the topic they belong to.
//!
//! A directory is named by topic name (`<topic>-<partition>`), as in Kafka, but a name is reused
//! when a topic is deleted and created again. So, as Kafka does:
//! - every partition directory holds `partition.metadata` with its topic's id; a directory whose
//!   id is not the topic's being opened is old data, moved aside and removed, never reopened;
//! - a deleted partition's directory is renamed to `<topic>-<partition>.<id>-delete` at once and
//!   removed after (`Log::delete_renamed`); a crash in between leaves only a `-delete` directory;
//! - at start-up, `-delete` directories and partition directories whose topic id is not in the
//!   metadata are removed (`sweep`). A cluster node's metadata at start-up is only its last
//!   snapshot, so it sweeps later, once caught up with the cluster (`stamped_dirs`, then
//!   `remove_aside` of those whose topic id is gone).
//!
//! ```text
//! partition.metadata:
//!   version: 0
//!   topic_id: <uuid, hyphenated hex>
//! ```
//!
//! Directories written by releases before this file existed have no `partition.metadata`: they
//! are adopted by the topic of their name if it exists (the id file is written), and removed if
//! it does not (a deleted topic's directory that a crash left behind).
//!
//! All of it is blocking std file I/O: callers run it at start-up or on a blocking thread.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::cluster::image::MetadataImage;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
const DELETE_SUFFIX: &str = "-delete";

/// `<topic>-<partition>` → (topic, partition), if `name` has that shape.
pub fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    if topic.is_empty() || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, p.parse().ok()?))
}

/// A topic id as it appears in `-delete` directory names: 32 hex digits.
pub fn id_tag(topic_id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*topic_id).simple().to_string()
}

fn encode(topic_id: &[u8; 16]) -> String {
    format!(
        "version: 0\ntopic_id: {}\n",
        uuid::Uuid::from_bytes(*topic_id).hyphenated()
    )
}

fn decode(text: &str) -> Option<[u8; 16]> {
    let mut version_ok = false;
    let mut id = None;
    for line in text.lines() {
        match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("version", "0")) => version_ok = true,
            Some(("topic_id", v)) => id = uuid::Uuid::parse_str(v).ok().map(|u| *u.as_bytes()),
            _ => {}
        }
    }
    id.filter(|_| version_ok)
}

/// What `partition.metadata` in `dir` says.
#[derive(Debug, PartialEq, Eq)]
pub enum DirId {
    /// No directory.
    Missing,
    /// A directory without the file (older release, or created and not yet stamped).
    Unstamped,
    Id([u8; 16]),
    /// The file exists but does not parse.
    Unreadable,
}

pub fn read_dir_id(dir: &Path) -> io::Result<DirId> {
    match fs::read_to_string(dir.join(PARTITION_METADATA_FILE)) {
        Ok(text) => Ok(decode(&text).map_or(DirId::Unreadable, DirId::Id)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(if dir.is_dir() {
            DirId::Unstamped
        } else {
            DirId::Missing
        }),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(DirId::Unreadable),
        Err(e) => Err(e),
    }
}

/// Writes `partition.metadata` durably (tmp, fsync, rename, fsync dir).
fn stamp(dir: &Path, topic_id: &[u8; 16]) -> io::Result<()> {
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(encode(topic_id).as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(PARTITION_METADATA_FILE))?;
    fs::File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Where a deleted partition directory goes before it is removed: `<dir>.<tag>-delete`, with a
/// counter if that exists already.
pub fn delete_path(dir: &Path, tag: &str) -> PathBuf {
    let base = dir.as_os_str().to_string_lossy().into_owned();
    let mut path = PathBuf::from(format!("{base}.{tag}{DELETE_SUFFIX}"));
    let mut n = 1;
    while path.exists() {
        path = PathBuf::from(format!("{base}.{tag}.{n}{DELETE_SUFFIX}"));
        n += 1;
    }
    path
}

/// Renames `dir` out of the way (durably) and removes it; the rename is what makes the name
/// free for a new topic, the removal may fail and is retried by the next start-up sweep.
pub fn remove_aside(dir: &Path, tag: &str) -> io::Result<()> {
    let aside = delete_path(dir, tag);
    match fs::rename(dir, &aside) {
        Ok(()) => {}
        // A full disk can refuse the new name (it may need a new directory block: seen in
        // tests/disk_full.rs with 10,000 entries in the data dir). Removing in place frees the
        // space and the name too.
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            warn!(dir = %dir.display(), "no space to rename a deleted partition directory; removing it in place");
            return remove_stamp_last(dir);
        }
        Err(e) => return Err(e),
    }
    sync_parent(&aside)?;
    if let Err(e) = fs::remove_dir_all(&aside) {
        warn!(dir = %aside.display(), error = %e, "removing a deleted partition directory failed; retried at start-up");
    }
    Ok(())
}

/// Removes the partition directory `dir` with `partition.metadata` last: a crash midway leaves
/// a directory still stamped with the deleted topic's id, which the start-up sweep removes,
/// never unstamped files a new topic of the same name could adopt.
fn remove_stamp_last(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == PARTITION_METADATA_FILE {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    match fs::remove_file(dir.join(PARTITION_METADATA_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::remove_dir(dir)
}

/// Makes `dir` a directory of topic `topic_id` before its log opens: creates and stamps a new
/// one, stamps an unstamped one, and replaces one that belongs to another topic id. Returns
/// whether it created the directory (a new partition: the caller removes it again if the log
/// then fails to open, so a failed CreateTopics leaves nothing behind). A new directory that
/// cannot be stamped (full disk) is removed here.
pub fn prepare(dir: &Path, topic_id: &[u8; 16]) -> io::Result<bool> {
    match read_dir_id(dir)? {
        DirId::Id(id) if &id == topic_id => return Ok(false),
        DirId::Id(id) => {
            warn!(dir = %dir.display(), old = %uuid::Uuid::from_bytes(id), new = %uuid::Uuid::from_bytes(*topic_id),
                "partition directory belongs to an older topic of the same name; removing it");
            remove_aside(dir, &id_tag(&id))?;
        }
        DirId::Unreadable => {
            warn!(dir = %dir.display(), "unreadable partition.metadata; removing the directory");
            remove_aside(dir, "unknown")?;
        }
        DirId::Unstamped => return stamp(dir, topic_id).map(|()| false),
        DirId::Missing => {}
    }
    fs::create_dir_all(dir)?;
    let made = sync_parent(dir).and_then(|()| stamp(dir, topic_id));
    if let Err(e) = made {
        let _ = fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok(true)
}

/// Start-up sweep of `data_dir` (see the module documentation). Returns how many directories
/// were removed.
pub fn sweep(data_dir: &Path, image: &MetadataImage) -> io::Result<usize> {
    let mut removed = remove_deleted(data_dir)?;
    for (name, path) in subdirs(data_dir)? {
        let Some((topic, partition)) = parse_dir_name(&name) else {
            continue;
        };
        let owner = image.topic(topic).filter(|t| t.has_partition(partition));
        match (read_dir_id(&path)?, owner) {
            (DirId::Id(id), Some(t)) if id == t.id => {}
            (DirId::Unstamped, Some(t)) => {
                info!(dir = %path.display(), "stamping partition directory with its topic id");
                stamp(&path, &t.id)?;
            }
            (_, _) => {
                warn!(dir = %path.display(), "removing the directory of a deleted topic");
                remove_aside(&path, "stray")?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes the `-delete` directories a crash left behind (before any log opens); how many.
pub fn remove_deleted(data_dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for (name, path) in subdirs(data_dir)? {
        if name.ends_with(DELETE_SUFFIX) {
            info!(dir = %path.display(), "removing a deleted partition directory");
            fs::remove_dir_all(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The directories directly in `data_dir`: (name, path).
fn subdirs(data_dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    Ok(out)
}

/// Every partition directory of `data_dir` stamped with a topic id: the candidates of a
/// cluster node's sweep.
pub fn stamped_dirs(data_dir: &Path) -> io::Result<Vec<(PathBuf, [u8; 16])>> {
    let mut out = Vec::new();
    for (name, path) in subdirs(data_dir)? {
        if !name.ends_with(DELETE_SUFFIX) && parse_dir_name(&name).is_some() {
            if let DirId::Id(id) = read_dir_id(&path)? {
                out.push((path, id));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::record::topic_on_node;

    fn image(topics: &[(&str, [u8; 16], i32)]) -> MetadataImage {
        let records: Vec<_> = topics
            .iter()
            .flat_map(|(name, id, partitions)| topic_on_node(name, *id, *partitions, false, 0))
            .collect();
        MetadataImage::from_records(1, &records).unwrap()
    }

    #[test]
    fn names_and_file_round_trip() {
        assert_eq!(parse_dir_name("a-b-12"), Some(("a-b", 12)));
        assert_eq!(parse_dir_name("orders-0.abc-delete"), None);
        assert_eq!(parse_dir_name("-3"), None);
        assert_eq!(parse_dir_name("x-"), None);
        assert_eq!(parse_dir_name("__cluster_metadata"), None);
        assert_eq!(decode(&encode(&[7; 16])), Some([7; 16]));
        assert_eq!(decode("topic_id: nonsense\nversion: 0"), None);
        assert_eq!(decode(""), None);
        assert_eq!(
            decode("version: 1\ntopic_id: 07070707-0707-0707-0707-070707070707"),
            None
        );
    }

    #[test]
    fn removing_in_place_takes_everything_and_the_stamp_last() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        assert!(prepare(&dir, &[3; 16]).unwrap());
        fs::write(dir.join("00000000000000000000.log"), b"x").unwrap();
        fs::create_dir(dir.join("nested")).unwrap();
        fs::write(dir.join("nested").join("f"), b"y").unwrap();
        remove_stamp_last(&dir).unwrap();
        assert!(!dir.exists());
        // An unstamped leftover (written before stamps existed) goes too.
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("00000000000000000000.log"), b"x").unwrap();
        remove_stamp_last(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn prepare_replaces_another_topics_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        prepare(&dir, &[1; 16]).unwrap();
        assert_eq!(read_dir_id(&dir).unwrap(), DirId::Id([1; 16]));
        fs::write(dir.join("00000000000000000000.log"), b"old").unwrap();
        prepare(&dir, &[1; 16]).unwrap();
        assert!(
            dir.join("00000000000000000000.log").exists(),
            "same id: kept"
        );
        prepare(&dir, &[2; 16]).unwrap();
        assert_eq!(read_dir_id(&dir).unwrap(), DirId::Id([2; 16]));
        assert!(
            !dir.join("00000000000000000000.log").exists(),
            "old data gone"
        );
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(
            left.len(),
            1,
            "the old directory is removed, not kept aside"
        );
        // An unstamped directory (older release) is adopted.
        let old = tmp.path().join("u-0");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("x.log"), b"data").unwrap();
        prepare(&old, &[3; 16]).unwrap();
        assert!(old.join("x.log").exists());
        assert_eq!(read_dir_id(&old).unwrap(), DirId::Id([3; 16]));
    }

    #[test]
    fn sweep_removes_what_the_metadata_does_not_know() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        prepare(&d.join("live-0"), &[1; 16]).unwrap();
        prepare(&d.join("live-1"), &[1; 16]).unwrap(); // beyond the partition count
        prepare(&d.join("gone-0"), &[9; 16]).unwrap(); // topic deleted
        prepare(&d.join("again-0"), &[8; 16]).unwrap(); // re-created under another id
        fs::create_dir(d.join("legacy-0")).unwrap(); // unstamped, topic exists
        fs::create_dir(d.join("orphan-0")).unwrap(); // unstamped, topic deleted
        fs::create_dir(d.join("x-0.0101-delete")).unwrap();
        fs::create_dir(d.join("__cluster_metadata")).unwrap();
        fs::write(d.join(".lock"), b"").unwrap();
        let img = image(&[
            ("live", [1; 16], 1),
            ("again", [2; 16], 1),
            ("legacy", [4; 16], 1),
        ]);
        assert_eq!(sweep(d, &img).unwrap(), 5);
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".lock", "__cluster_metadata", "legacy-0", "live-0"]);
        assert_eq!(
            read_dir_id(&d.join("legacy-0")).unwrap(),
            DirId::Id([4; 16])
        );
    }
}
