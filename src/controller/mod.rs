//! The controller: the single writer of cluster metadata, living on shard 0.
//!
//! Every change is validated against the current image, persisted (atomic snapshot), then
//! broadcast to every shard; the operation completes once every shard has applied it (logs for
//! new partitions open, logs of deleted topics gone), so a client that creates a topic can
//! produce to it at once. Calls come from any shard through the mesh (`Shard::call(0, ..)`).
//!
//! Metadata writes use blocking std file I/O on shard 0: they are rare (topic admin), small,
//! and keep this file free of runtime details.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use tracing::{error, info};

use crate::cluster::image::{MetadataImage, TopicMeta};
use crate::cluster::topic_config;
use crate::limits::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_BYTES_MAX};
use crate::shard::Shard;

/// Producer ids reserved (persisted) at a time, so most InitProducerId calls touch no disk.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Master copy of the metadata.
pub struct Controller {
    image: MetadataImage,
    /// Next producer id to hand out; always below `image.producer_id_block_end`.
    producer_id_next: i64,
    /// Topics deleted from the image whose partition directories are still being removed on
    /// some shard; the receiver disconnects when every shard is done. A topic of the same name
    /// is created only after that, so no shard opens a directory another is still deleting.
    deleting: HashMap<String, flume::Receiver<()>>,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: broker default.
    pub partitions: i32,
    /// -1 or 1 on a single node.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// An operation's failure, as Kafka reports it.
#[derive(Debug, Clone)]
pub struct OpError {
    pub error: ResponseError,
    pub message: String,
}

impl OpError {
    fn new(error: ResponseError, message: impl Into<String>) -> OpError {
        OpError {
            error,
            message: message.into(),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// How a topic config change is applied.
#[derive(Debug, Clone)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

impl Controller {
    pub fn new(image: MetadataImage) -> Controller {
        let producer_id_next = image.producer_id_block_end;
        Controller {
            image,
            producer_id_next,
            deleting: HashMap::new(),
        }
    }
}

/// Kafka's rule: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> OpResult<()> {
    let legal = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX || !legal || name == "." || name == ".."
    {
        return Err(OpError::new(
            ResponseError::InvalidTopicException,
            format!("topic name {name:?} is illegal: 1-{TOPIC_NAME_BYTES_MAX} characters of [a-zA-Z0-9._-], not '.' or '..'"),
        ));
    }
    Ok(())
}

fn controller(shard: &Shard) -> &std::cell::RefCell<Controller> {
    // Only shard 0 has a controller and every caller routes here through `Shard::call(0, ..)`.
    shard
        .controller
        .as_ref()
        .unwrap_or_else(|| unreachable!("controller operation on shard {}", shard.id))
}

/// Applies `change` to a copy of the image; on success persists and broadcasts it.
async fn commit<T>(
    shard: &Rc<Shard>,
    what: &'static str,
    change: impl FnOnce(&mut MetadataImage) -> OpResult<T>,
) -> OpResult<T> {
    commit_reporting(shard, what, change)
        .await
        .map(|(out, _)| out)
}

/// [`commit`], also returning the topics whose partitions some shard failed to open.
async fn commit_reporting<T>(
    shard: &Rc<Shard>,
    what: &'static str,
    change: impl FnOnce(&mut MetadataImage) -> OpResult<T>,
) -> OpResult<(T, BTreeSet<String>)> {
    let image = {
        let mut c = controller(shard).borrow_mut();
        let mut next = c.image.clone();
        let out = change(&mut next)?;
        next.epoch += 1;
        next.reindex();
        let frees_space = what == "delete-topic";
        if let Err(e) =
            crate::cluster::image::store(&shard.config.args.data_dir, &next, frees_space)
        {
            error!(error = %e, "persisting cluster metadata failed");
            return Err(OpError::new(
                ResponseError::KafkaStorageError,
                e.to_string(),
            ));
        }
        c.image = next.clone();
        // Crash tests: the change is durable, no shard has applied it yet.
        crate::util::failpoint(&format!("{what}-committed"));
        (Arc::new(next), out)
    };
    let (image, out) = image;
    let failed = broadcast(shard, image).await;
    Ok((out, failed))
}

/// Sends `image` to every shard and waits until each has applied it; returns the topics some
/// of whose partitions failed to open.
async fn broadcast(shard: &Rc<Shard>, image: Arc<MetadataImage>) -> BTreeSet<String> {
    let calls = (0..shard.shards).map(|target| {
        let image = image.clone();
        shard.call(target, move |s: &Rc<Shard>| {
            let s = s.clone();
            async move { s.apply_metadata(image).await }
        })
    });
    let mut failed = BTreeSet::new();
    for (target, r) in join_all(calls).await.into_iter().enumerate() {
        match r {
            Ok(topics) => failed.extend(topics),
            Err(_) => error!(shard = target, "shard did not apply metadata"),
        }
    }
    failed
}

fn check_new_topic(shard: &Shard, image: &MetadataImage, t: &NewTopic) -> OpResult<i32> {
    validate_topic_name(&t.name)?;
    if image.topic(&t.name).is_some() {
        return Err(OpError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic '{}' already exists", t.name),
        ));
    }
    let partitions = if t.partitions == -1 {
        shard.config.args.num_partitions
    } else {
        t.partitions
    };
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(OpError::new(
            ResponseError::InvalidPartitions,
            format!("number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, got {partitions}"),
        ));
    }
    if !matches!(t.replication_factor, -1 | 1) {
        return Err(OpError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                t.replication_factor
            ),
        ));
    }
    for (k, v) in &t.configs {
        topic_config::validate(k, v)
            .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
    }
    Ok(partitions)
}

