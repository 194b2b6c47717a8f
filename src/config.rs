//! Command line and environment configuration of the broker.
//!
//! Every flag is also settable as a `SLUICE_*` environment variable. Names follow Kafka's broker
//! config names in dashed form where Kafka has one. [`Config`] is the validated, immutable result
//! shared by every shard.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_storage::{FlushPolicy, IoMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushArg {
    /// fdatasync before acknowledging acks=all (group commit per shard).
    Always,
    /// fdatasync every --flush-interval-ms.
    Interval,
    /// Rely on the page cache (Kafka's default).
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoModeArg {
    /// O_DIRECT with 4 KiB-aligned writes (falls back to buffered where refused, e.g. tmpfs).
    Direct,
    /// Page-cache writes.
    Buffered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Broker flags.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Address to listen on for Kafka clients.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Address clients are told to connect to (default: the listen address).
    #[arg(long, env = "SLUICE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Kafka's `listeners`: `PROTOCOL://HOST:PORT,...` with PROTOCOL one of PLAINTEXT,
    /// SASL_PLAINTEXT, SSL and SASL_SSL (the listener's name is its protocol). Given, it replaces
    /// `--listen`.
    #[arg(long, env = "SLUICE_LISTENERS")]
    pub listeners: Option<String>,
    /// Kafka's `advertised.listeners`: `PROTOCOL://HOST:PORT,...`, what clients of each listener
    /// are told (default: the listener's own address).
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// The listener brokers reach each other on (replication, Kafka's
    /// `inter.broker.listener.name`). Default: the first listener without SASL. Over SSL or
    /// SASL_SSL a broker verifies the other's certificate with `--ssl-truststore-location` and
    /// presents its keystore's; over SASL_* it logs in with `--inter-broker-sasl-username`.
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// The SASL mechanism brokers log in to each other with (Kafka's
    /// `sasl.mechanism.inter.broker.protocol`); one of `--sasl-enabled-mechanisms`.
    #[arg(
        long,
        env = "SLUICE_SASL_MECHANISM_INTER_BROKER_PROTOCOL",
        default_value = "PLAIN"
    )]
    pub sasl_mechanism_inter_broker_protocol: String,
    /// The user brokers log in as on a SASL inter-broker listener (the `username` of Kafka's
    /// inter-broker `sasl.jaas.config`). It needs a SCRAM credential (`--add-scram`) and
    /// ClusterAction on the cluster (or a place in `--super-users`).
    #[arg(long, env = "SLUICE_INTER_BROKER_SASL_USERNAME")]
    pub inter_broker_sasl_username: Option<String>,
    /// That user's password; prefer the environment variable (a flag shows in `ps`).
    #[arg(
        long,
        env = "SLUICE_INTER_BROKER_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub inter_broker_sasl_password: Option<Secret>,
    /// The SSL and SASL_SSL listeners' certificate chain and private key, one PEM file (Kafka's
    /// `ssl.keystore.location` with `ssl.keystore.type=PEM`). Read again on SIGHUP.
    #[arg(long, env = "SLUICE_SSL_KEYSTORE_LOCATION")]
    pub ssl_keystore_location: Option<PathBuf>,
    /// PEM file of the CA certificates client certificates must chain to (Kafka's
    /// `ssl.truststore.location`). Read again on SIGHUP.
    #[arg(long, env = "SLUICE_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,
    /// Whether the SSL listener's clients must present a certificate (Kafka's
    /// `ssl.client.auth`; not the SASL_SSL listener's, as in Kafka since KIP-684); a verified
    /// one makes the principal `User:` + its subject, e.g. `User:CN=alice,O=Example`.
    #[arg(
        long,
        env = "SLUICE_SSL_CLIENT_AUTH",
        value_enum,
        default_value = "none"
    )]
    pub ssl_client_auth: crate::security::tls::ClientAuth,
    /// Per-listener `ssl.client.auth` (Kafka's `listener.name.<name>.ssl.client.auth`), as
    /// `LISTENER=none|requested|required`, comma-separated: `SASL_SSL=required` asks SASL_SSL
    /// clients for a certificate too (KIP-684), which `--ssl-client-auth` does not.
    #[arg(
        long,
        env = "SLUICE_LISTENER_SSL_CLIENT_AUTH",
        value_delimiter = ',',
        value_parser = parse_listener_client_auth
    )]
    pub listener_ssl_client_auth: Vec<(SecurityProtocol, crate::security::tls::ClientAuth)>,
    /// SASL mechanisms SASL listeners offer (Kafka's `sasl.enabled.mechanisms`).
    #[arg(
        long,
        env = "SLUICE_SASL_ENABLED_MECHANISMS",
        default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_enabled_mechanisms: String,
    /// A SCRAM credential to create at start when the user has none for that mechanism, as
    /// `kafka-storage format --add-scram` takes it: `SCRAM-SHA-256=[name=alice,password=s3cret]`
    /// (optionally `,iterations=8192`). Repeatable. A credential changed since is kept.
    #[arg(long = "add-scram", env = "SLUICE_ADD_SCRAM", value_delimiter = ';')]
    pub add_scram: Vec<String>,
    /// `standard` checks every request against the ACLs (Kafka's `authorizer.class.name` set
    /// to StandardAuthorizer); `none` allows everything.
    #[arg(long, env = "SLUICE_AUTHORIZER", value_enum, default_value = "none")]
    pub authorizer: AuthorizerArg,
    /// Principals allowed everything, `User:NAME;User:OTHER` (Kafka's `super.users`).
    #[arg(long, env = "SLUICE_SUPER_USERS", default_value = "")]
    pub super_users: String,
    /// Allow a request on a resource no ACL names (Kafka's `allow.everyone.if.no.acl.found`).
    #[arg(
        long,
        env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        default_value_t = false
    )]
    pub allow_everyone_if_no_acl_found: bool,
    /// Directory holding every partition log and the cluster metadata.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Number of shards (pinned threads); default: all available cores.
    #[arg(long, env = "SLUICE_CORES")]
    pub cores: Option<usize>,
    /// This broker's node id.
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 0)]
    pub node_id: i32,
    /// Address of this node's controller endpoint (Raft and broker-to-controller traffic);
    /// given, this node is one of the controller voters (Kafka's `controller.listener`).
    #[arg(long, env = "SLUICE_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum, `ID@HOST:PORT,...` (Kafka's `controller.quorum.voters`); absent,
    /// this node runs alone (single-node mode, no other flag needed).
    #[arg(long, env = "SLUICE_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,
    /// How nodes speak to the controller endpoints (Kafka's security protocol of the
    /// controller listener). `SSL`: TLS both ways with `--ssl-keystore-location` and
    /// `--ssl-truststore-location`, a certificate required of every peer, and only peers whose
    /// certificate principal is in `--super-users` served (this node's own must be there).
    #[arg(
        long,
        env = "SLUICE_CONTROLLER_SECURITY_PROTOCOL",
        value_enum,
        default_value = "PLAINTEXT"
    )]
    pub controller_security_protocol: ControllerProtocol,
    /// This broker's rack (Kafka's `broker.rack`): replicas of a partition go to different racks.
    #[arg(long, env = "SLUICE_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// Replication factor of topics created without one (Kafka's `default.replication.factor`).
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: i16,
    /// Replicas that must have a write before acks=all succeeds (Kafka's `min.insync.replicas`).
    #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub min_insync_replicas: i32,
    /// A broker that sends no heartbeat for this long is fenced (Kafka's
    /// `broker.session.timeout.ms`).
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", default_value_t = 9000)]
    pub broker_session_timeout_ms: u64,
    /// How often a broker heartbeats to the active controller (Kafka's
    /// `broker.heartbeat.interval.ms`; Kafka's default is 2000). A broker whose heartbeat
    /// connection closes and that does not heartbeat again within one and a half intervals is fenced, so
    /// this bounds failover after a crash (see docs/replication.md).
    #[arg(
        long,
        env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 500
    )]
    pub broker_heartbeat_interval_ms: u64,
    /// A follower that has not caught up with its leader for this long leaves the partition's
    /// in-sync replicas (Kafka's replica.lag.time.max.ms).
    #[arg(
        long,
        env = "SLUICE_REPLICA_LAG_TIME_MAX_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub replica_lag_time_max_ms: u64,
    /// How long a follower's fetch waits at its leader for new data (Kafka's
    /// replica.fetch.wait.max.ms).
    #[arg(
        long,
        env = "SLUICE_REPLICA_FETCH_WAIT_MAX_MS",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=30_000)
    )]
    pub replica_fetch_wait_max_ms: u64,
    /// The active controller moves leadership back to each partition's preferred replica (the
    /// first listed) when it is live and in sync (Kafka's auto.leader.rebalance.enable).
    #[arg(long, env = "SLUICE_AUTO_LEADER_REBALANCE_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance_enable: bool,
    /// How often it checks (Kafka's leader.imbalance.check.interval.seconds).
    #[arg(
        long,
        env = "SLUICE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub leader_imbalance_check_interval_seconds: u64,
    /// Durability policy for appends.
    #[arg(long, env = "SLUICE_FLUSH", value_enum, default_value = "never")]
    pub flush: FlushArg,
    /// Interval between fdatasyncs with --flush interval.
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// How segments are written.
    #[arg(long, env = "SLUICE_IO_MODE", value_enum, default_value = "direct")]
    pub io_mode: IoModeArg,
    /// Default partition count of auto-created topics and CreateTopics with -1.
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,
    /// Create topics on first Metadata/Produce for an unknown topic.
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics_enable: bool,
    /// Default segment.bytes.
    #[arg(long, env = "SLUICE_LOG_SEGMENT_BYTES", default_value_t = 1 << 30)]
    pub log_segment_bytes: u64,
    /// Default segment.ms.
    #[arg(long, env = "SLUICE_LOG_SEGMENT_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub log_segment_ms: i64,
    /// Default retention.ms (-1: keep forever).
    #[arg(long, env = "SLUICE_LOG_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000, allow_negative_numbers = true)]
    pub log_retention_ms: i64,
    /// Default retention.bytes per partition (-1: unlimited).
    #[arg(long, env = "SLUICE_LOG_RETENTION_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub log_retention_bytes: i64,
    /// How often retention and segment.ms rolls are checked.
    #[arg(
        long,
        env = "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub log_retention_check_interval_ms: u64,
    /// Run the log cleaner (cleanup.policy=compact) on every shard.
    #[arg(long, env = "SLUICE_LOG_CLEANER_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_cleaner_enable: bool,
    /// How long a shard's cleaner sleeps when no log needs cleaning.
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000)]
    pub log_cleaner_backoff_ms: u64,
    /// Memory for the cleaner's key map, shared by the shards' cleaners (Kafka's
    /// log.cleaner.dedupe.buffer.size).
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_DEDUPE_BUFFER_SIZE",
        default_value_t = 128 << 20
    )]
    pub log_cleaner_dedupe_buffer_size: u64,
    /// The cleaners' read + write rate limit, shared by the shards (default: none).
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND",
        default_value_t = u64::MAX
    )]
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// Default min.cleanable.dirty.ratio.
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_MIN_CLEANABLE_RATIO",
        default_value_t = 0.5
    )]
    pub log_cleaner_min_cleanable_ratio: f64,
    /// Default delete.retention.ms (how long tombstones stay once cleaned).
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_DELETE_RETENTION_MS",
        default_value_t = 86_400_000
    )]
    pub log_cleaner_delete_retention_ms: i64,
    /// Default max.message.bytes (largest record batch accepted).
    #[arg(long, env = "SLUICE_MESSAGE_MAX_BYTES", default_value_t = 1_048_588)]
    pub message_max_bytes: u32,
    /// Largest request frame accepted; larger sizes close the connection before any read.
    #[arg(
        long,
        env = "SLUICE_SOCKET_REQUEST_MAX_BYTES",
        default_value_t = 104_857_600
    )]
    pub socket_request_max_bytes: usize,
    /// Requests a connection may have in flight before we stop reading from it.
    #[arg(long, env = "SLUICE_MAX_INFLIGHT_REQUESTS", default_value_t = 32)]
    pub max_inflight_requests: usize,
    /// Connections accepted by the whole broker; more are closed at once (logged, counted).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections accepted by one shard.
    #[arg(
        long,
        env = "SLUICE_MAX_CONNECTIONS_PER_SHARD",
        default_value_t = 5_000
    )]
    pub max_connections_per_shard: usize,
    /// A connection that sends nothing for this long is closed (Kafka's connections.max.idle.ms).
    #[arg(
        long,
        env = "SLUICE_CONNECTIONS_MAX_IDLE_MS",
        default_value_t = 600_000
    )]
    pub connections_max_idle_ms: u64,
    /// How long a SASL login lasts (Kafka's `connections.max.reauth.ms`, KIP-368; 0: for
    /// ever): the client is told and logs in again on its connection before then; a request
    /// after it closes the connection.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,
    /// How long a failed SASL authentication waits before its answer and the close (Kafka's
    /// `connection.failed.authentication.delay.ms`): slows password guessing.
    #[arg(
        long,
        env = "SLUICE_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS",
        default_value_t = 100
    )]
    pub connection_failed_authentication_delay_ms: u64,
    /// Memory one shard may hold in partially received large requests; beyond it, connections
    /// wait (their sockets are not read) until others finish.
    #[arg(long, env = "SLUICE_SHARD_MEMORY_BUDGET_BYTES", default_value_t = 512 << 20)]
    pub shard_memory_budget_bytes: usize,
    /// Largest Fetch response the broker builds, whatever the client asks (Kafka's
    /// fetch.max.bytes); the first batch is still sent whole if it is larger.
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES", default_value_t = 57_671_680)]
    pub fetch_max_bytes: usize,
    /// How often (at most) each written partition notes its active segment's index and
    /// producer state without an fsync, for a restart after a process crash (kill -9, OOM) in
    /// the same boot to scan only what came after; ignored after a reboot. 0: off.
    #[arg(
        long,
        env = "SLUICE_BOOT_CHECKPOINT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub boot_checkpoint_interval_ms: u64,
    /// Recent bytes per partition kept in memory to serve fetches without disk reads. As
    /// large as the shard's budget by default: one busy partition may hold all of it (a
    /// consumer of a 380 MB/s partition fell more than 8 MiB behind now and then, read the
    /// disk, and fell further behind: end-to-end p99 171-328 ms against 12-57 ms).
    #[arg(long, env = "SLUICE_TAIL_CACHE_BYTES", default_value_t = 64 << 20)]
    pub tail_cache_bytes: usize,
    /// Recent bytes all the partitions of one shard keep in memory together; beyond it the
    /// batches cached longest ago go first, whichever partition holds them.
    #[arg(long, env = "SLUICE_TAIL_CACHE_SHARD_BYTES", default_value_t = 64 << 20)]
    pub tail_cache_shard_bytes: usize,
    /// Idle time after which a producer's idempotence state is dropped (Kafka's
    /// producer.id.expiration.ms); its next batch then gets UNKNOWN_PRODUCER_ID.
    #[arg(
        long,
        env = "SLUICE_PRODUCER_ID_EXPIRATION_MS",
        default_value_t = 86_400_000
    )]
    pub producer_id_expiration_ms: i64,
    /// Partition count of the internal __consumer_offsets topic.
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS", default_value_t = 4)]
    pub offsets_topic_num_partitions: i32,
    /// Replicas of each __consumer_offsets partition in a cluster (Kafka's
    /// offsets.topic.replication.factor), capped at the live brokers when the topic is created.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_TOPIC_REPLICATION_FACTOR",
        default_value_t = 3,
        value_parser = clap::value_parser!(i16).range(1..)
    )]
    pub offsets_topic_replication_factor: i16,
    /// Partition count of the internal __transaction_state topic (Kafka's
    /// transaction.state.log.num.partitions), created on the first transaction coordinator
    /// lookup.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_LOG_NUM_PARTITIONS",
        default_value_t = 50,
        value_parser = clap::value_parser!(i32).range(1..=1000)
    )]
    pub transaction_state_log_num_partitions: i32,
    /// Replicas of each __transaction_state partition in a cluster (Kafka's
    /// transaction.state.log.replication.factor), capped at the live brokers.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        default_value_t = 3,
        value_parser = clap::value_parser!(i16).range(1..)
    )]
    pub transaction_state_log_replication_factor: i16,
    /// The longest transaction.timeout.ms a producer may ask for (Kafka's
    /// transaction.max.timeout.ms).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000,
        value_parser = clap::value_parser!(i32).range(1..)
    )]
    pub transaction_max_timeout_ms: i32,
    /// A transactional id idle this long is forgotten (Kafka's transactional.id.expiration.ms).
    #[arg(
        long,
        env = "SLUICE_TRANSACTIONAL_ID_EXPIRATION_MS",
        default_value_t = 604_800_000,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub transactional_id_expiration_ms: i64,
    /// KIP-890 part 1 (Kafka's transaction.partition.verification.enable): a partition leader
    /// asks the transaction coordinator whether a producer added the partition before it
    /// appends the producer's first transactional batch, so a late or stray batch cannot open
    /// a transaction nobody will end.
    #[arg(long, env = "SLUICE_TRANSACTION_PARTITION_VERIFICATION_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub transaction_partition_verification_enable: bool,
    /// The `transaction.version` feature level ApiVersions finalizes (Kafka's feature of that
    /// name): 2 lets clients that know it (the Java client 4.x) use KIP-890 part 2 — the
    /// leader adds a partition to the transaction on the producer's first batch (Produce v12),
    /// every EndTxn (v5) bumps the producer's epoch; 0 or 1 keep every client on the classic
    /// protocol. Give every broker of a cluster the same level.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_VERSION",
        default_value_t = crate::coordinator::txn::coordinator::TRANSACTION_VERSION_MAX,
        value_parser = clap::value_parser!(i16)
            .range(0..=i64::from(crate::coordinator::txn::coordinator::TRANSACTION_VERSION_MAX))
    )]
    pub transaction_version: i16,
    /// Send fetch data with io_uring SEND_ZC (for real NICs; slower on loopback).
    #[arg(long, env = "SLUICE_ZERO_COPY_SEND", default_value_t = false)]
    pub zero_copy_send: bool,
    /// Address of the Prometheus metrics and /ready, /live endpoints; `none` turns them off.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:9644")]
    pub metrics_listen: String,
    /// Log level filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = "SLUICE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `--authorizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthorizerArg {
    None,
    Standard,
}

