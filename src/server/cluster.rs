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
    let mut leaderless_ticks = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(CLUSTER_TICK_MS)).await;
        let status = quorum.status();
        if !status.running {
            return;
        }
        if status.leader.is_none() {
            // The quorum is lost to this node: admin requests here time out (REQUEST_TIMED_OUT),
            // partitions keep serving. Said every 10 s while it lasts.
            leaderless_ticks += 1;
            if leaderless_ticks % (10_000 / CLUSTER_TICK_MS) == 2_000 / CLUSTER_TICK_MS {
                let voters = broker.config.controller_quorum.clone().unwrap_or_default();
                tracing::warn!(node = %me, term = status.term.0, role = ?status.role, silent_ms = leaderless_ticks * CLUSTER_TICK_MS,
                    "metadata quorum lost: no controller leader reachable from this node; a majority of the voters ({voters}) is unreachable or down; admin requests fail until it is back");
            }
            continue;
        }
        if leaderless_ticks * CLUSTER_TICK_MS >= 2_000 {
            tracing::info!(node = %me, leader = ?status.leader, "metadata quorum back");
        }
        leaderless_ticks = 0;
        if !registered {
            registered = register(&broker, me, incarnation, cluster).await;
            if registered {
                // The image now holds everything committed before this start's registration.
                broker.topics.check_orphans();
            }
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

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::BrokerConfig;
    use crate::meta::NodeId;
    use crate::protocol::errors::ErrorCode;
    use crate::runtime::Runtime;
    use crate::server::{start, ServerHandle};

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    struct TestCluster {
        configs: Vec<BrokerConfig>,
        nodes: Vec<Option<ServerHandle>>,
        root: PathBuf,
    }

    impl TestCluster {
        async fn start(name: &str, n: u32) -> TestCluster {
            let root = std::env::temp_dir().join(format!("strand-cluster-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let quorum: Vec<String> = (1..=n).map(|i| format!("{i}@127.0.0.1:{}", free_port())).collect();
            let cluster_id = crate::server::handlers::metadata::kafka_cluster_id(uuid::Uuid::from_bytes([42; 16]));
            let configs: Vec<BrokerConfig> = (1..=n)
                .map(|i| BrokerConfig {
                    listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                    data_dir: root.join(format!("node-{i}")),
                    node_id: i as i32,
                    controller_quorum: Some(quorum.join(",")),
                    cluster_id: Some(cluster_id.clone()),
                    broker_session_timeout_ms: 1_500,
                    ..Default::default()
                })
                .collect();
            let mut nodes = Vec::new();
            for c in &configs {
                nodes.push(Some(start(Runtime::real(), c.clone()).await.expect("node starts")));
            }
            TestCluster { configs, nodes, root }
        }

        fn live(&self) -> impl Iterator<Item = &ServerHandle> {
            self.nodes.iter().flatten()
        }

        fn node(&self, id: u32) -> &ServerHandle {
            self.nodes[id as usize - 1].as_ref().expect("node is running")
        }

        async fn stop(&mut self, id: u32) {
            self.nodes[id as usize - 1].take().expect("running").shutdown().await.unwrap();
        }

        async fn restart(&mut self, id: u32) {
            let c = self.configs[id as usize - 1].clone();
            self.nodes[id as usize - 1] = Some(start(Runtime::real(), c).await.expect("node restarts"));
        }

        /// The node every running node names as its quorum's leader, once they agree.
        async fn leader(&self) -> u32 {
            eventually("one leader", || {
                let leaders: Vec<Option<NodeId>> = self.live().map(|n| n.broker().topics.quorum().unwrap().status().leader).collect();
                match leaders[0] {
                    Some(l) if leaders.iter().all(|x| *x == Some(l)) => Some(l.0),
                    _ => None,
                }
            })
            .await
        }

        async fn shutdown(mut self) {
            for n in self.nodes.iter_mut() {
                if let Some(n) = n.take() {
                    n.shutdown().await.unwrap();
                }
            }
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// Poll `f` every 50 ms for up to 15 s.
    async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        for _ in 0..300 {
            if let Some(t) = f() {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// (broker, fenced) as node `n`'s image has them.
    fn brokers(n: &ServerHandle) -> Vec<(u32, bool)> {
        n.broker().topics.with_image(|i| i.brokers().map(|b| (b.registration.node_id.0, b.fenced)).collect())
    }

    fn placement(n: &ServerHandle, topic: &str) -> Option<Vec<(Vec<NodeId>, Option<NodeId>)>> {
        n.broker().topics.with_image(|i| i.topic(topic).map(|t| t.partitions.iter().map(|p| (p.replicas.clone(), p.leader)).collect()))
    }

    /// Three brokers in one process over real TCP: they register, a topic created through a
    /// broker that is not the controller is placed across all three and hosted where placed,
    /// every broker answers Metadata with the same brokers and leaders, a request for a
    /// partition led elsewhere gets NOT_LEADER_OR_FOLLOWER; the controller stops and another
    /// takes over; a silent broker is fenced (its partitions lose their leader) and is
    /// unfenced with its partitions back when it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_brokers_form_a_cluster_and_survive_the_controller() {
        let mut c = TestCluster::start("three", 3).await;
        eventually("every broker registered and unfenced everywhere", || {
            c.live().all(|n| brokers(n) == [(1, false), (2, false), (3, false)]).then_some(())
        })
        .await;
        let leader = c.leader().await;
        let other = if leader == 1 { 2 } else { 1 };
        let created = c.node(other).broker().topics.create("t", 6, BTreeMap::new()).await.expect("create through a non-controller");
        assert_eq!(created.partition_count(), 6);
        let placed = eventually("the same placement everywhere", || {
            let all: Vec<_> = c.live().map(|n| placement(n, "t")).collect();
            all[0].clone().filter(|p| all.iter().all(|x| x.as_ref() == Some(p)))
        })
        .await;
        for id in 1..=3u32 {
            let on: Vec<usize> = placed.iter().enumerate().filter(|(_, (r, _))| r == &[NodeId(id)]).map(|(i, _)| i).collect();
            assert_eq!(on.len(), 2, "six partitions over three brokers, two each: {placed:?}");
            let topic = eventually("the topic hosted", || c.node(id).broker().topics.get("t")).await;
            for p in 0..6 {
                let here = on.contains(&(p as usize));
                assert_eq!(topic.partition(p).is_some(), here, "node {id} partition {p}");
                if !here {
                    assert_eq!(topic.lookup(p).err(), Some(ErrorCode::NOT_LEADER_OR_FOLLOWER));
                }
            }
        }
        // Metadata from any broker: three brokers, each partition's leader its placement.
        for n in c.live() {
            let b = n.broker();
            assert_eq!(b.live_brokers().iter().map(|x| x.id).collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(b.controller_id(), leader as i32);
            for (p, (replicas, _)) in placed.iter().enumerate() {
                let v = b.partition_view("t", p as i32).unwrap();
                assert_eq!(v.leader, Some(replicas[0].0 as i32));
                assert!(v.offline.is_empty());
            }
        }

        // The controller goes away (a graceful stop hands its leadership over).
        c.stop(leader).await;
        let next = c.leader().await;
        assert_ne!(next, leader);
        let survivor = c.live().next().unwrap().broker().clone();
        survivor.topics.create("after-failover", 2, BTreeMap::new()).await.expect("create after the controller stopped");
        // The stopped broker is fenced after its session: its partitions have no leader.
        eventually("the stopped broker fenced", || {
            c.live().all(|n| brokers(n).contains(&(leader, true))).then_some(())
        })
        .await;
        let orphaned: Vec<i32> = placed.iter().enumerate().filter(|(_, (r, _))| r == &[NodeId(leader)]).map(|(i, _)| i as i32).collect();
        for p in &orphaned {
            let v = eventually("leader removed", || survivor.partition_view("t", *p).filter(|v| v.leader.is_none())).await;
            assert_eq!(v.offline, [leader as i32]);
        }
        // Back: registered again with a new epoch, unfenced, its partitions led by it again.
        c.restart(leader).await;
        eventually("the returning broker unfenced", || {
            c.live().all(|n| brokers(n).contains(&(leader, false))).then_some(())
        })
        .await;
        for p in &orphaned {
            eventually("leader back", || survivor.partition_view("t", *p).filter(|v| v.leader == Some(leader as i32))).await;
        }
        let back = c.node(leader).broker().clone();
        let topic = eventually("partitions hosted again", || back.topics.get("t")).await;
        for p in &orphaned {
            assert!(topic.partition(*p).is_some());
        }
        assert_eq!(eventually("the later topic known", || back.topics.get("after-failover")).await.partition_count(), 2);
        c.shutdown().await;
    }

    /// A one-voter quorum replays its whole log at restart: a topic deleted and created again
    /// under the same name keeps the second one's data (regression: the replay opened the
    /// directory for the first topic and its removal deleted the second one's records).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recreated_topic_keeps_its_data_across_a_replay() {
        use crate::partition::Acks;
        let mut c = TestCluster::start("recreate", 1).await;
        eventually("registered", || (brokers(c.node(1)) == [(1, false)]).then_some(())).await;
        let topics = c.node(1).broker().topics.clone();
        topics.create("re", 1, BTreeMap::new()).await.unwrap();
        topics.delete("re").await.unwrap();
        eventually("deleted", || topics.get("re").is_none().then_some(())).await;
        let again = topics.create("re", 1, BTreeMap::new()).await.unwrap();
        let batch = crate::protocol::batch::build_batch(0, 0, &[(None, Some(bytes::Bytes::from_static(b"kept")))]);
        again.partition(0).unwrap().append(batch, Acks::Durable).await.unwrap();
        let id = again.id;
        drop((again, topics));
        c.stop(1).await;
        c.restart(1).await;
        let back = c.node(1).broker().clone();
        let topic = eventually("the topic again", || back.topics.get("re").filter(|t| t.id == id && t.partition(0).is_some())).await;
        assert_eq!(topic.partition(0).unwrap().log_end_offset(), 1, "the recreated topic's record is gone");
        c.shutdown().await;
    }

    #[test]
    fn cluster_ids_parse_in_kafkas_form() {
        let id = uuid::Uuid::from_bytes(std::array::from_fn(|i| (i * 17) as u8));
        let text = crate::server::handlers::metadata::kafka_cluster_id(id);
        assert_eq!(crate::config::parse_cluster_id(&text).unwrap(), id);
        assert_eq!(crate::config::parse_cluster_id(&id.to_string()).unwrap(), id);
        assert!(crate::config::parse_cluster_id("not-an-id").is_err());
        assert!(crate::config::parse_cluster_id("AAAAAAAAAAAAAAAAAAAAAB").is_err(), "stray low bits");
    }
}
