//! Small metadata files of a partition directory, each with magic, version and CRC-32C, written
//! atomically (tmp → fsync → rename → fsync dir).
//!
//! ```text
//! sluice.checkpoint (28 bytes, big-endian)
//!   0 u32 magic "SLCP" | 4 u16 version=1 | 6 u16 reserved=0
//!   8 i64 recovery_point   (every offset below it is fsynced and needs no scan)
//!  16 i64 log_start_offset
//!  24 u32 crc32c(bytes 0..24)
//!
//! leader-epoch-checkpoint (big-endian)
//!   0 u32 magic "SLEP" | 4 u16 version=1 | 6 u16 reserved=0 | 8 u32 count
//!  12 count × (i32 epoch, i64 start_offset)
//!   … u32 crc32c(all preceding bytes)
//!
//! cleaner.checkpoint (20 bytes, big-endian; compacted logs)
//!   0 u32 magic "SLCL" | 4 u16 version=1 | 6 u16 reserved=0
//!   8 i64 clean point (offsets below it were cleaned at least once)
//!  16 u32 crc32c(bytes 0..16)
//!
//! boot.checkpoint (big-endian; rewritten in place without fsync, trusted only within the boot
//! that wrote it)
//!   0 u32 magic "SLBT" | 4 u16 version=1 | 6 u16 reserved=0
//!   8 [36] boot id (/proc/sys/kernel/random/boot_id)
//!  44 u32 len | .index bytes of the active segment | u32 len | .timeindex bytes
//!   … u32 len | producer snapshot (producer.rs)
//!   … u32 crc32c(all preceding bytes)
//!   … anything: what a longer checkpoint before it left (ignored)
//! ```
//!
//! A file that fails any check reads as absent: recovery then scans more, it never trusts it.
//!
//! The other files are replaced (tmp → rename); the boot checkpoint, rewritten every
//! `boot_checkpoint_interval_ms` by every written partition, is overwritten in place instead
//! ([`write_in_place`]): a rename frees the replaced file's blocks, and on a filesystem mounted
//! with `discard` every free sends the device a discard, which on some virtual disks holds
//! every write behind it for hundreds of milliseconds (docs/architecture.md §8). A process
//! crash during the overwrite leaves a mix of two checkpoints, which its CRC refuses.
//!
//! The boot checkpoint bounds recovery after a process crash (kill -9, OOM kill) without an
//! fsync: whatever a completed write put in a file is in the kernel's page cache or on the
//! device and reads back after the process dies, as long as the machine does not restart. So
//! the active segment's index as of a moment, written beside the log while it runs, tells a
//! restart in the same boot where the unscanned part begins; after a reboot the file names
//! another boot and is ignored, and the fsynced recovery point and index files decide alone.

use std::path::Path;

use crate::runtime::AsyncWriteAtExt;

use sluice_base::Reader;

pub(crate) const CHECKPOINT_FILE: &str = "sluice.checkpoint";
pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// Idempotent-producer state snapshot (see producer.rs).
pub(crate) const PRODUCER_FILE: &str = "producer.snapshot";
/// The cleaner's clean point (see log/compact.rs).
pub(crate) const CLEANER_FILE: &str = "cleaner.checkpoint";
/// The active segment's index and producer state as of a moment in this boot (see above).
pub(crate) const BOOT_FILE: &str = "boot.checkpoint";
const CLEANER_MAGIC: u32 = u32::from_be_bytes(*b"SLCL");
const BOOT_MAGIC: u32 = u32::from_be_bytes(*b"SLBT");
/// Length of a boot id as Linux prints it (a UUID).
pub(crate) const BOOT_ID_BYTES: usize = 36;
const CHECKPOINT_MAGIC: u32 = u32::from_be_bytes(*b"SLCP");
const EPOCH_MAGIC: u32 = u32::from_be_bytes(*b"SLEP");
const VERSION: u16 = 1;
const CHECKPOINT_BYTES: usize = 28;
/// Bound on epoch entries accepted from disk.
const EPOCH_ENTRIES_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub recovery_point: i64,
    pub log_start_offset: i64,
}

pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let mut v = Vec::with_capacity(CHECKPOINT_BYTES);
    v.extend_from_slice(&CHECKPOINT_MAGIC.to_be_bytes());
    v.extend_from_slice(&VERSION.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&c.recovery_point.to_be_bytes());
    v.extend_from_slice(&c.log_start_offset.to_be_bytes());
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

