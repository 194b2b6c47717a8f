use super::*;
use crate::cluster::record::topic_on_node;

fn topic(name: &str, id: u8, partitions: i32) -> Vec<MetadataRecord> {
    topic_on_node(name, [id; 16], partitions, false, 0)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

#[test]
fn appends_survive_reopen_and_snapshots_replace_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = MetadataStore::open(dir.path(), 0).unwrap();
    assert_eq!(image.epoch, 1, "a new log starts with its cluster id");
    let first = block_on(store.append(topic("a", 1, 3), false)).unwrap();
    assert_eq!(first, 2);
    drop(store);
    let again = load(dir.path(), 0).unwrap();
    assert_eq!(again.cluster_id, image.cluster_id);
    assert_eq!(again.topic("a").unwrap().partition_count(), 3);
    assert_eq!(again.epoch, 5);

    // Enough changes for two snapshots.
    let (store, _) = MetadataStore::open(dir.path(), 0).unwrap();
    for i in 0..(2 * SNAPSHOT_EVERY) {
        let value = Some(i.to_string());
        let r = MetadataRecord::Config {
            topic: "a".into(),
            key: "retention.ms".into(),
            value,
        };
        block_on(store.append(vec![r], false)).unwrap();
    }
    drop(store);
    let image = load(dir.path(), 0).unwrap();
    assert_eq!(image.epoch, 5 + 2 * SNAPSHOT_EVERY);
    let configs = &image.topic("a").unwrap().configs;
    assert_eq!(
        configs["retention.ms"],
        (2 * SNAPSHOT_EVERY - 1).to_string()
    );
    let names: Vec<String> = fs::read_dir(metadata_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| parse_name(n).is_some())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "one snapshot and the segment after it: {names:?}"
    );
}

#[test]
fn a_torn_tail_is_cut_and_corruption_elsewhere_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = MetadataStore::open(dir.path(), 0).unwrap();
    block_on(store.append(topic("a", 1, 1), false)).unwrap();
    block_on(store.append(topic("b", 2, 1), false)).unwrap();
    drop(store);
    let seg = segment_path(&metadata_dir(dir.path()), 1);
    let good = fs::read(&seg).unwrap();

    // Any cut of the last frame: the last append is gone, the rest loads.
    let last_frame = {
        let mut at = 0;
        let mut starts = Vec::new();
        while at < good.len() {
            starts.push(at);
            at += crate::cluster::frames::decode(&good[at..]).1;
        }
        starts[starts.len() - 1]
    };
    for cut in last_frame..good.len() {
        fs::write(&seg, &good[..cut]).unwrap();
        let image = load(dir.path(), 0).unwrap();
        assert!(image.topic("a").is_some(), "cut at {cut}");
        assert!(image.topic("b").is_none());
        assert_eq!(image.topic_by_id(&[2; 16]), None);
    }
    // A flipped byte in the last frame: torn too.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 2] ^= 0xff;
    fs::write(&seg, &bad).unwrap();
    assert!(load(dir.path(), 0).unwrap().topic("b").is_none());
    // Zeros after the last frame (a file extended, not written): cut.
    let mut zeros = good.clone();
    zeros.extend_from_slice(&[0; 100]);
    fs::write(&seg, &zeros).unwrap();
    assert!(load(dir.path(), 0).unwrap().topic("b").is_some());
    // A corrupt length in the middle of the last segment is not a torn write: refused, not cut.
    let mut bad = good.clone();
    bad[0] = 0x7f;
    fs::write(&seg, &bad).unwrap();
    assert!(matches!(
        load(dir.path(), 0),
        Err(MetadataError::Corrupt(..))
    ));
    // A flipped byte in an earlier frame: corrupt.
    let mut bad = good.clone();
    bad[12] ^= 0xff;
    fs::write(&seg, &bad).unwrap();
    assert!(matches!(
        load(dir.path(), 0),
        Err(MetadataError::Corrupt(..))
    ));
}

#[test]
fn refuses_records_that_do_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = MetadataStore::open(dir.path(), 0).unwrap();
    let r = MetadataRecord::RemoveTopic { topic_id: [7; 16] };
    assert!(block_on(store.append(vec![r], false)).is_err());
    block_on(store.append(topic("a", 1, 1), false)).unwrap();
    drop(store);
    assert_eq!(load(dir.path(), 0).unwrap().epoch, 3);
}

#[test]
fn migrates_the_single_image_format() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = metadata_dir(dir.path());
    fs::create_dir_all(&mdir).unwrap();
    let body = br#"{"cluster_id":"abc","epoch":7,"topics":{"t":{"name":"t","id":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"partitions":2,"configs":{"retention.ms":"9"}}},"producer_id_block_end":2000}"#;
    let mut bytes = legacy::MAGIC.to_vec();
    bytes.extend_from_slice(&1u16.to_be_bytes());
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    bytes.extend_from_slice(body);
    fs::write(mdir.join(LEGACY_FILE), &bytes).unwrap();
    let image = load(dir.path(), 0).unwrap();
    assert_eq!(image.cluster_id, "abc");
    assert_eq!(image.producer_id_block_end, 2000);
    let t = image.topic("t").unwrap();
    assert_eq!(
        (t.partition_count(), t.configs["retention.ms"].as_str()),
        (2, "9")
    );
    assert!(!mdir.join(LEGACY_FILE).exists());
    assert!(mdir.join("metadata.snapshot.migrated").exists());
    // Loading again uses the migrated log.
    assert_eq!(load(dir.path(), 0).unwrap().topics, image.topics);

    // A corrupt old file is refused, not ignored.
    let other = tempfile::tempdir().unwrap();
    let mdir = metadata_dir(other.path());
    fs::create_dir_all(&mdir).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    fs::write(mdir.join(LEGACY_FILE), &bytes).unwrap();
    assert!(matches!(
        load(other.path(), 0),
        Err(MetadataError::Corrupt(..))
    ));
}