/// Internal topics (`__consumer_offsets`, and any added later) are the broker's: clients may not
/// delete them or change their partition count (groups are routed by that count), as Kafka
/// refuses appends and DeleteRecords to them with INVALID_TOPIC_EXCEPTION.
pub fn refuse_internal(image: &MetadataImage, name: &str, what: &str) -> OpResult<()> {
    match image.topic(name) {
        Some(t) if t.internal => Err(OpError::new(
            ResponseError::InvalidTopicException,
            format!("internal topic '{name}' cannot be {what}"),
        )),
        _ => Ok(()),
    }
}

/// CreateTopics: each topic succeeds or fails on its own.
pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<OpResult<Arc<TopicMeta>>> {
    let mut results = Vec::with_capacity(topics.len());
    for t in topics {
        let r = if validate_only {
            let image = controller(shard).borrow().image.clone();
            check_new_topic(shard, &image, &t).map(|partitions| {
                Arc::new(TopicMeta {
                    name: t.name.clone(),
                    id: [0; 16],
                    partitions,
                    configs: t.configs.clone(),
                    internal: false,
                })
            })
        } else {
            wait_deleted(shard, &t.name).await;
            let sh = shard.clone();
            let name = t.name.clone();
            let created = commit_reporting(shard, "create-topic", move |image| {
                let partitions = check_new_topic(&sh, image, &t)?;
                let meta = Arc::new(TopicMeta {
                    name: t.name.clone(),
                    id: crate::cluster::image::new_topic_id(),
                    partitions,
                    configs: t.configs.clone(),
                    internal: t.name.starts_with("__"),
                });
                image.topics.insert(t.name.clone(), meta.clone());
                Ok(meta)
            })
            .await;
            match created {
                Ok((_, failed)) if failed.contains(&name) => {
                    // Leave no half-made topic behind (e.g. a full disk).
                    error!(topic = %name, "partitions could not be created; removing the topic");
                    if let Err(e) = delete_topic(shard, name.clone()).await {
                        error!(topic = %name, error = %e.message, "removing the half-made topic failed");
                    }
                    Err(OpError::new(
                        ResponseError::KafkaStorageError,
                        format!("the partitions of topic '{name}' could not be created (see the broker log)"),
                    ))
                }
                Ok((meta, _)) => {
                    info!(topic = %name, partitions = meta.partitions, "topic created");
                    Ok(meta)
                }
                Err(e) => Err(e),
            }
        };
        results.push(r);
    }
    results
}

/// Waits until no deletion of a topic named `name` is in progress.
async fn wait_deleted(shard: &Rc<Shard>, name: &str) {
    loop {
        let rx = controller(shard).borrow().deleting.get(name).cloned();
        match rx {
            Some(rx) => {
                let _ = rx.recv_async().await;
            }
            None => return,
        }
    }
}

/// DeleteTopics by name. Completes once every shard has removed the topic's partitions.
pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> OpResult<Arc<TopicMeta>> {
    let (_done, rx) = flume::bounded::<()>(1);
    let mine = {
        let mut c = controller(shard).borrow_mut();
        let mine = c.image.topic(&name).is_some() && !c.deleting.contains_key(&name);
        if mine {
            c.deleting.insert(name.clone(), rx);
        }
        mine
    };
    let key = name.clone();
    let result = delete_topic_now(shard, name).await;
    if mine {
        controller(shard).borrow_mut().deleting.remove(&key);
    }
    result
}