/// A listener's security protocol (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// One Kafka listener: where it binds and what its clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub protocol: SecurityProtocol,
    pub addr: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl Listener {
    /// The listener's name (its protocol's).
    pub fn name(&self) -> &'static str {
        self.protocol.name()
    }
}

/// A SCRAM credential `--add-scram` creates at start.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapScram {
    pub user: String,
    pub mechanism: crate::security::scram::Mechanism,
    pub password: String,
    pub iterations: i32,
}

impl std::fmt::Debug for BootstrapScram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} (password hidden)",
            self.mechanism.name(),
            self.user
        )
    }
}

/// The controller endpoint's protocol (`--controller-security-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ControllerProtocol {
    #[value(name = "PLAINTEXT")]
    Plaintext,
    #[value(name = "SSL")]
    Ssl,
}

/// A flag's value that must not appear in logs or `Debug` output (a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// The credentials a broker logs in to other brokers' SASL inter-broker listener with.
#[derive(Clone)]
pub struct InterBrokerSasl {
    pub mechanism: crate::security::sasl::SaslMechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for InterBrokerSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} as {} (password hidden)",
            self.mechanism.name(),
            self.user
        )
    }
}

/// Validated broker configuration, immutable once the broker starts.
#[derive(Debug, Clone)]
pub struct Config {
    pub args: BrokerArgs,
    pub shards: usize,
    /// The inter-broker listener's advertised address: what this broker registers and what
    /// clients of a listener without its own entry are told.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Every Kafka listener; `inter_broker` indexes the one brokers use.
    pub listeners: Vec<Listener>,
    pub inter_broker: usize,
    /// What TLS listeners serve; `Some` when there is one.
    pub tls: Option<std::sync::Arc<crate::security::tls::TlsContext>>,
    /// What SASL listeners offer.
    pub sasl_mechanisms: Vec<crate::security::sasl::SaslMechanism>,
    /// How this broker logs in to the others when the inter-broker listener is SASL_*.
    pub inter_broker_sasl: Option<InterBrokerSasl>,
    pub add_scram: Vec<BootstrapScram>,
    pub authorizer: crate::security::acl::AuthorizerConfig,
    pub flush: FlushPolicy,
    pub io_mode: IoMode,
    pub metrics_listen: Option<SocketAddr>,
    /// The controller voters (node id → controller address); empty in single-node mode.
    pub voters: BTreeMap<i32, SocketAddr>,
}