pub(crate) fn decode_checkpoint(b: &[u8]) -> Option<Checkpoint> {
    let body = b.get(..CHECKPOINT_BYTES - 4)?;
    let mut r = Reader::new(b);
    let (magic, version, _reserved) = (r.u32()?, r.u16()?, r.u16()?);
    let c = Checkpoint {
        recovery_point: r.i64()?,
        log_start_offset: r.i64()?,
    };
    let crc = r.u32()?;
    let ok = r.is_empty()
        && crc == crc32c::crc32c(body)
        && magic == CHECKPOINT_MAGIC
        && version == VERSION;
    ok.then_some(c)
}

pub(crate) fn encode_epochs(entries: &[(i32, i64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + entries.len() * 12);
    v.extend_from_slice(&EPOCH_MAGIC.to_be_bytes());
    v.extend_from_slice(&VERSION.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (e, o) in entries {
        v.extend_from_slice(&e.to_be_bytes());
        v.extend_from_slice(&o.to_be_bytes());
    }
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

pub(crate) fn decode_epochs(b: &[u8]) -> Option<Vec<(i32, i64)>> {
    let (body, crc) = b.split_at(b.len().checked_sub(4)?);
    if Reader::new(crc).u32()? != crc32c::crc32c(body) {
        return None;
    }
    let mut r = Reader::new(body);
    let (magic, version, _reserved) = (r.u32()?, r.u16()?, r.u16()?);
    let count = r.u32()? as usize;
    if magic != EPOCH_MAGIC
        || version != VERSION
        || count > EPOCH_ENTRIES_MAX
        || r.remaining() != count * 12
    {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push((r.i32()?, r.i64()?));
    }
    Some(out)
}

pub(crate) fn encode_clean_point(point: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&CLEANER_MAGIC.to_be_bytes());
    v.extend_from_slice(&VERSION.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&point.to_be_bytes());
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

pub(crate) fn decode_clean_point(b: &[u8]) -> Option<i64> {
    let body = b.get(..16)?;
    let mut r = Reader::new(b);
    let (magic, version, _reserved, point, crc) =
        (r.u32()?, r.u16()?, r.u16()?, r.i64()?, r.u32()?);
    let ok =
        r.is_empty() && crc == crc32c::crc32c(body) && magic == CLEANER_MAGIC && version == VERSION;
    ok.then_some(point)
}

/// This boot's id, read once; `None` where the kernel does not tell it (no boot checkpoints).
pub(crate) fn boot_id() -> Option<&'static [u8; BOOT_ID_BYTES]> {
    static ID: std::sync::OnceLock<Option<[u8; BOOT_ID_BYTES]>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        text.trim().as_bytes().try_into().ok()
    })
    .as_ref()
}

/// What a boot checkpoint holds: the active segment's index files and the producer snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BootCheckpoint {
    pub index: Vec<u8>,
    pub time_index: Vec<u8>,
    pub producers: Vec<u8>,
}