async fn delete_topic_now(shard: &Rc<Shard>, name: String) -> OpResult<Arc<TopicMeta>> {
    commit(shard, "delete-topic", move |image| {
        refuse_internal(image, &name, "deleted")?;
        let removed = image.topics.remove(&name).ok_or_else(|| {
            OpError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
        info!(topic = %name, "topic deleted");
        Ok(removed)
    })
    .await
}

/// CreatePartitions: grow a topic to `count` partitions.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    name: String,
    count: i32,
    validate_only: bool,
) -> OpResult<()> {
    let check = move |image: &MetadataImage| -> OpResult<Arc<TopicMeta>> {
        let t = image.topic(&name).ok_or_else(|| {
            OpError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
        refuse_internal(image, &name, "given partitions")?;
        if count <= t.partitions {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic has {} partitions; the new count must be larger, got {count}",
                    t.partitions
                ),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(OpError::new(
                ResponseError::InvalidPartitions,
                format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions per topic"),
            ));
        }
        Ok(t.clone())
    };
    if validate_only {
        let image = controller(shard).borrow().image.clone();
        return check(&image).map(|_| ());
    }
    commit(shard, "create-partitions", move |image| {
        let t = check(image)?;
        let mut grown = (*t).clone();
        grown.partitions = count;
        info!(topic = %grown.name, partitions = count, "partitions added");
        image.topics.insert(grown.name.clone(), Arc::new(grown));
        Ok(())
    })
    .await
}

/// Alters a topic's config overrides (`replace`: the whole set, as legacy AlterConfigs does).
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    name: String,
    ops: Vec<ConfigOp>,
    replace: bool,
    validate_only: bool,
) -> OpResult<()> {
    let apply = move |image: &MetadataImage| -> OpResult<TopicMeta> {
        let t = image.topic(&name).ok_or_else(|| {
            OpError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
        let mut next = (**t).clone();
        if replace {
            next.configs.clear();
        }
        for op in &ops {
            match op {
                ConfigOp::Set(k, v) => {
                    topic_config::validate(k, v)
                        .map_err(|e| OpError::new(ResponseError::InvalidConfig, e.to_string()))?;
                    next.configs.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    next.configs.remove(k);
                }
            }
        }
        Ok(next)
    };
    if validate_only {
        let image = controller(shard).borrow().image.clone();
        return apply(&image).map(|_| ());
    }
    commit(shard, "alter-configs", move |image| {
        let next = apply(image)?;
        info!(topic = %next.name, configs = ?next.configs, "topic config altered");
        image.topics.insert(next.name.clone(), Arc::new(next));
        Ok(())
    })
    .await
}

/// Routes a controller operation to shard 0 from any shard.
pub async fn on_controller<R, F, Fut>(shard: &Rc<Shard>, f: F) -> OpResult<R>
where
    R: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = OpResult<R>> + 'static,
{
    match shard.call(0, move |s: &Rc<Shard>| f(s.clone())).await {
        Ok(r) => r,
        Err(e) => Err(OpError::new(ResponseError::NotController, e.to_string())),
    }
}

/// Creates topics with broker defaults (auto-creation on Metadata/Produce).
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) {
    let partitions = shard.config.args.num_partitions;
    let topics: Vec<NewTopic> = names
        .into_iter()
        .map(|name| NewTopic {
            name,
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        })
        .collect();
    let _ = on_controller(shard, move |s| async move {
        let results = create_topics(&s, topics, false).await;
        for r in results {
            if let Err(e) = r {
                if !matches!(e.error, ResponseError::TopicAlreadyExists) {
                    info!(error = %e.message, "auto-creating topic failed");
                }
            }
        }
        Ok(())
    })
    .await;
}

/// Hands out a producer id that was never handed out before, even across restarts: ids come
/// from a persisted block; a new block is persisted before its first id is used.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> OpResult<i64> {
    let (next, end) = {
        let c = controller(shard).borrow();
        (c.producer_id_next, c.image.producer_id_block_end)
    };
    if next >= end {
        commit(shard, "producer-ids", |image| {
            image.producer_id_block_end = image.producer_id_block_end.max(next) + PRODUCER_ID_BLOCK;
            Ok(())
        })
        .await?;
    }
    let mut c = controller(shard).borrow_mut();
    let id = c.producer_id_next;
    if id >= c.image.producer_id_block_end {
        return Err(OpError::new(
            ResponseError::CoordinatorNotAvailable,
            "producer id block exhausted; retry",
        ));
    }
    c.producer_id_next += 1;
    Ok(id)
}