/// A configuration that cannot start a broker.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--cores must be between 1 and 256, got {0}")]
    Cores(usize),
    #[error("--advertise must be HOST:PORT, got {0:?}")]
    Advertise(String),
    #[error("--num-partitions must be at least 1, got {0}")]
    NumPartitions(i32),
    #[error("--socket-request-max-bytes must be between 1 KiB and 2 GiB, got {0}")]
    RequestMax(usize),
    #[error("--max-inflight-requests must be between 1 and 1024, got {0}")]
    Inflight(usize),
    #[error("--flush-interval-ms must be at least 1")]
    FlushInterval,
    #[error("--metrics-listen must be HOST:PORT or none, got {0:?}")]
    MetricsListen(String),
    #[error("--controller-quorum-voters must be ID@HOST:PORT,... with distinct ids, got {0:?}")]
    Voters(String),
    #[error("--controller-listen is given but node {0} is not in --controller-quorum-voters")]
    NotAVoter(i32),
    #[error("--controller-listen needs --controller-quorum-voters")]
    ListenWithoutVoters,
    #[error("--default-replication-factor and --min-insync-replicas must be at least 1")]
    Replication,
    #[error(
        "--broker-heartbeat-interval-ms must be at least 10 and below --broker-session-timeout-ms"
    )]
    Heartbeat,
    #[error("--super-users must be User:NAME;User:OTHER, got {0:?}")]
    SuperUsers(String),
    #[error("--listeners / --advertised-listeners: {0}")]
    Listeners(String),
    #[error(
        "--sasl-enabled-mechanisms: unknown mechanism {0:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
    )]
    SaslMechanism(String),
    #[error("--add-scram must be MECHANISM=[name=USER,password=PASSWORD[,iterations=N]] with 4096 ≤ N ≤ 16384, got {0:?}")]
    AddScram(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl Config {
    pub fn from_args(args: BrokerArgs) -> Result<Config, ConfigError> {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = args.cores.unwrap_or(available);
        if !(1..=256).contains(&shards) {
            return Err(ConfigError::Cores(shards));
        }
        let listeners = parse_listeners(&args)?;
        let inter_broker = match &args.inter_broker_listener_name {
            Some(name) => listeners
                .iter()
                .position(|l| l.name() == name)
                .ok_or_else(|| ConfigError::Listeners(format!("no listener named {name}")))?,
            None => listeners
                .iter()
                .position(|l| !l.protocol.sasl())
                .unwrap_or(0),
        };
        let inter_protocol = listeners[inter_broker].protocol;
        let controller_ssl = args.controller_security_protocol == ControllerProtocol::Ssl
            && args.controller_quorum_voters.is_some();
        let tls = match &args.ssl_keystore_location {
            Some(keystore) if controller_ssl || listeners.iter().any(|l| l.protocol.tls()) => Some(
                crate::security::tls::TlsContext::load(
                    keystore,
                    args.ssl_truststore_location.as_deref(),
                    listener_client_auth(&args),
                )
                .map(std::sync::Arc::new)
                .map_err(ConfigError::Tls)?,
            ),
            None if controller_ssl || listeners.iter().any(|l| l.protocol.tls()) => {
                return Err(ConfigError::Tls(
                    "an SSL or SASL_SSL listener (or --controller-security-protocol SSL) needs --ssl-keystore-location".into(),
                ))
            }
            _ => None,
        };
        let host = listeners[inter_broker].advertised_host.clone();
        let port = listeners[inter_broker].advertised_port;
        let sasl_mechanisms = args
            .sasl_enabled_mechanisms
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                crate::security::sasl::SaslMechanism::from_name(m)
                    .ok_or_else(|| ConfigError::SaslMechanism(m.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inter_broker_sasl = if inter_protocol.sasl() {
            let mechanism = crate::security::sasl::SaslMechanism::from_name(
                args.sasl_mechanism_inter_broker_protocol.trim(),
            )
            .filter(|m| sasl_mechanisms.contains(m))
            .ok_or_else(|| {
                ConfigError::Listeners(format!(
                    "--sasl-mechanism-inter-broker-protocol {} is not one of --sasl-enabled-mechanisms",
                    args.sasl_mechanism_inter_broker_protocol
                ))
            })?;
            match (
                &args.inter_broker_sasl_username,
                &args.inter_broker_sasl_password,
            ) {
                (Some(user), Some(password)) if !user.is_empty() && !password.0.is_empty() => {
                    Some(InterBrokerSasl {
                        mechanism,
                        user: user.clone(),
                        password: password.0.clone(),
                    })
                }
                // A single node has no other broker to log in to.
                _ if args.controller_quorum_voters.is_none() => None,
                _ => {
                    return Err(ConfigError::Listeners(format!(
                        "the inter-broker listener {} needs --inter-broker-sasl-username and --inter-broker-sasl-password",
                        listeners[inter_broker].name()
                    )))
                }
            }
        } else {
            None
        };
        if inter_protocol.tls()
            && args.controller_quorum_voters.is_some()
            && tls.as_ref().is_some_and(|t| t.client_config().is_none())
        {
            return Err(ConfigError::Tls(format!(
                "the inter-broker listener {} needs --ssl-truststore-location to verify the other brokers",
                listeners[inter_broker].name()
            )));
        }
        let add_scram = args
            .add_scram
            .iter()
            .map(|a| parse_add_scram(a).ok_or_else(|| ConfigError::AddScram(redact(a))))
            .collect::<Result<Vec<_>, _>>()?;
        if args.num_partitions < 1 {
            return Err(ConfigError::NumPartitions(args.num_partitions));
        }
        if !(1024..=(i32::MAX as usize)).contains(&args.socket_request_max_bytes) {
            return Err(ConfigError::RequestMax(args.socket_request_max_bytes));
        }
        if !(1..=1024).contains(&args.max_inflight_requests) {
            return Err(ConfigError::Inflight(args.max_inflight_requests));
        }
        let flush = match args.flush {
            FlushArg::Always => FlushPolicy::Always,
            FlushArg::Never => FlushPolicy::Never,
            FlushArg::Interval if args.flush_interval_ms == 0 => {
                return Err(ConfigError::FlushInterval)
            }
            FlushArg::Interval => {
                FlushPolicy::Interval(Duration::from_millis(args.flush_interval_ms))
            }
        };
        let io_mode = match args.io_mode {
            IoModeArg::Direct => IoMode::Direct,
            IoModeArg::Buffered => IoMode::Buffered,
        };
        let metrics_listen = match args.metrics_listen.as_str() {
            "none" | "" => None,
            s => Some(
                s.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::MetricsListen(s.to_owned()))?,
            ),
        };
        let voters = match &args.controller_quorum_voters {
            Some(v) => parse_voters(v).ok_or_else(|| ConfigError::Voters(v.clone()))?,
            None => BTreeMap::new(),
        };
        if args.controller_listen.is_some() {
            if voters.is_empty() {
                return Err(ConfigError::ListenWithoutVoters);
            }
            if !voters.contains_key(&args.node_id) {
                return Err(ConfigError::NotAVoter(args.node_id));
            }
        }
        if args.default_replication_factor < 1 || args.min_insync_replicas < 1 {
            return Err(ConfigError::Replication);
        }
        if args.broker_heartbeat_interval_ms < 10
            || args.broker_heartbeat_interval_ms >= args.broker_session_timeout_ms
        {
            return Err(ConfigError::Heartbeat);
        }
        let super_users: Vec<String> = args
            .super_users
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = super_users.iter().find(|u| !u.starts_with("User:")) {
            return Err(ConfigError::SuperUsers(bad.clone()));
        }
        if controller_ssl {
            let own = tls.as_ref().and_then(|t| {
                t.node_server_config()?;
                t.own_principal()
            });
            match own {
                None => {
                    return Err(ConfigError::Tls(
                        "--controller-security-protocol SSL needs --ssl-truststore-location (peers' certificates are verified) and a keystore certificate with a subject".into(),
                    ))
                }
                Some(p) if !super_users.contains(&p) => {
                    return Err(ConfigError::Tls(format!(
                        "--controller-security-protocol SSL serves only the --super-users: add this node's certificate principal {p:?}"
                    )))
                }
                Some(_) => {}
            }
        }
        let authorizer = crate::security::acl::AuthorizerConfig {
            enabled: args.authorizer == AuthorizerArg::Standard,
            super_users,
            allow_if_no_acl: args.allow_everyone_if_no_acl_found,
        };
        Ok(Config {
            authorizer,
            voters,
            metrics_listen,
            shards,
            advertised_host: host,
            advertised_port: port,
            listeners,
            inter_broker,
            sasl_mechanisms,
            inter_broker_sasl,
            tls,
            add_scram,
            flush,
            io_mode,
            args,
        })
    }

    /// Whether this node is part of a cluster (`--controller-quorum-voters` given).
    pub fn clustered(&self) -> bool {
        !self.voters.is_empty()
    }

    /// The ports clients are told about: a listener on port 0 is fixed up after bind
    /// (`bound[i]` is listener `i`'s port) unless its advertised address was given.
    pub fn with_bound_ports(mut self, bound: &[u16]) -> Config {
        for (l, port) in self.listeners.iter_mut().zip(bound) {
            if l.addr.port() == 0 && l.advertised_port == 0 {
                l.advertised_port = i32::from(*port);
            }
        }
        self.advertised_port = self.listeners[self.inter_broker].advertised_port;
        self
    }

    /// The listener named `name`, if any.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name() == name)
    }
}

/// `HOST:PORT` → (host without brackets, port).
fn host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    Some((
        h.trim_matches(['[', ']']).to_owned(),
        p.parse::<u16>().ok()?,
    ))
}

