//! The async shell facing clients: listener, connections (framing, pipelining, bounds),
//! dispatch (ApiKey -> handler; the ApiVersions answer is generated from the same table),
//! handlers, and the topic registry (durable topic metadata).
//!
//! Never: panics on client input (bad bytes close that one connection or get a Kafka error
//! code), holds a std lock across an await, or answers acks=1/all before the data is durable.

pub mod cluster;
mod connection;
mod dispatch;
pub mod groups;
pub(crate) mod handlers;
pub mod topics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::BrokerConfig;
use crate::limits::CONNECTIONS_MAX;
use crate::runtime::Runtime;
use topics::TopicRegistry;

pub use dispatch::supported_apis;

/// State shared by every connection.
pub struct Broker {
    pub rt: Runtime,
    pub config: BrokerConfig,
    pub topics: Arc<TopicRegistry>,
    /// The group coordinator (every group: a single node coordinates them all).
    pub groups: groups::Groups,
    /// (host, port) clients are told to use.
    pub advertised: (String, i32),
    /// Produce requests with a response: from the whole frame read to the response written.
    pub produce_latency: crate::metrics::Histogram,
}

/// A running broker.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    maintenance_task: tokio::task::JoinHandle<()>,
    group_task: tokio::task::JoinHandle<()>,
    cluster_task: tokio::task::JoinHandle<()>,
    broker: Arc<Broker>,
    active_connections: Arc<AtomicUsize>,
}

/// How long shutdown waits for connections to finish their in-flight requests.
const SHUTDOWN_DRAIN_MS: u64 = 10_000;

impl ServerHandle {
    /// The broker's state (the in-process benchmark reads partitions' fdatasync histograms).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, let connections finish what they read, sync every partition, return.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown_tx.send(true);
        let _ = self.accept_task.await;
        self.maintenance_task.abort();
        self.group_task.abort();
        self.cluster_task.abort();
        let drain_deadline = self.broker.rt.clock.monotonic() + Duration::from_millis(SHUTDOWN_DRAIN_MS);
        while self.active_connections.load(Ordering::SeqCst) > 0 && self.broker.rt.clock.monotonic() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.active_connections.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(connections = left, "shutdown: connections still open after the drain period");
        }
        if let Some(quorum) = self.broker.topics.quorum() {
            quorum.stop().await;
        }
        self.broker.topics.close_all().await;
        tracing::info!("broker stopped");
        Ok(())
    }
}

/// Open the data directory (recovering every partition) and start serving on `config.listen`.
pub async fn start(rt: Runtime, config: BrokerConfig) -> anyhow::Result<ServerHandle> {
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let defaults = config.topic_defaults().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Bind first: a broker that cannot listen fails before it writes anything to the data
    // directory. Clients connecting meanwhile wait in the backlog until recovery is done.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let node_id = crate::meta::NodeId(u32::try_from(config.node_id).expect("validated: not negative"));
    let topics = match &config.controller_quorum {
        None => Arc::new(TopicRegistry::open_as(rt.clone(), config.data_dir.clone(), defaults, node_id).await?),
        Some(quorum) => open_quorum_node(&rt, &config, quorum, defaults, node_id).await?,
    };
    let groups = groups::Groups::open(rt.clone(), &topics, config.group_config(), config.offsets_topic_compact_bytes).await?;
    let local_addr = listener.local_addr()?;
    let advertised = match &config.advertised_listener {
        Some(_) => config.advertised(),
        None => (local_addr.ip().to_string(), i32::from(local_addr.port())),
    };
    let broker = Arc::new(Broker { rt, config, topics, groups, advertised, produce_latency: Default::default() });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let active_connections = Arc::new(AtomicUsize::new(0));
    let accept_task = tokio::spawn(accept_loop(broker.clone(), listener, shutdown_rx.clone(), active_connections.clone()));
    let maintenance_task = tokio::spawn(maintenance_loop(broker.clone()));
    let group_task = tokio::spawn(groups::tick_loop(broker.clone()));
    let cluster_task = tokio::spawn(cluster::run(broker.clone()));
    tracing::info!(listen = %local_addr, data_dir = %broker.config.data_dir.display(), "broker started");
    Ok(ServerHandle { local_addr, shutdown_tx, accept_task, maintenance_task, group_task, cluster_task, broker, active_connections })
}

/// The file in a quorum node's data directory that holds its cluster id (Kafka's
/// `meta.properties`).
pub const CLUSTER_ID_FILE: &str = "cluster.id";

