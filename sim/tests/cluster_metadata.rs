//! The metadata quorum inside the real broker (`server::start` with `controller_quorum`) on
//! three or five simulated nodes (the seed picks), each with its own SimDisk (surviving its
//! kills, losing what was not synced) and its own skewed, drifting clock, over madsim's
//! network. A client sends CreateTopics and DeleteTopics to random brokers (a non-controller
//! forwards them to the active controller) while a nemesis kills nodes with power loss, clogs
//! nodes and links, and pauses nodes.
//!
//! The metadata log is compacted to a snapshot every 20 entries, so restarted nodes start from
//! snapshots and lagging ones are sent them. Checked: at most one controller leader per term; every broker's metadata image converges to
//! the same one after heal (with only the nemesis's own restarts); every acknowledged create is
//! in it with its partition count unless a delete of it may have happened, every acknowledged
//! delete's topic is absent; a CreateTopics after heal is acknowledged (liveness); every broker
//! registered and unfenced. Run by ci/run.sh:
//! `RUSTFLAGS="--cfg madsim" cargo test -p strand-sim --test cluster_metadata`.
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use madsim::rand::Rng;
use madsim::runtime::Handle;
use madsim::time::sleep;
use strand::client::Client;
use strand::config::BrokerConfig;
use strand::meta::MetadataImage;
use strand::raft::Role;
use strand::runtime::Runtime;
use strand::server::Broker;
use strand_sim::clock::SimClock;
use strand_sim::disk::SimDisk;

/// How many nodes this seed runs (3 or 5), drawn at the start of the test.
static NODES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(3);

fn nodes() -> u32 {
    NODES.load(std::sync::atomic::Ordering::SeqCst)
}

fn ip(id: u32) -> IpAddr {
    IpAddr::from([10, 0, 9, id as u8])
}

fn client_addr(id: u32) -> SocketAddr {
    SocketAddr::new(ip(id), 9092)
}

#[derive(Default)]
struct History {
    /// Each node's broker while it runs.
    brokers: BTreeMap<u32, Weak<Broker>>,
    /// Snapshots the nodes' images were rebuilt from, per node and start (the highest count seen).
    snapshots: BTreeMap<(u32, u64), u64>,
    starts: BTreeMap<u32, u64>,
    /// term -> the node that led it
    leaders: BTreeMap<u64, u32>,
    /// Acknowledged creates: topic -> partitions (a later acknowledged delete removes it).
    created: BTreeMap<String, i32>,
    /// Creates acknowledged in all.
    creates_acked: u64,
    /// Deletes acknowledged, and those sent without a clear answer (they may have happened).
    deleted: BTreeSet<String>,
    maybe_deleted: BTreeSet<String>,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<History>>;

async fn node(id: u32, disk: SimDisk, clock: SimClock, history: Shared) {
    let runtime = Runtime { disk: Arc::new(disk), clock: Arc::new(clock) };
    let quorum: Vec<String> = (1..=nodes()).map(|i| format!("{i}@{}:7200", ip(i))).collect();
    let config = BrokerConfig {
        listen: client_addr(id),
        data_dir: "/data".into(),
        node_id: id as i32,
        controller_quorum: Some(quorum.join(",")),
        cluster_id: Some("c2ltdWxhdGVkLWNsdXN0ZQ".into()),
        broker_session_timeout_ms: 3_000,
        // Snapshots often, so restarted and lagging nodes start from one or are sent one.
        metadata_snapshot_entries: 20,
        offsets_topic_num_partitions: 3,
        ..BrokerConfig::default()
    };
    let server = match strand::server::start(runtime, config).await {
        Ok(s) => s,
        // A node that cannot start (its disk) stays down until the nemesis restarts it.
        Err(e) => {
            history.lock().unwrap().violations.push(format!("node {id} did not start: {e:#}"));
            return;
        }
    };
    let broker = server.broker().clone();
    let start = {
        let mut h = history.lock().unwrap();
        h.brokers.insert(id, Arc::downgrade(&broker));
        let n = h.starts.entry(id).or_default();
        *n += 1;
        *n
    };
    loop {
        let loaded = broker.topics.snapshots_loaded();
        history.lock().unwrap().snapshots.insert((id, start), loaded);
        let status = broker.topics.quorum().unwrap().status();
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
        sleep(Duration::from_millis(20)).await;
    }
}

enum Outcome {
    Ok,
    /// Refused with this error code: it did not happen.
    Refused(i16),
    /// No clear answer: it may have happened.
    Unknown,
}

async fn create(broker: u32, name: &str, partitions: i32) -> Outcome {
    let req = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let answer = tokio::time::timeout(Duration::from_secs(8), async {
        let mut c = Client::connect(&client_addr(broker).to_string()).await.ok()?;
        c.send(&req, 7).await.ok()
    })
    .await;
    match answer {
        Ok(Some((_, r))) => match r.topics.first().map(|t| t.error_code) {
            Some(0) => Outcome::Ok,
            // REQUEST_TIMED_OUT and NOT_CONTROLLER are ambiguous (the change may still commit).
            Some(7) | Some(41) | None => Outcome::Unknown,
            Some(e) => Outcome::Refused(e),
        },
        _ => Outcome::Unknown,
    }
}

async fn delete(broker: u32, name: &str) -> Outcome {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))]);
    let answer = tokio::time::timeout(Duration::from_secs(8), async {
        let mut c = Client::connect(&client_addr(broker).to_string()).await.ok()?;
        c.send(&req, 6).await.ok()
    })
    .await;
    match answer {
        Ok(Some((_, r))) => match r.responses.first().map(|t| t.error_code) {
            Some(0) => Outcome::Ok,
            Some(7) | Some(41) | None => Outcome::Unknown,
            Some(e) => {
                eprintln!("delete of {name} via {broker}: {e} {:?}", r.responses.first().and_then(|t| t.error_message.as_ref()));
                Outcome::Refused(e)
            }
        },
        _ => Outcome::Unknown,
    }
}