/// One `--listener-ssl-client-auth` entry: `SSL=required`, `SASL_SSL=requested`.
fn parse_listener_client_auth(
    s: &str,
) -> Result<(SecurityProtocol, crate::security::tls::ClientAuth), String> {
    use clap::ValueEnum;
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not LISTENER=none|requested|required"))?;
    let protocol = SecurityProtocol::from_name(name.trim())
        .filter(|p| p.tls())
        .ok_or_else(|| format!("{name:?} is not a TLS listener (SSL, SASL_SSL)"))?;
    let auth = crate::security::tls::ClientAuth::from_str(value.trim(), true)?;
    Ok((protocol, auth))
}

/// What each TLS listener asks of its clients: `--ssl-client-auth` for SSL, nothing for
/// SASL_SSL (KIP-684), unless `--listener-ssl-client-auth` names the listener.
fn listener_client_auth(args: &BrokerArgs) -> crate::security::tls::ListenerClientAuth {
    use crate::security::tls::{ClientAuth, ListenerClientAuth};
    let named = |protocol: SecurityProtocol| {
        args.listener_ssl_client_auth
            .iter()
            .rev()
            .find(|(p, _)| *p == protocol)
            .map(|(_, auth)| *auth)
    };
    ListenerClientAuth {
        ssl: named(SecurityProtocol::Ssl).unwrap_or(args.ssl_client_auth),
        sasl_ssl: named(SecurityProtocol::SaslSsl).unwrap_or(ClientAuth::None),
    }
}

