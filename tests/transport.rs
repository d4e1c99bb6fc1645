//! The inter-broker transport over real loopback TCP: three nodes talk both ways, a restarted
//! peer is redialed, bad input on a raw connection closes only that connection, and the queue
//! to a dead peer stays bounded. (The same code under madsim: sim/tests/transport.rs.)
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use strand::raft::{Msg, NodeId, Term};
use strand::transport::frame::{self, Frame, Hello};
use strand::transport::{Envelope, GroupId, Transport, TransportConfig, TransportHandle, TransportLimits, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const CLUSTER: &str = "test-cluster";

fn limits() -> TransportLimits {
    TransportLimits { backoff_min_ms: 10, backoff_max_ms: 100, handshake_timeout_ms: 1_000, ..TransportLimits::default() }
}

fn config(id: u32, listen: SocketAddr, peers: BTreeMap<NodeId, SocketAddr>) -> TransportConfig {
    TransportConfig { node_id: NodeId(id), cluster_id: CLUSTER.into(), listen, peers, limits: limits() }
}

fn heartbeat(term: u64) -> Envelope {
    Envelope { group: GroupId::Metadata, from: NodeId(0), msg: Msg::Heartbeat { term: Term(term), commit: Default::default(), round: 0 }.into() }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts `n` transports on loopback and tells each where the others are.
async fn cluster(n: u32) -> Vec<(TransportHandle, mpsc::Receiver<Envelope>)> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(Transport::start(config(id, any_port(), BTreeMap::new())).await.unwrap());
    }
    let addrs: BTreeMap<NodeId, SocketAddr> = nodes.iter().map(|(h, _)| (h.node_id(), h.local_addr())).collect();
    for (h, _) in &nodes {
        h.set_peers(addrs.clone());
    }
    nodes
}

/// Sends a heartbeat with `term` from `from` to `to` every 20 ms until `to` receives one with
/// that term, or panics after 10 s.
async fn deliver(from: &TransportHandle, to: NodeId, inbox: &mut mpsc::Receiver<Envelope>, term: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        from.send(to, heartbeat(term));
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Some(env)) = tokio::time::timeout_at(until, inbox.recv()).await {
            if env.msg.raft().unwrap().term() == Term(term) {
                assert_eq!(env.from, from.node_id(), "the envelope names its sender");
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "node {} -> node {to}: term {term} not delivered in 10 s", from.node_id());
    }
}

#[tokio::test]
async fn three_nodes_exchange_messages_both_ways() {
    let mut nodes = cluster(3).await;
    for round in 0..3u64 {
        for from in 0..3 {
            for to in 0..3 {
                if from == to {
                    continue;
                }
                let term = 1000 * round + 10 * from as u64 + to as u64 + 1;
                let to_id = nodes[to].0.node_id();
                let (left, right) = nodes.split_at_mut(from.max(to));
                let (sender, inbox) = if from < to { (&left[from].0, &mut right[0].1) } else { (&right[0].0, &mut left[to].1) };
                deliver(sender, to_id, inbox, term).await;
            }
        }
    }
    // A batch of many messages arrives whole and in order (one connection per ordered pair).
    let to = nodes[1].0.node_id();
    for t in 1..=500u64 {
        assert!(nodes[0].0.send(to, Envelope { group: GroupId::Partition { topic_id: [1; 16], partition: 7 }, ..heartbeat(100_000 + t) }));
    }
    let mut next = 100_001u64;
    while next <= 100_500 {
        let env = tokio::time::timeout(Duration::from_secs(10), nodes[1].1.recv()).await.unwrap().unwrap();
        if env.group == (GroupId::Partition { topic_id: [1; 16], partition: 7 }) {
            assert_eq!(env.msg.raft().unwrap().term(), Term(next));
            next += 1;
        }
    }
    let stats = nodes[0].0.stats();
    assert!(stats.sent >= 500 + 6, "{stats:?}");
    assert_eq!(stats.frames_refused, 0);
}

