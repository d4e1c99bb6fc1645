//! The metadata quorum's Raft shell (src/controller/) on three simulated nodes, each with its
//! own SimDisk that survives its kills (losing what was not synced), over the real
//! inter-broker transport on madsim's network. A client on every node proposes unique values
//! through its own node (a follower forwards them to the leader it knows); a nemesis kills and restarts nodes (power loss) and clogs nodes and
//! links. Checked: at most one leader per term; no proposal acknowledged before some node
//! has committed its index; every node applies the same entry at each index
//! (across its restarts too); every acknowledged proposal is applied, at its index, by every
//! node after the faults heal; and the quorum is live after heal with only the nemesis's own
//! restarts. Run by ci/run.sh: `RUSTFLAGS="--cfg madsim" cargo test -p strand-sim --test quorum`.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::runtime::Handle;
use madsim::time::sleep;
use strand::controller::driver::{self, QuorumConfig};
use strand::raft::{NodeId, Options, Payload, Role};
use strand::runtime::Runtime;
use strand::transport::{Transport, TransportConfig, TransportLimits};
use strand_sim::clock::SimClock;
use strand_sim::disk::SimDisk;

const NODES: u32 = 3;

#[derive(Default)]
struct History {
    /// index -> the value every node applied there (0 for Raft's own entries).
    applied: BTreeMap<u64, u64>,
    /// per node: the highest index applied in its current run
    applied_upto: BTreeMap<u32, u64>,
    /// value -> index it was acknowledged at
    acked: BTreeMap<u64, u64>,
    /// term -> leader
    leaders: BTreeMap<u64, u32>,
    violations: Vec<String>,
    next_value: u64,
    /// The clients stop proposing (the final check).
    stopped: bool,
    /// Every node's quorum, as of its latest start.
    quorums: BTreeMap<u32, driver::QuorumHandle>,
}

type Shared = Arc<Mutex<History>>;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 8, id as u8]), 7100)
}

async fn node(id: u32, disk: SimDisk, clock: SimClock, history: Shared) {
    let runtime = Runtime { disk: Arc::new(disk), clock: Arc::new(clock) };
    let peers = (1..=NODES).map(|p| (NodeId(p), addr(p))).collect();
    let limits = TransportLimits {
        connect_timeout_ms: 300,
        handshake_timeout_ms: 300,
        write_timeout_ms: 300,
        backoff_min_ms: 20,
        backoff_max_ms: 200,
        ..TransportLimits::default()
    };
    let config = TransportConfig { node_id: NodeId(id), cluster_id: "sim".into(), listen: addr(id), peers, limits };
    let (transport, inbox) = Transport::start(config).await.expect("bind the inter-broker listener");
    history.lock().unwrap().applied_upto.insert(id, 0);
    let h = history.clone();
    let apply: driver::Apply = Box::new(move |applied| {
        let driver::Applied::Entry { index, entry } = applied else {
            h.lock().unwrap().violations.push(format!("node {id} was given a snapshot, but nothing compacts"));
            return;
        };
        let value = match &entry.payload {
            Payload::Data(d) => u64::from_be_bytes(d[..8].try_into().unwrap()),
            _ => 0,
        };
        let mut h = h.lock().unwrap();
        let upto = h.applied_upto.get(&id).copied().unwrap_or(0);
        if index.0 <= upto {
            h.violations.push(format!("node {id} applied {index:?} twice in one run"));
        }
        h.applied_upto.insert(id, index.0);
        match h.applied.get(&index.0) {
            Some(&v) if v != value => h.violations.push(format!("node {id} applied value {value} at {} where another applied {v}", index.0)),
            Some(_) => {}
            None => {
                h.applied.insert(index.0, value);
            }
        }
    });
    let config = QuorumConfig {
        node_id: NodeId(id),
        voters: (1..=NODES).map(NodeId).collect(),
        tick_ms: 50,
        options: Options { election_timeout_ticks: 10, heartbeat_interval_ticks: 1, ..Options::default() },
        dir: "/quorum".into(),
    };
    let quorum = match driver::start(&runtime, config, transport, inbox, apply).await {
        Ok(q) => q,
        Err(e) => panic!("node {id}: the quorum log did not open: {e}"),
    };
    history.lock().unwrap().quorums.insert(id, quorum.clone());
    loop {
        let status = quorum.status();
        if status.role == Role::Leader {
            let mut h = history.lock().unwrap();
            match h.leaders.get(&status.term.0) {
                Some(&other) if other != id => {
                    let term = status.term.0;
                    h.violations.push(format!("nodes {other} and {id} both lead term {term}"));
                }
                _ => {
                    h.leaders.insert(status.term.0, id);
                }
            }
        }
        // Every node proposes: a follower's proposals are forwarded to the leader it knows.
        if status.leader.is_some() && !history.lock().unwrap().stopped {
            let value = {
                let mut h = history.lock().unwrap();
                h.next_value += 1;
                h.next_value
            };
            if let Ok(index) = quorum.propose(Bytes::copy_from_slice(&value.to_be_bytes()), 2000).await {
                let mut h = history.lock().unwrap();
                // An acknowledgement comes only once the entry is committed: some node (its
                // leader) must have published a commit index that covers it by now.
                let committed = h.quorums.values().map(|q| q.status().commit_index).max().unwrap_or_default();
                if committed < index {
                    h.violations.push(format!("node {id}: value {value} acknowledged at {index:?}, but no node has committed past {committed:?}"));
                }
                h.acked.insert(value, index.0);
            }
        } else {
            sleep(Duration::from_millis(20)).await;
        }
    }
}

#[madsim::test]
async fn metadata_quorum_survives_crashes_and_partitions() {
    let handle = Handle::current();
    let history: Shared = Arc::default();
    let mut ids = Vec::new();
    let mut disks = Vec::new();
    for id in 1..=NODES {
        let (disk, clock, h) = (SimDisk::new(), SimClock::new(), history.clone());
        disks.push(disk.clone());
        let node = handle
            .create_node()
            .name(format!("controller-{id}"))
            .ip(addr(id).ip())
            .init(move || node(id, disk.clone(), clock.clone(), h.clone()))
            .build();
        ids.push(node.id());
    }
    sleep(Duration::from_secs(3)).await;
    assert!(!history.lock().unwrap().acked.is_empty(), "nothing committed in 3 s without faults");

    // Faults: kills with power loss, clogged nodes and links.
    strand_sim::nemesis::kills_and_clogs(&ids, &disks, 12, 300..2500, 100..1500).await;

    // Heal (nothing is restarted), then every node must apply every acknowledged value.
    let acked_before = history.lock().unwrap().acked.len();
    sleep(Duration::from_secs(10)).await;
    history.lock().unwrap().stopped = true;
    sleep(Duration::from_secs(3)).await; // proposals in flight finish; followers learn the commit
    let h = history.lock().unwrap();
    assert!(h.violations.is_empty(), "violations: {:#?}", h.violations);
    assert!(h.acked.len() > acked_before, "no proposal acknowledged in the 10 s after heal (liveness)");
    let max_acked = h.acked.values().copied().max().unwrap_or(0);
    for id in 1..=NODES {
        let upto = h.applied_upto.get(&id).copied().unwrap_or(0);
        assert!(upto >= max_acked, "node {id} applied up to {upto}, below the acknowledged index {max_acked}");
    }
    for (value, index) in &h.acked {
        assert_eq!(h.applied.get(index), Some(value), "acknowledged value {value} at {index} is not what was applied there");
    }
    let last = h.applied.keys().last().copied().unwrap_or(0);
    assert_eq!(h.applied.len() as u64, last, "the applied log has holes");
}