async fn admin_client(history: Shared, stop: Arc<Mutex<bool>>) {
    let mut n = 0;
    while !*stop.lock().unwrap() {
        n += 1;
        let (broker, del, partitions) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(1..=nodes()), rng.gen_bool(0.3), rng.gen_range(1..=3))
        };
        let victim = if del { history.lock().unwrap().created.keys().next().cloned() } else { None };
        match victim {
            Some(name) => {
                let outcome = delete(broker, &name).await;
                let mut h = history.lock().unwrap();
                match outcome {
                    Outcome::Ok => {
                        h.created.remove(&name);
                        h.deleted.insert(name);
                    }
                    Outcome::Refused(e) => h.violations.push(format!("delete of acknowledged topic {name} refused with {e}")),
                    Outcome::Unknown => {
                        h.created.remove(&name);
                        h.maybe_deleted.insert(name);
                    }
                }
            }
            None => {
                let name = format!("t{n}");
                if let Outcome::Ok = create(broker, &name, partitions).await {
                    let mut h = history.lock().unwrap();
                    h.created.insert(name, partitions);
                    h.creates_acked += 1;
                }
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn images(history: &Shared) -> Vec<(u32, Vec<strand::meta::MetadataRecord>)> {
    let h = history.lock().unwrap();
    h.brokers.iter().filter_map(|(id, b)| b.upgrade().map(|b| (*id, b.topics.with_image(MetadataImage::snapshot)))).collect()
}

#[madsim::test]
async fn cluster_metadata_converges_under_crashes_and_partitions() {
    let handle = Handle::current();
    let history: Shared = Arc::default();
    let mut ids = Vec::new();
    let mut disks = Vec::new();
    let n = if madsim::rand::thread_rng().gen_bool(0.5) { 5 } else { 3 };
    NODES.store(n, std::sync::atomic::Ordering::SeqCst);
    eprintln!("cluster_metadata: {n} nodes");
    for id in 1..=nodes() {
        let (disk, clock, h) = (SimDisk::new(), SimClock::new(), history.clone());
        {
            let mut rng = madsim::rand::thread_rng();
            clock.set_skew_ms(rng.gen_range(-2_000..2_000));
            clock.set_drift_ppm(rng.gen_range(-200..200));
        }
        disks.push(disk.clone());
        let node = handle
            .create_node()
            .name(format!("broker-{id}"))
            .ip(ip(id))
            .init(move || node(id, disk.clone(), clock.clone(), h.clone()))
            .build();
        ids.push(node.id());
    }
    let stop = Arc::new(Mutex::new(false));
    let client = handle.create_node().name("admin").ip(IpAddr::from([10, 0, 9, 100])).build();
    let admin = client.spawn(admin_client(history.clone(), stop.clone()));
    sleep(Duration::from_secs(5)).await;
    // (Counted, not looked up in `created`: the client deletes what it created, so every topic
    // acknowledged so far may be gone again; seed 1796692343668438061 deleted them all.)
    assert!(history.lock().unwrap().creates_acked > 0, "no topic created in 5 s without faults");

    strand_sim::nemesis::kills_and_clogs(&ids, &disks, 10, 300..4000, 100..2000).await;

    // Heal: nothing is restarted. The cluster must take a new create, then converge.
    sleep(Duration::from_secs(5)).await;
    *stop.lock().unwrap() = true;
    let _ = admin.await;
    // From the client node: madsim's main node has no address to connect from.
    let h2 = history.clone();
    let live = client
        .spawn(async move {
            for attempt in 0..20 {
                match create((attempt % nodes()) + 1, &format!("after-heal-{attempt}"), 1).await {
                    Outcome::Ok => {
                        h2.lock().unwrap().created.insert(format!("after-heal-{attempt}"), 1);
                        return true;
                    }
                    Outcome::Refused(e) => eprintln!("after heal: create refused with {e}"),
                    Outcome::Unknown => eprintln!("after heal: create without a clear answer"),
                }
                sleep(Duration::from_millis(500)).await;
            }
            false
        })
        .await
        .expect("client task");
    if !live {
        let h = history.lock().unwrap();
        let states: Vec<String> = h
            .brokers
            .iter()
            .filter_map(|(id, b)| {
                b.upgrade().map(|b| {
                    let brokers: Vec<_> = b.topics.with_image(|i| i.brokers().map(|x| (x.registration.node_id.0, x.fenced)).collect());
                    format!("node {id}: {:?} brokers {brokers:?} topics {}", b.topics.quorum().unwrap().status(), b.topics.all().len())
                })
            })
            .collect();
        panic!("no CreateTopics acknowledged within 20 attempts after heal (liveness); quorum: {states:#?}");
    }
    let mut converged = None;
    for _ in 0..200 {
        let all = images(&history);
        let unfenced = all.first().is_some_and(|(_, snap)| {
            let image = MetadataImage::from_snapshot(snap).unwrap();
            image.brokers().filter(|b| !b.fenced).count() == nodes() as usize
        });
        if all.len() == nodes() as usize && unfenced && all.windows(2).all(|w| w[0].1 == w[1].1) {
            converged = Some(all[0].1.clone());
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    let h = history.lock().unwrap();
    assert!(h.violations.is_empty(), "violations: {:#?}", h.violations);
    let snapshot = converged.unwrap_or_else(|| {
        let all = images(&history);
        panic!("the brokers' images did not converge with every broker unfenced within 20 s after heal: {all:#?}")
    });
    let image = MetadataImage::from_snapshot(&snapshot).unwrap();
    for (name, partitions) in &h.created {
        let t = image.topic(name).unwrap_or_else(|| panic!("acknowledged topic {name} is missing after heal"));
        assert_eq!(t.partition_count(), *partitions, "topic {name}");
    }
    for name in &h.deleted {
        assert!(image.topic(name).is_none(), "deleted topic {name} is back");
    }
    // No node keeps the data of a topic that is gone (deleted while it was up, or while it was
    // down and learned from a snapshot).
    for (i, disk) in disks.iter().enumerate() {
        for (path, _, _) in disk.describe() {
            let Some(dir) = path.strip_prefix("/data/").and_then(|p| p.split('/').next()) else { continue };
            let Some((topic, p)) = dir.rsplit_once('-') else { continue };
            if p.parse::<u32>().is_ok() && path.contains(&format!("{dir}/")) && image.topic(topic).is_none() {
                panic!("node {} keeps {path} of a topic that is gone", i + 1);
            }
        }
    }
    assert!(image.cluster_id().is_some());
    // The run's fingerprint, for ci/run.sh's determinism check: two processes with one seed
    // must print the same line. (madsim's own in-process check runs the seed twice in one
    // process, where process-wide state of the broker's dependencies differs between the runs.)
    let mut fingerprint = format!("{:?}|{:?}|{:?}|{:?}", h.leaders, h.created, h.deleted, h.maybe_deleted);
    fingerprint.push_str(&format!("|{snapshot:?}|{:?}", madsim::time::Instant::now()));
    println!("snapshots loaded: {}", h.snapshots.values().sum::<u64>());
    println!("cluster_metadata fingerprint {:08x}", crc32c::crc32c(fingerprint.as_bytes()));
}