pub(crate) fn encode_boot(boot: &[u8; BOOT_ID_BYTES], c: &BootCheckpoint) -> Vec<u8> {
    let parts = [&c.index, &c.time_index, &c.producers];
    let mut v = Vec::with_capacity(48 + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    v.extend_from_slice(&BOOT_MAGIC.to_be_bytes());
    v.extend_from_slice(&VERSION.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(boot);
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

/// `None` unless the file starts with an intact checkpoint written in boot `boot` (bytes
/// after its CRC are ignored).
pub(crate) fn decode_boot(b: &[u8], boot: &[u8; BOOT_ID_BYTES]) -> Option<BootCheckpoint> {
    let mut r = Reader::new(b);
    let (magic, version, _reserved) = (r.u32()?, r.u16()?, r.u16()?);
    let written_in = r.take(BOOT_ID_BYTES)?;
    if magic != BOOT_MAGIC || version != VERSION || written_in != boot.as_slice() {
        return None;
    }
    let mut part = || {
        let n = r.u32()? as usize;
        r.take(n).map(<[u8]>::to_vec)
    };
    let c = BootCheckpoint {
        index: part()?,
        time_index: part()?,
        producers: part()?,
    };
    let body = b.len() - r.remaining();
    (r.u32()? == crc32c::crc32c(&b[..body])).then_some(c)
}

/// Overwrites `name` from its first byte, without truncating it or an fsync: for the boot
/// checkpoint, which only a restart in the same boot trusts (the page cache holds it until
/// then) and whose decoder ignores what follows it (see the module comment for why not a
/// rename).
pub(crate) async fn write_in_place(dir: &Path, name: &str, bytes: Vec<u8>) -> std::io::Result<()> {
    let mut f = crate::runtime::OpenOptions::new()
        .write(true)
        .create(true)
        .open(dir.join(name))
        .await?;
    let crate::runtime::BufResult(res, _) = f.write_all_at(bytes, 0).await;
    res?;
    f.close().await
}

/// Reads a whole small file; `None` if it does not exist.
pub(crate) async fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match crate::runtime::read(path).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// tmp → fsync → rename → fsync dir.
pub(crate) async fn write_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = crate::runtime::File::create(&tmp).await?;
    let crate::runtime::BufResult(res, _) = f.write_all_at(bytes, 0).await;
    res?;
    f.sync_all().await?;
    f.close().await?;
    crate::runtime::rename(&tmp, dir.join(name)).await?;
    sync_dir(dir).await
}

pub(crate) async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let d = crate::runtime::File::open(dir).await?;
    d.sync_all().await?;
    d.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_damage() {
        let c = Checkpoint {
            recovery_point: 123,
            log_start_offset: 45,
        };
        let b = encode_checkpoint(&c);
        assert_eq!(decode_checkpoint(&b), Some(c));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 1;
            assert_eq!(decode_checkpoint(&d), None);
        }
        for cut in 0..b.len() {
            assert_eq!(decode_checkpoint(&b[..cut]), None, "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode_checkpoint(&long), None);
    }

    #[test]
    fn boot_checkpoint_round_trip_damage_and_another_boot() {
        let boot = [b'a'; BOOT_ID_BYTES];
        let c = BootCheckpoint {
            index: vec![1, 2, 3],
            time_index: vec![],
            producers: vec![9; 40],
        };
        let b = encode_boot(&boot, &c);
        assert_eq!(decode_boot(&b, &boot).as_ref(), Some(&c));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 1;
            assert_eq!(decode_boot(&d, &boot), None, "byte {i} flipped");
        }
        for cut in 0..b.len() {
            assert_eq!(decode_boot(&b[..cut], &boot), None, "cut at {cut}");
        }
        // Rewritten in place over a longer one: what follows its CRC is ignored; a process
        // crash during the rewrite leaves a mix of the two, which is refused.
        let old = BootCheckpoint {
            index: vec![7; 300],
            time_index: vec![8; 100],
            producers: vec![],
        };
        let longer = encode_boot(&boot, &old);
        let mut over = longer.clone();
        over[..b.len()].copy_from_slice(&b);
        assert_eq!(decode_boot(&over, &boot).as_ref(), Some(&c));
        for written in 1..b.len() {
            let mut torn = longer.clone();
            torn[..written].copy_from_slice(&b[..written]);
            // Either the old checkpoint still (the bytes written so far were the same), or nothing.
            let d = decode_boot(&torn, &boot);
            assert!(
                d.is_none() || d.as_ref() == Some(&old),
                "torn after {written} bytes"
            );
        }
        // Intact, but written in another boot.
        assert_eq!(decode_boot(&b, &[b'b'; BOOT_ID_BYTES]), None);
        // A length past the end, with a valid CRC.
        let mut lying = b[..b.len() - 4].to_vec();
        lying[44..48].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_boot(&lying, &boot), None);
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        let id = boot_id().expect("Linux tells its boot id");
        assert_eq!(id.iter().filter(|&&c| c == b'-').count(), 4);
    }

    #[test]
    fn clean_point_round_trip_and_damage() {
        let b = encode_clean_point(4321);
        assert_eq!(decode_clean_point(&b), Some(4321));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 4;
            assert_eq!(decode_clean_point(&d), None);
        }
        for cut in 0..b.len() {
            assert_eq!(decode_clean_point(&b[..cut]), None);
        }
    }

    #[test]
    fn epochs_round_trip_and_damage() {
        let e = vec![(0, 0), (3, 100), (7, 1000)];
        let b = encode_epochs(&e);
        assert_eq!(decode_epochs(&b), Some(e));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert_eq!(decode_epochs(&d), None);
        }
        for cut in 0..b.len() {
            assert_eq!(decode_epochs(&b[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_epochs(&encode_epochs(&[])), Some(vec![]));
    }
}
