//! The async shell facing clients: listener, connections (framing, pipelining, bounds),
//! dispatch (ApiKey -> handler; the ApiVersions answer is generated from the same table),
//! handlers, and the topic registry (durable topic metadata).
//!
//! Never: panics on client input (bad bytes close that one connection or get a Kafka error
//! code), holds a std lock across an await, or answers acks=1/all before the data is durable.

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
    pub topics: TopicRegistry,
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
        let drain_deadline = self.broker.rt.clock.monotonic() + Duration::from_millis(SHUTDOWN_DRAIN_MS);
        while self.active_connections.load(Ordering::SeqCst) > 0 && self.broker.rt.clock.monotonic() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.active_connections.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(connections = left, "shutdown: connections still open after the drain period");
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
    let topics = TopicRegistry::open_as(rt.clone(), config.data_dir.clone(), defaults, node_id).await?;
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
    tracing::info!(listen = %local_addr, data_dir = %broker.config.data_dir.display(), "broker started");
    Ok(ServerHandle { local_addr, shutdown_tx, accept_task, maintenance_task, group_task, broker, active_connections })
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
            for (p, partition) in topic.partitions.iter().enumerate() {
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
