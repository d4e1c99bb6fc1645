//! This broker as a member of a cluster: what it tells clients of the other brokers (from
//! the metadata image), its registration with the metadata quorum, and, while this node is
//! the active controller, the fencing of brokers that went silent.
//!
//! On a single node (no `controller_quorum`) there is one broker, this one, which leads
//! everything; every function here answers that.
//!
//! Liveness, in combined mode: every broker is a voter of the metadata quorum, so the active
//! controller (the quorum's leader) hears from each broker's Raft follower every heartbeat
//! interval of the quorum. A broker it has not heard from for `broker.session.timeout.ms` is
//! fenced: a `FenceBroker` record, and its partitions lose their leader (LEADER_NOT_AVAILABLE
//! until it is back; with replication factor 1 they are never moved). A registered broker is
//! unfenced once the controller hears from it and its log holds its own registration (it has
//! caught up to it), and its partitions get it back as leader. Kafka's brokers send explicit
//! BrokerHeartbeat requests instead; a broker-only node would need them (not built yet).

use std::sync::Arc;
use std::time::Duration;

use crate::meta::records::{BrokerEpochRecord, ClusterIdRecord, Endpoint, PartitionChangeRecord, RegisterBrokerRecord};
use crate::meta::{MetadataImage, MetadataRecord, NodeId};
use crate::raft::Role;
use crate::runtime::rng;
use crate::server::Broker;

/// A broker as clients are told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerView {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A partition as clients are told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on brokers that are fenced or not registered.
    pub offline: Vec<i32>,
}

fn id(n: NodeId) -> i32 {
    n.0 as i32
}

fn view_of(image: &MetadataImage, b: &crate::meta::BrokerImage) -> Option<BrokerView> {
    let _ = image;
    let e = b.registration.endpoints.first()?;
    Some(BrokerView { id: id(b.registration.node_id), host: e.host.clone(), port: i32::from(e.port), rack: b.registration.rack.clone() })
}

impl Broker {
    fn is_cluster(&self) -> bool {
        self.topics.quorum().is_some()
    }

    fn self_view(&self) -> BrokerView {
        let (host, port) = self.advertised.clone();
        BrokerView { id: self.config.node_id, host, port, rack: self.config.broker_rack.clone() }
    }

    /// The live brokers (unfenced, as Kafka lists them), by id. This broker is always among
    /// them: it is answering.
    pub fn live_brokers(&self) -> Vec<BrokerView> {
        if !self.is_cluster() {
            return vec![self.self_view()];
        }
        let mut out: Vec<BrokerView> =
            self.topics.with_image(|image| image.brokers().filter(|b| !b.fenced).filter_map(|b| view_of(image, b)).collect());
        if !out.iter().any(|b| b.id == self.config.node_id) {
            out.push(self.self_view());
            out.sort_by_key(|b| b.id);
        }
        out
    }

    /// Where broker `node` takes clients, if it is registered (fenced or not).
    pub fn broker_endpoint(&self, node: i32) -> Option<BrokerView> {
        if node == self.config.node_id {
            return Some(self.self_view());
        }
        let node = NodeId(u32::try_from(node).ok()?);
        self.topics.with_image(|image| image.broker(node).and_then(|b| view_of(image, b)))
    }

    /// The active controller clients are told of: the quorum's leader (this node while none is
    /// known: it forwards admin requests once one is).
    pub fn controller_id(&self) -> i32 {
        match self.topics.quorum() {
            None => self.config.node_id,
            Some(q) => q.status().leader.map_or(self.config.node_id, id),
        }
    }

    /// Partition `partition` of `topic` as the image has it.
    pub fn partition_view(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        self.topics.with_image(|image| {
            let p = image.topic(topic)?.partition(partition)?;
            let offline = if self.is_cluster() {
                p.replicas.iter().filter(|r| image.broker(**r).is_none_or(|b| b.fenced)).map(|r| id(*r)).collect()
            } else {
                Vec::new()
            };
            Some(PartitionView {
                leader: p.leader.map(id),
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.iter().map(|r| id(*r)).collect(),
                isr: p.isr.iter().map(|r| id(*r)).collect(),
                offline,
            })
        })
    }
}

/// How often the registration is retried and the controller checks liveness.
const CLUSTER_TICK_MS: u64 = 200;