/// `PROTOCOL://HOST:PORT,...` → (protocol, host, port) each.
fn parse_endpoints(s: &str) -> Result<Vec<(SecurityProtocol, String, u16)>, ConfigError> {
    let bad = |what: String| ConfigError::Listeners(what);
    let mut out: Vec<(SecurityProtocol, String, u16)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part
            .split_once("://")
            .ok_or_else(|| bad(format!("{part:?} is not PROTOCOL://HOST:PORT")))?;
        let protocol = SecurityProtocol::from_name(name).ok_or_else(|| {
            bad(format!(
                "unknown listener {name:?} (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL)"
            ))
        })?;
        if out.iter().any(|(p, _, _)| *p == protocol) {
            return Err(bad(format!("{name} is given twice")));
        }
        let (host, port) =
            host_port(addr).ok_or_else(|| bad(format!("{part:?}: bad HOST:PORT")))?;
        out.push((protocol, host, port));
    }
    if out.is_empty() {
        return Err(bad("no listener".into()));
    }
    Ok(out)
}

/// The listeners `--listeners`/`--advertised-listeners` give, or `--listen`/`--advertise`'s
/// one PLAINTEXT listener.
fn parse_listeners(args: &BrokerArgs) -> Result<Vec<Listener>, ConfigError> {
    let Some(spec) = &args.listeners else {
        let advertise = args
            .advertise
            .clone()
            .unwrap_or_else(|| args.listen.to_string());
        let (host, port) =
            host_port(&advertise).ok_or_else(|| ConfigError::Advertise(advertise.clone()))?;
        let given = args.advertise.is_some();
        return Ok(vec![Listener {
            protocol: SecurityProtocol::Plaintext,
            addr: args.listen,
            advertised_host: host,
            // 0 until bound when listening on port 0 (see `with_bound_ports`).
            advertised_port: if given || args.listen.port() != 0 {
                i32::from(port)
            } else {
                0
            },
        }]);
    };
    let advertised = match &args.advertised_listeners {
        Some(a) => parse_endpoints(a)?,
        None => Vec::new(),
    };
    parse_endpoints(spec)?
        .into_iter()
        .map(|(protocol, host, port)| {
            let addr: SocketAddr = format!("{host}:{port}")
                .parse()
                .or_else(|_| format!("[{host}]:{port}").parse())
                .map_err(|_| {
                    ConfigError::Listeners(format!("{host}:{port} is not an IP address"))
                })?;
            let (advertised_host, advertised_port) = advertised
                .iter()
                .find(|(p, _, _)| *p == protocol)
                .map(|(_, h, p)| (h.clone(), i32::from(*p)))
                .unwrap_or((host, i32::from(port)));
            Ok(Listener {
                protocol,
                addr,
                advertised_host,
                advertised_port,
            })
        })
        .collect()
}

