//! Every hard limit of the broker in one place, each with the reason for its value.

/// Depth of each cross-shard queue (per ordered pair of shards): enough to keep a peer busy,
/// small enough that a stuck shard pushes back on its senders instead of growing memory.
pub const MESH_QUEUE_DEPTH: usize = 1024;

/// Longest Fetch long-poll we honour, whatever max_wait_ms says (Kafka clients use ≤ 500 ms).
pub const FETCH_MAX_WAIT_MS: i64 = 30_000;

/// Read buffer grown per connection when no frame size is known yet.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How often a connection waiting for read budget checks again.
pub const READ_BUDGET_RETRY_MS: u64 = 2;

/// Partitions named in one request; beyond this the request is refused.
pub const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

/// Topics created in one CreateTopics request / partitions per topic.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// How often a shard retries opening partition logs that failed to open (disk full, EIO).
pub const OPEN_RETRY_MS: u64 = 2_000;

/// How long start-up waits for a listening address still held by a process that just died: a
/// killed broker's io_uring ring is torn down after the process is reaped, and the ring's
/// pending accept keeps the listening socket bound meanwhile (measured: ~7 ms after kill -9).
pub const PORT_RELEASE_WAIT_MS: u64 = 2_000;

/// How long graceful shutdown waits for in-flight requests before closing logs anyway.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Metadata images queued for a shard's applier (the controller sends one per change and waits
/// for it to be applied, so more than one or two are rare).
pub const METADATA_APPLY_QUEUE_DEPTH: usize = 64;

/// Metrics scrapes queued for a shard (one per concurrent `/metrics` request).
pub const SCRAPE_QUEUE_DEPTH: usize = 4;
