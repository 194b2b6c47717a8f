//! Migration of the one-image metadata format of Sluice ≤ 0.1 (`metadata.snapshot`).

use std::fs;
use std::path::Path;

use super::{fsync_dir, io_err, write_snapshot, MetadataError, LEGACY_FILE};
use crate::cluster::image::MetadataImage;
use crate::cluster::record::{topic_on_node, MetadataRecord};
use tracing::info;

use std::collections::BTreeMap;

use serde::Deserialize;

pub const MAGIC: &[u8; 4] = b"SLMD";
pub const HEADER_BYTES: usize = 14;

#[derive(Deserialize)]
pub struct Topic {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

#[derive(Deserialize)]
pub struct Image {
    pub cluster_id: String,
    pub topics: BTreeMap<String, Topic>,
    #[serde(default)]
    pub producer_id_block_end: i64,
}

pub fn decode(bytes: &[u8]) -> Result<Image, &'static str> {
    let header = bytes.get(..HEADER_BYTES).ok_or("shorter than its header")?;
    if &header[..4] != MAGIC {
        return Err("bad magic");
    }
    if u16::from_be_bytes([header[4], header[5]]) != 1 {
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

/// Converts a Sluice ≤ 0.1 `metadata.snapshot` into a snapshot at offset 1 (single node: every
/// partition on node `node`, leader epoch 0). Idempotent: an interrupted migration is redone.
pub(super) fn migrate_legacy(dir: &Path, node: i32) -> Result<(), MetadataError> {
    let path = dir.join(LEGACY_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let old = decode(&bytes).map_err(|why| MetadataError::Corrupt(path.clone(), why.into()))?;
    let mut records = vec![MetadataRecord::Cluster {
        cluster_id: old.cluster_id,
    }];
    for t in old.topics.into_values() {
        records.extend(topic_on_node(&t.name, t.id, t.partitions, t.internal, node));
        records.extend(
            t.configs
                .into_iter()
                .map(|(key, value)| MetadataRecord::Config {
                    topic: t.name.clone(),
                    key,
                    value: Some(value),
                }),
        );
    }
    if old.producer_id_block_end > 0 {
        records.push(MetadataRecord::ProducerIds {
            block_end: old.producer_id_block_end,
        });
    }
    // Check the content before writing it.
    MetadataImage::from_records(1, &records)
        .map_err(|e| MetadataError::Corrupt(path.clone(), e.to_string()))?;
    write_snapshot(dir, 1, &records)?;
    let done = dir.join(format!("{LEGACY_FILE}.migrated"));
    fs::rename(&path, &done).map_err(io_err(&path))?;
    fsync_dir(dir)?;
    info!(
        records = records.len(),
        "migrated metadata.snapshot to the metadata log"
    );
    Ok(())
}