/// The cluster tasks of a quorum node: register this broker (once per process start, with a
/// new incarnation and the next broker epoch), then, whenever this node is the active
/// controller, fence and unfence brokers by liveness.
pub async fn run(broker: Arc<Broker>) {
    let Some(quorum) = broker.topics.quorum().cloned() else { return };
    let me = broker.topics.node_id();
    let incarnation = *rng::random_uuid().as_bytes();
    let cluster = *broker.topics.cluster_id().as_bytes();
    let mut registered = false;
    loop {
        tokio::time::sleep(Duration::from_millis(CLUSTER_TICK_MS)).await;
        let status = quorum.status();
        if !status.running {
            return;
        }
        if status.leader.is_none() {
            continue;
        }
        if !registered {
            registered = register(&broker, me, incarnation, cluster).await;
            continue;
        }
        if status.role == Role::Leader && status.leader_ready {
            fence_and_unfence(&broker, &status).await;
        }
    }
}

/// One attempt to register; true once this incarnation's registration is in the image.
async fn register(broker: &Broker, me: NodeId, incarnation: [u8; 16], cluster: [u8; 16]) -> bool {
    let (current_cluster, current) = broker.topics.with_image(|image| (image.cluster_id(), image.broker(me).map(|b| b.registration.clone())));
    match current_cluster {
        Some(c) if *c.as_bytes() != cluster => {
            tracing::error!(node = %me, image = %c, ours = %uuid::Uuid::from_bytes(cluster),
                "the metadata quorum belongs to another cluster; this broker does not register");
            return false;
        }
        Some(_) => {}
        None => {
            // The cluster's first record (any node may propose it; the same id twice is a no-op).
            let _ = broker.topics.propose(&[MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: cluster })]).await;
            return false;
        }
    }
    if current.as_ref().is_some_and(|r| r.incarnation == incarnation) {
        return true;
    }
    let (host, port) = broker.advertised.clone();
    let record = RegisterBrokerRecord {
        node_id: me,
        incarnation,
        broker_epoch: current.map_or(1, |r| r.broker_epoch + 1),
        endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host, port: port as u16 }],
        rack: broker.config.broker_rack.clone(),
    };
    match broker.topics.propose(&[MetadataRecord::RegisterBroker(record.clone())]).await {
        Ok(()) => {
            tracing::info!(node = %me, epoch = record.broker_epoch, "broker registered with the metadata quorum");
            true
        }
        Err(e) => {
            tracing::debug!(node = %me, error = %e.message, "broker registration not accepted yet; retrying");
            false
        }
    }
}

/// The active controller's liveness pass.
async fn fence_and_unfence(broker: &Broker, status: &crate::controller::driver::QuorumStatus) {
    let timeout = broker.config.broker_session_timeout_ms;
    let changes: Vec<Vec<MetadataRecord>> = broker.topics.with_image(|image| {
        let mut out = Vec::new();
        for b in image.brokers() {
            let node = b.registration.node_id;
            let epoch = BrokerEpochRecord { node_id: node, broker_epoch: b.registration.broker_epoch };
            let peer = status.peers.get(&node);
            let alive = peer.is_some_and(|p| p.heard_ms_ago < timeout);
            let caught_up = match (peer, broker.topics.registered_at(node)) {
                (Some(p), Some(at)) => p.match_index >= at,
                _ => false,
            };
            if !b.fenced && !alive {
                let mut records = vec![MetadataRecord::FenceBroker(epoch)];
                for t in image.topics() {
                    for (i, p) in t.partitions.iter().enumerate() {
                        if p.leader == Some(node) {
                            records.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
                                topic_id: t.id,
                                partition: i as i32,
                                leader: Some(None),
                                isr: None,
                                replicas: None,
                            }));
                        }
                    }
                }
                tracing::warn!(broker = %node, silent_ms = peer.map(|p| p.heard_ms_ago), "fencing a broker the controller has not heard from");
                out.push(records);
            } else if b.fenced && alive && caught_up {
                let mut records = vec![MetadataRecord::UnfenceBroker(epoch)];
                for t in image.topics() {
                    for (i, p) in t.partitions.iter().enumerate() {
                        if p.leader.is_none() && p.isr.contains(&node) {
                            records.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
                                topic_id: t.id,
                                partition: i as i32,
                                leader: Some(Some(node)),
                                isr: None,
                                replicas: None,
                            }));
                        }
                    }
                }
                tracing::info!(broker = %node, "unfencing a broker that is back and caught up");
                out.push(records);
            }
        }
        out
    });
    for records in changes {
        if let Err(e) = broker.topics.propose(&records).await {
            tracing::debug!(error = %e.message, "fence/unfence not committed; the next pass retries");
        }
    }
}
