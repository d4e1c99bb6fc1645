//! strand: a Kafka-compatible message broker written against an abstracted runtime, so the same
//! code runs for real and under a deterministic simulator.
//!
//! # Layout
//! - `cli/`        clap commands: broker, cluster (a local multi-process dev cluster), topic,
//!   group, produce, consume, bench
//! - `config`      BrokerConfig, TopicConfig (Kafka keys), validation
//! - `limits`      every named bound
//! - `metrics`     bounded latency histograms (fdatasync times, read by the benchmark)
//! - `protocol/`   record batch v2 view (CRC-32C, in-place offset patch), Kafka error codes
//! - `server/`     async shell facing clients: listener, connection (framing, pipelining,
//!                 bounds), dispatch (ApiKey -> handler; ApiVersions generated from it), handlers,
//!                 replica manager (`topics.rs`: makes metadata records durable, applies them to
//!                 the image and hosts the partitions it assigns to this node)
//! - `group/`      the group coordinator's sans-IO core (classic and KIP-848 protocols,
//!   assignors, offsets, `__consumer_offsets` records); its shell is `server/groups.rs`
//! - `meta/`       the cluster's metadata, pure: KRaft-shaped records (topics, partitions with
//!   replicas, ISR, leader and epoch, configs, brokers, producer id blocks, cluster id) and the
//!   image replaying them gives, with its snapshot and the controller's validation
//! - `controller/` the metadata quorum's Raft shell: its durable log store and the driver
//!   that runs the Raft core over the transport
//! - `raft/`       the Raft consensus core, sans-IO (elections with pre-vote and check-quorum,
//!   replication, commitment, membership changes, leadership transfer, log start)
//! - `transport/`  the inter-broker transport: one TCP connection per ordered broker pair
//!   carrying every Raft group's messages, framed, versioned, handshaked and bounded
//! - `partition/`  a replica: log + group-commit flusher + high watermark
//! - `log/`        one partition's durable segmented log, its recovery, and idempotent
//!   producers' state
//! - `client/`     a small Kafka client over kafka-protocol, used by the CLI and benchmarks
//! - `runtime/`    the ONLY code touching the OS disk, clock or randomness
//!
//! Dependency direction: cli -> server -> partition -> log -> runtime. Network and timers come
//! from `tokio`, which is `madsim-tokio` (simulated under `--cfg madsim`).

pub mod cli;
pub mod client;
pub mod config;
pub mod controller;
pub mod group;
pub mod limits;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod raft;
pub mod replica;
pub mod runtime;
pub mod server;
pub mod transport;