/// `SCRAM-SHA-256=[name=alice,password=secret,iterations=8192]`.
fn parse_add_scram(s: &str) -> Option<BootstrapScram> {
    use crate::security::scram::{Mechanism, ITERATIONS_MAX, ITERATIONS_MIN};
    let (mech, rest) = s.trim().split_once('=')?;
    let mechanism = Mechanism::from_name(mech)?;
    let body = rest.strip_prefix('[')?.strip_suffix(']')?;
    let (mut user, mut password, mut iterations) = (None, None, ITERATIONS_MIN);
    for kv in body.split(',') {
        match kv.split_once('=')? {
            ("name", v) if !v.is_empty() => user = Some(v.trim_matches('"').to_owned()),
            ("password", v) if !v.is_empty() => password = Some(v.trim_matches('"').to_owned()),
            ("iterations", v) => iterations = v.parse().ok()?,
            _ => return None,
        }
    }
    (ITERATIONS_MIN..=ITERATIONS_MAX)
        .contains(&iterations)
        .then_some(BootstrapScram {
            user: user?,
            mechanism,
            password: password?,
            iterations,
        })
}

/// `--add-scram`'s text without its password, for error messages.
fn redact(s: &str) -> String {
    match s.find("password=") {
        Some(i) => {
            let end = s[i..].find([',', ']']).map_or(s.len(), |e| i + e);
            format!("{}password=…{}", &s[..i], &s[end..])
        }
        None => s.to_owned(),
    }
}