#[tokio::test]
async fn a_restarted_peer_is_redialed() {
    let mut nodes = cluster(2).await;
    let (b, mut b_inbox) = nodes.pop().unwrap();
    let (a, _a_inbox) = nodes.pop().unwrap();
    deliver(&a, b.node_id(), &mut b_inbox, 1).await;
    let b_addr = b.local_addr();
    drop(b);
    drop(b_inbox);
    // Rebind the same port (the old listener goes away once its task is cancelled).
    let mut restarted = None;
    for _ in 0..100 {
        match Transport::start(config(2, b_addr, [(a.node_id(), a.local_addr())].into())).await {
            Ok(t) => {
                restarted = Some(t);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let (b, mut b_inbox) = restarted.expect("rebind the restarted node's port");
    deliver(&a, b.node_id(), &mut b_inbox, 2).await;
    assert!(a.stats().reconnects >= 1, "{:?}", a.stats());
}

/// Opens a raw connection to `addr`, writes `bytes`, and returns once the transport closes it
/// (what it wrote back before closing is returned).
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the transport did not close a connection that sent {bytes:02x?}");
    reply
}

fn hello(cluster_id: &str, from: u32, to: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let h = Hello { protocol_version: PROTOCOL_VERSION, cluster_id: cluster_id.into(), from: NodeId(from), to: NodeId(to) };
    frame::encode(&Frame::Hello(h), 1 << 20, &mut out).unwrap();
    out
}

fn refusal(reply: &[u8]) -> String {
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    match frame::decode_body(&reply[4..4 + len]).unwrap() {
        Frame::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let mut nodes = cluster(3).await;
    let (c, mut c_inbox) = nodes.pop().unwrap();
    let (b, mut b_inbox) = nodes.pop().unwrap();
    let (a, mut a_inbox) = nodes.pop().unwrap();
    deliver(&b, a.node_id(), &mut a_inbox, 1).await;
    deliver(&a, c.node_id(), &mut c_inbox, 1).await;
    let target = a.local_addr();

    // An oversized length is refused before anything is buffered.
    closed_after(target, &u32::MAX.to_be_bytes()).await;
    // Garbage: a plausible length, an unknown version.
    closed_after(target, &[0, 0, 0, 3, 99, 0, 0]).await;
    // A Kafka ApiVersions request on the wrong port: no strand magic.
    closed_after(target, &[0, 0, 0, 10, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0]).await;
    // Another cluster id: refused with a reason naming both clusters.
    let reason = refusal(&closed_after(target, &hello("other-cluster", 2, 1)).await);
    assert!(reason.contains("other-cluster") && reason.contains(CLUSTER), "{reason}");
    // A node id that is not a peer.
    let reason = refusal(&closed_after(target, &hello(CLUSTER, 9, 1)).await);
    assert!(reason.contains("node id 9"), "{reason}");
    // The right cluster, but dialing the wrong node.
    let reason = refusal(&closed_after(target, &hello(CLUSTER, 2, 3)).await);
    assert!(reason.contains("dialed node 3"), "{reason}");

    assert_eq!(a.stats().frames_refused, 6, "{:?}", a.stats());
    // The real peers kept talking, both ways.
    for term in 2..4 {
        deliver(&b, a.node_id(), &mut a_inbox, term).await;
        deliver(&c, a.node_id(), &mut a_inbox, term).await;
        deliver(&a, b.node_id(), &mut b_inbox, term).await;
        deliver(&a, c.node_id(), &mut c_inbox, term).await;
    }
    assert_eq!(a.stats().frames_refused, 6);
    assert_eq!(b.stats().frames_refused + c.stats().frames_refused, 0);
}

#[tokio::test]
async fn the_queue_to_a_dead_peer_stays_bounded() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = config(1, any_port(), [(NodeId(2), dead)].into());
    cfg.limits.outbound_queue_max = 8;
    let (a, _inbox) = Transport::start(cfg).await.unwrap();
    let mut queued = 0;
    for t in 0..10_000 {
        queued += a.send(NodeId(2), heartbeat(t)) as u64;
    }
    // Sends to a peer that is not configured are dropped too.
    assert!(!a.send(NodeId(7), heartbeat(1)));
    let stats = a.stats();
    assert!(queued <= 8 + 1, "queued {queued}"); // the writer may hold one taken from the queue
    assert_eq!(stats.dropped, 10_000 - queued + 1, "{stats:?}");
    assert_eq!(stats.sent, 0);
    a.shutdown();
    assert!(!a.send(NodeId(2), heartbeat(1)), "a shut-down transport queues nothing");
}
