//! The inter-broker transport (src/transport/) under madsim, unchanged: three nodes send each
//! other heartbeats every 10 ms; a clogged link stalls and resumes once unclogged; a killed node
//! goes silent and, restarted, is redialed by its peers and redials them. The loopback twin of
//! this test is tests/transport.rs. Run by ci/run.sh:
//! `RUSTFLAGS="--cfg madsim" cargo test -p strand-sim --test transport`.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::time::sleep;
use strand::raft::{LogIndex, Msg, NodeId, Term};
use strand::transport::{Envelope, GroupId, Transport, TransportConfig, TransportLimits};

/// Messages received per directed link (from, to), kept outside the nodes so it survives kills.
type Counts = Arc<Mutex<BTreeMap<(u32, u32), u64>>>;

const NODES: u32 = 3;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 9, id as u8]), 7000)
}

/// One broker: a transport, a task counting what arrives, and a heartbeat to every peer every
/// 10 ms. Runs again from the start on restart.
async fn broker(id: u32, counts: Counts) {
    let peers = (1..=NODES).map(|p| (NodeId(p), addr(p))).collect();
    let limits = TransportLimits {
        connect_timeout_ms: 500,
        handshake_timeout_ms: 500,
        write_timeout_ms: 500,
        backoff_min_ms: 10,
        backoff_max_ms: 200,
        ..TransportLimits::default()
    };
    let config = TransportConfig { node_id: NodeId(id), cluster_id: "sim".into(), listen: addr(id), peers, limits };
    let (transport, mut inbox) = Transport::start(config).await.expect("bind the inter-broker listener");
    tokio::spawn(async move {
        while let Some(env) = inbox.recv().await {
            *counts.lock().unwrap().entry((env.from.0, id)).or_default() += 1;
        }
    });
    for term in 1.. {
        for p in (1..=NODES).filter(|&p| p != id) {
            let msg = Msg::Heartbeat { term: Term(term), commit: LogIndex(0), round: 0 };
            transport.send(NodeId(p), Envelope { group: GroupId::Metadata, from: NodeId(id), msg: msg.into() });
        }
        sleep(Duration::from_millis(10)).await;
    }
}

fn links() -> Vec<(u32, u32)> {
    (1..=NODES).flat_map(|f| (1..=NODES).filter(move |&t| t != f).map(move |t| (f, t))).collect()
}

#[madsim::test]
async fn transport_survives_clogged_links_and_restarts() {
    let handle = Handle::current();
    let counts: Counts = Arc::default();
    let mut ids = Vec::new();
    for id in 1..=NODES {
        let c = counts.clone();
        let node = handle.create_node().name(format!("broker-{id}")).ip(addr(id).ip()).init(move || broker(id, c.clone())).build();
        ids.push(node.id());
    }
    let snap = || counts.lock().unwrap().clone();
    let get = |s: &BTreeMap<(u32, u32), u64>, l: (u32, u32)| s.get(&l).copied().unwrap_or(0);

    sleep(Duration::from_secs(2)).await;
    let s = snap();
    for l in links() {
        assert!(get(&s, l) > 50, "link {l:?} carried {} messages in 2 s: {s:?}", get(&s, l));
    }

    // Clog 1 -> 2: that link stalls, every other keeps flowing, and it resumes once unclogged.
    let net = NetSim::current();
    net.clog_link(ids[0], ids[1]);
    sleep(Duration::from_millis(500)).await;
    let before = snap();
    sleep(Duration::from_secs(3)).await;
    let during = snap();
    assert_eq!(get(&before, (1, 2)), get(&during, (1, 2)), "the clogged link 1 -> 2 delivered");
    for l in links().into_iter().filter(|&l| l != (1, 2)) {
        assert!(get(&during, l) > get(&before, l) + 100, "link {l:?} stalled while only 1 -> 2 was clogged");
    }
    net.unclog_link(ids[0], ids[1]);
    sleep(Duration::from_secs(3)).await;
    let after = snap();
    assert!(get(&after, (1, 2)) > get(&during, (1, 2)) + 50, "1 -> 2 did not resume after unclog: {after:?}");

    // Kill node 3: everything to and from it stops, 1 <-> 2 carries on.
    handle.kill(ids[2]);
    sleep(Duration::from_millis(500)).await;
    let killed = snap();
    sleep(Duration::from_secs(2)).await;
    let dead = snap();
    for l in [(1, 3), (2, 3), (3, 1), (3, 2)] {
        assert_eq!(get(&killed, l), get(&dead, l), "link {l:?} delivered while node 3 was dead");
    }
    for l in [(1, 2), (2, 1)] {
        assert!(get(&dead, l) > get(&killed, l) + 100, "link {l:?} stalled while node 3 was dead");
    }

    // Restart it: its peers redial it and it dials them, every link flows again.
    handle.restart(ids[2]);
    sleep(Duration::from_secs(3)).await;
    let restarted = snap();
    for l in links() {
        assert!(get(&restarted, l) > get(&dead, l) + 50, "link {l:?} did not recover after node 3 restarted: {restarted:?}");
    }
}
