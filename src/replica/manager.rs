//! The replicas one broker hosts, over one inter-broker transport: a router task hands each
//! envelope from the transport's inbox to its group's queue (the metadata quorum's, or one
//! partition replica's driver), and `ReplicaManager::host` opens a replica's store and starts
//! its driver on its own queue.
//!
//! Bounds: each group's queue holds at most `GROUP_INBOX_MAX` envelopes; one that is full, or
//! a group this broker does not host (yet, or any more), drops the envelope and counts it
//! (Raft retransmits; a replica that starts later catches up from its leader).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::driver::{self, ReplicaConfig, ReplicaHandle};
use super::store::{ReplicaStore, StoreError};
use crate::config::TopicConfig;
use crate::raft::{NodeId, Options};
use crate::runtime::Runtime;
use crate::transport::{Envelope, GroupId, TransportHandle};

/// Envelopes queued for one group at most.
pub const GROUP_INBOX_MAX: usize = 4096;

#[derive(Default)]
struct Routes {
    groups: Mutex<BTreeMap<GroupId, mpsc::Sender<Envelope>>>,
    /// Envelopes dropped: for a group not hosted here, or a full queue.
    dropped: AtomicU64,
}

/// Hands the transport's envelopes to their groups.
#[derive(Clone)]
pub struct Router {
    routes: Arc<Routes>,
}

impl Router {
    /// Start routing `inbox` (the transport's).
    pub fn start(mut inbox: mpsc::Receiver<Envelope>) -> Router {
        let routes = Arc::new(Routes::default());
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(envelope) = inbox.recv().await {
                let to = r.groups.lock().expect("routes lock").get(&envelope.group).cloned();
                let delivered = to.is_some_and(|tx| tx.try_send(envelope).is_ok());
                if !delivered {
                    r.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Router { routes }
    }

    /// The queue of `group`'s envelopes from now on (a second registration replaces the first).
    pub fn register(&self, group: GroupId) -> mpsc::Receiver<Envelope> {
        let (tx, rx) = mpsc::channel(GROUP_INBOX_MAX);
        self.routes.groups.lock().expect("routes lock").insert(group, tx);
        rx
    }

    pub fn unregister(&self, group: GroupId) {
        self.routes.groups.lock().expect("routes lock").remove(&group);
    }

    /// Envelopes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.routes.dropped.load(Ordering::Relaxed)
    }
}

/// How this broker runs its replicas.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    pub node_id: NodeId,
    pub tick_ms: u64,
    pub options: Options,
    /// Kafka's `replica.lag.time.max.ms`, in ticks.
    pub replica_lag_ticks: u32,
}

/// The partition replicas of one broker.
pub struct ReplicaManager {
    runtime: Runtime,
    transport: Arc<TransportHandle>,
    router: Router,
    settings: ReplicaSettings,
    hosted: Mutex<BTreeMap<GroupId, ReplicaHandle>>,
}

impl ReplicaManager {
    pub fn new(runtime: Runtime, transport: Arc<TransportHandle>, router: Router, settings: ReplicaSettings) -> ReplicaManager {
        ReplicaManager { runtime, transport, router, settings, hosted: Mutex::default() }
    }

    /// Open the replica of `group` in `dir` (its members `members`) and start its driver; the
    /// running one if it is hosted already. Its topic's `min.insync.replicas` is `min_insync`.
    pub async fn host(
        &self,
        group: GroupId,
        dir: PathBuf,
        config: TopicConfig,
        members: &[NodeId],
        min_insync: usize,
    ) -> Result<ReplicaHandle, StoreError> {
        if let Some(h) = self.handle(group).filter(|h| h.status().running) {
            return Ok(h);
        }
        let store = ReplicaStore::open(self.runtime.clone(), dir, config, members).await?;
        let inbox = self.router.register(group);
        let config = ReplicaConfig {
            node_id: self.settings.node_id,
            group,
            tick_ms: self.settings.tick_ms,
            options: self.settings.options.clone(),
            min_insync_replicas: min_insync,
            replica_lag_ticks: self.settings.replica_lag_ticks,
        };
        let handle = driver::start(config, store, self.transport.clone(), inbox);
        self.hosted.lock().expect("hosted lock").insert(group, handle.clone());
        Ok(handle)
    }

    pub fn handle(&self, group: GroupId) -> Option<ReplicaHandle> {
        self.hosted.lock().expect("hosted lock").get(&group).cloned()
    }

    /// Stop hosting `group`: its driver stops (its log closed) and its envelopes are dropped.
    pub async fn stop(&self, group: GroupId) {
        self.router.unregister(group);
        let handle = self.hosted.lock().expect("hosted lock").remove(&group);
        if let Some(h) = handle {
            h.stop().await;
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }
}
