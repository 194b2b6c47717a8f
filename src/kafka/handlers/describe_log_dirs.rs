//! DescribeLogDirs: the one data directory, with each partition's size on disk.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures_util::future::join_all;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use sluice_net::ResponseKind;

use crate::kafka::dispatch::Ctx;
use crate::shard::{MeshMsg, Shard};
use crate::util::{sb, topic_name};

pub async fn handle(shard: Rc<Shard>, req: DescribeLogDirsRequest, ctx: Ctx) -> ResponseKind {
    // ACLs: DESCRIBE on the cluster.
    if !ctx.may_cluster(&shard, crate::security::acl::OP_DESCRIBE) {
        return ResponseKind::DescribeLogDirs(
            DescribeLogDirsResponse::default()
                .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let calls = (0..shard.shards)
        .map(|target| shard.request(target, |reply| MeshMsg::LogDirSizes { reply }));
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.as_str().to_owned(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, index, size) in join_all(calls).await.into_iter().flatten().flatten() {
        let keep = wanted
            .as_ref()
            .is_none_or(|w| w.get(&topic).is_some_and(|ps| ps.contains(&index)));
        if keep {
            by_topic.entry(topic).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(index)
                    .with_partition_size(size),
            );
        }
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut parts)| {
            parts.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(parts)
        })
        .collect();
    let dir = shard.config.args.data_dir.clone();
    // statvfs and realpath are blocking calls: off the reactor.
    let fallback = dir.display().to_string();
    let (total, usable, path) = crate::runtime::spawn_blocking(move || {
        let (total, usable) = disk_space(&dir);
        let path = std::fs::canonicalize(&dir).unwrap_or(dir);
        (total, usable, path.display().to_string())
    })
    .await
    .unwrap_or((-1, -1, fallback));
    let result = DescribeLogDirsResult::default()
        .with_log_dir(sb(path))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// `(total, available)` bytes of the filesystem holding `dir`, or -1s if unknown.
fn disk_space(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return (-1, -1);
    }
    let frag = st.f_frsize as i64;
    (st.f_blocks as i64 * frag, st.f_bavail as i64 * frag)
}