/// The cluster id of a quorum node: the one stored in its data directory, which `--cluster-id`
/// must match if given; on an empty data directory the flag's, stored before anything else.
async fn cluster_id_of(rt: &Runtime, config: &BrokerConfig) -> anyhow::Result<uuid::Uuid> {
    let path = config.data_dir.join(CLUSTER_ID_FILE);
    rt.disk
        .create_dir_all(&config.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    let stored = crate::runtime::disk::read_whole(rt.disk.as_ref(), &path).await?;
    let stored = match stored {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            Some(crate::config::parse_cluster_id(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let given = config.cluster_id.as_deref().map(crate::config::parse_cluster_id).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
    match (stored, given) {
        (Some(s), Some(g)) if s != g => anyhow::bail!(
            "data directory {} belongs to cluster {}, not {} (--cluster-id)",
            config.data_dir.display(),
            handlers::metadata::kafka_cluster_id(s),
            handlers::metadata::kafka_cluster_id(g)
        ),
        (Some(s), _) => Ok(s),
        (None, Some(g)) => {
            let text = format!("{}\n", handlers::metadata::kafka_cluster_id(g));
            crate::runtime::disk::write_atomic(rt.disk.as_ref(), &path, bytes::Bytes::from(text)).await?;
            Ok(g)
        }
        (None, None) => anyhow::bail!(
            "{} has no cluster id yet: start this quorum node once with --cluster-id (the same on every node; e.g. {})",
            config.data_dir.display(),
            handlers::metadata::kafka_cluster_id(crate::runtime::rng::random_uuid())
        ),
    }
}

/// Start this node's part of the metadata quorum: its inter-broker transport on its own
/// entry's address, and the registry as the quorum's state machine.
async fn open_quorum_node(
    rt: &Runtime,
    config: &BrokerConfig,
    quorum: &str,
    defaults: crate::config::TopicConfig,
    node_id: crate::meta::NodeId,
) -> anyhow::Result<Arc<TopicRegistry>> {
    let voters = crate::config::parse_quorum(quorum).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = voters.iter().find(|(id, _)| *id == node_id).map(|(_, a)| *a).expect("validated: this node is a voter");
    let cluster_id = cluster_id_of(rt, config).await?;
    let transport_config = crate::transport::TransportConfig {
        node_id,
        cluster_id: handlers::metadata::kafka_cluster_id(cluster_id),
        listen,
        peers: voters.iter().copied().collect(),
        limits: Default::default(),
    };
    let (transport, inbox) = crate::transport::Transport::start(transport_config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the controller quorum on {listen}: {e}"))?;
    let quorum_config = crate::controller::driver::QuorumConfig {
        node_id,
        voters: voters.iter().map(|(id, _)| *id).collect(),
        tick_ms: config.controller_tick_ms,
        options: crate::raft::Options { election_timeout_ticks: 10, heartbeat_interval_ticks: 1, ..Default::default() },
        dir: config.data_dir.join(topics::QUORUM_DIR),
    };
    TopicRegistry::open_quorum(
        rt.clone(),
        config.data_dir.clone(),
        defaults,
        node_id,
        cluster_id,
        quorum_config,
        config.metadata_snapshot_entries,
        transport,
        inbox,
    )
    .await
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut accept_errors = 0u32;
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                accept_errors = 0;
                let _ = stream.set_nodelay(true);
                active.fetch_add(1, Ordering::SeqCst);
                let (broker, shutdown, active) = (broker.clone(), shutdown.clone(), active.clone());
                tokio::spawn(async move {
                    connection::serve(broker, stream, peer, shutdown).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
            Err(e) => {
                // Bounded backoff (e.g. EMFILE); the listener itself stays up.
                accept_errors = accept_errors.saturating_add(1);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10u64 << accept_errors.min(6))).await;
            }
        }
    }
}

/// Retention and age-based segment roll, every `log_retention_check_interval_ms`.
async fn maintenance_loop(broker: Arc<Broker>) {
    let interval = Duration::from_millis(broker.config.log_retention_check_interval_ms.max(100));
    loop {
        tokio::time::sleep(interval).await;
        for topic in broker.topics.all() {
            for (p, partition) in topic.hosted() {
                match partition.maintain().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(topic = %topic.name, partition = p, segments = n, "retention deleted segments"),
                    Err(e) => tracing::warn!(topic = %topic.name, partition = p, error = %e, "retention failed"),
                }
            }
        }
    }
}

/// An in-process broker on 127.0.0.1 (any port) and a fresh data directory named after `name`,
/// for unit tests of the request path; `TestServer::stop` shuts it down and removes the
/// directory.
#[cfg(all(test, not(madsim)))]
pub(crate) struct TestServer {
    pub server: ServerHandle,
    pub broker: Arc<Broker>,
    dir: std::path::PathBuf,
}

#[cfg(all(test, not(madsim)))]
impl TestServer {
    pub async fn start(name: &str) -> TestServer {
        TestServer::start_on(name, Runtime::real()).await
    }

    /// As `start`, on the given runtime (a faulty or slow disk).
    pub async fn start_on(name: &str, rt: Runtime) -> TestServer {
        let dir = std::env::temp_dir().join(format!("strand-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = BrokerConfig { listen: "127.0.0.1:0".parse().expect("static address"), data_dir: dir.clone(), ..Default::default() };
        let server = start(rt, config).await.expect("broker starts");
        let broker = server.broker().clone();
        TestServer { server, broker, dir }
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("shutdown");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