/// `0@127.0.0.1:9093,1@127.0.0.1:9095`: ids must be distinct, addresses literal.
fn parse_voters(s: &str) -> Option<BTreeMap<i32, SocketAddr>> {
    let mut voters = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@')?;
        let id: i32 = id.trim().parse().ok().filter(|id| *id >= 0)?;
        let addr: SocketAddr = addr.trim().parse().ok()?;
        if voters.insert(id, addr).is_some() {
            return None;
        }
    }
    (!voters.is_empty()).then_some(voters)
}

#[cfg(test)]
mod tests {
    use super::{parse_voters, BrokerArgs, Config, SecurityProtocol};

    #[test]
    fn voters_parse_and_reject_duplicates_and_garbage() {
        let v = parse_voters("0@127.0.0.1:9093, 2@127.0.0.3:9093").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[&2].to_string(), "127.0.0.3:9093");
        for bad in [
            "",
            "0@x:1",
            "0@127.0.0.1:1,0@127.0.0.1:2",
            "-1@127.0.0.1:1",
            "a@127.0.0.1:1",
            "127.0.0.1:1",
        ] {
            assert!(parse_voters(bad).is_none(), "{bad}");
        }
    }

    fn args(extra: &[&str]) -> BrokerArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BrokerArgs,
        }
        let mut argv = vec!["sluice"];
        argv.extend_from_slice(extra);
        <Cli as clap::Parser>::parse_from(argv).args
    }

    #[test]
    fn listeners_parse_in_kafkas_form_and_refuse_what_cannot_work() {
        let c = Config::from_args(args(&[
            "--listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094",
            "--advertised-listeners",
            "SASL_PLAINTEXT://broker.example:19094",
        ]))
        .unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(c.listeners[1].advertised_host, "broker.example");
        assert_eq!(c.listeners[1].advertised_port, 19094);
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        // --listen stays the PLAINTEXT shorthand.
        let c = Config::from_args(args(&["--listen", "127.0.0.1:7000"])).unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].name(), "PLAINTEXT");
        // A TLS listener needs --ssl-keystore-location.
        for bad in [
            "SSL://127.0.0.1:9093",
            "SASL_SSL://127.0.0.1:9093",
            "FOO://127.0.0.1:1",
            "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
            "PLAINTEXT://nohost",
            "127.0.0.1:9092",
            "",
        ] {
            assert!(
                Config::from_args(args(&["--listeners", bad])).is_err(),
                "{bad}"
            );
        }
        // A cluster's brokers log in to a SASL inter-broker listener: with credentials, by
        // an enabled mechanism.
        let cluster = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:9094",
            "--controller-quorum-voters",
            "0@127.0.0.1:9093",
        ];
        let e = Config::from_args(args(&cluster)).unwrap_err();
        assert!(
            e.to_string().contains("--inter-broker-sasl-username"),
            "{e}"
        );
        let with_user = |extra: &[&str]| {
            let mut a = cluster.to_vec();
            a.extend([
                "--inter-broker-sasl-username",
                "broker",
                "--inter-broker-sasl-password",
                "hunter2",
            ]);
            a.extend(extra);
            Config::from_args(args(&a))
        };
        let c = with_user(&["--sasl-mechanism-inter-broker-protocol", "SCRAM-SHA-512"]).unwrap();
        let sasl = c.inter_broker_sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(sasl.password, "hunter2");
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the password in Debug"
        );
        let e = with_user(&[
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-256",
            "--sasl-mechanism-inter-broker-protocol",
            "SCRAM-SHA-512",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--sasl-enabled-mechanisms"), "{e}");
        // A single node has nobody to log in to.
        let c =
            Config::from_args(args(&["--listeners", "SASL_PLAINTEXT://127.0.0.1:9094"])).unwrap();
        assert!(c.inter_broker_sasl.is_none());
    }

    #[test]
    fn a_controller_endpoint_under_tls_needs_a_trust_store_and_its_own_principal_as_super_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "n1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let keystore = dir.path().join("node.pem");
        std::fs::write(&keystore, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        let truststore = dir.path().join("ca.pem");
        std::fs::write(&truststore, cert.pem()).unwrap();
        let (ks, ts) = (keystore.to_str().unwrap(), truststore.to_str().unwrap());
        let base = [
            "--controller-quorum-voters",
            "0@127.0.0.1:9093",
            "--controller-security-protocol",
            "SSL",
        ];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend(extra);
            Config::from_args(args(&a))
        };
        let e = with(&[]).unwrap_err();
        assert!(e.to_string().contains("--ssl-keystore-location"), "{e}");
        let e = with(&["--ssl-keystore-location", ks]).unwrap_err();
        assert!(e.to_string().contains("--ssl-truststore-location"), "{e}");
        let e = with(&[
            "--ssl-keystore-location",
            ks,
            "--ssl-truststore-location",
            ts,
        ])
        .unwrap_err();
        assert!(e.to_string().contains("\"User:CN=n1\""), "{e}");
        let c = with(&[
            "--ssl-keystore-location",
            ks,
            "--ssl-truststore-location",
            ts,
            "--super-users",
            "User:CN=n1",
        ])
        .unwrap();
        assert!(c.tls.is_some());
        // Single-node mode has no controller endpoint: the flag asks for nothing.
        let c = Config::from_args(args(&["--controller-security-protocol", "SSL"])).unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn add_scram_parses_kafkas_form_and_hides_the_password_in_errors() {
        let c = Config::from_args(args(&[
            "--add-scram",
            "SCRAM-SHA-256=[name=alice,password=s3cret];SCRAM-SHA-512=[name=bob,password=pw,iterations=8192]",
        ]))
        .unwrap();
        assert_eq!(c.add_scram.len(), 2);
        assert_eq!(c.add_scram[1].user, "bob");
        assert_eq!(c.add_scram[1].iterations, 8192);
        assert!(!format!("{:?}", c.add_scram).contains("s3cret"));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=hunter2,colour=red]",
        ] {
            let e = Config::from_args(args(&["--add-scram", bad])).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let e = Config::from_args(args(&["--sasl-enabled-mechanisms", "PLAIN,GSSAPI"]));
        assert!(e.is_err());
    }
}
