//! A three-broker cluster of real `strand broker` processes over TCP, driven by librdkafka
//! (the rdkafka crate) and strand's own client: topics created through a broker that is not
//! the controller, records produced and consumed across brokers, `kill -9` of the active
//! controller, a new one taking over and the next CreateTopics succeeding within a bound, and
//! every broker answering Metadata with the same brokers, topics and leaders.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{free_port, Broker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// How long a failover may take before the test calls the cluster wedged (a liveness bound,
/// not a performance figure: `strand bench --cluster` measures that).
const FAILOVER_BOUND: Duration = Duration::from_secs(20);

fn start_cluster(name: &str) -> Vec<Broker> {
    let quorum: Vec<String> = (1..=3).map(|i| format!("{i}@127.0.0.1:{}", free_port())).collect();
    let quorum = quorum.join(",");
    let cluster_id = "MkU3OEVBNTcwNTJENDM2Qg";
    (1..=3)
        .map(|i| {
            let node = format!("node_id = {i}");
            let q = format!("controller_quorum = \"{quorum}\"");
            let c = format!("cluster_id = \"{cluster_id}\"");
            Broker::start_with(&format!("{name}-{i}"), &[&node, &q, &c, "broker_session_timeout_ms = 3000"])
        })
        .collect()
}

/// What one broker says in Metadata: controller, broker ids, and per topic the leader of each
/// partition.
type View = (i32, Vec<i32>, BTreeMap<String, Vec<i32>>);

async fn metadata(addr: &str) -> anyhow::Result<View> {
    let mut client = strand::client::Client::connect(addr).await?;
    let (_, r) = client.send(&MetadataRequest::default().with_topics(None), 12).await?;
    let brokers = r.brokers.iter().map(|b| b.node_id.0).collect();
    let topics = r
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            let mut parts: Vec<_> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
            parts.sort();
            (t.name.as_ref().unwrap().as_str().to_string(), parts.into_iter().map(|(_, l)| l).collect())
        })
        .collect();
    Ok((r.controller_id.0, brokers, topics))
}

/// Poll `f` until it gives `Some`, for at most `bound`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(what: &str, bound: Duration, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {bound:?} waiting for {what}");
}

/// Every running broker's Metadata agrees (same controller, brokers, topics and leaders).
async fn agreed(addrs: &[String]) -> Option<View> {
    let mut views = Vec::new();
    for a in addrs {
        views.push(metadata(a).await.ok()?);
    }
    views.windows(2).all(|w| w[0] == w[1]).then(|| views.remove(0))
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", addr).create().expect("admin")
}

async fn rdkafka_create(addr: &str, name: &str, partitions: i32) -> Result<(), String> {
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))).request_timeout(Some(Duration::from_secs(10)));
    match admin(addr).create_topics([&t], &opts).await {
        Ok(r) => r[0].clone().map(|_| ()).map_err(|(_, e)| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_broker_cluster_serves_clients_and_survives_kill_9_of_the_controller() {
    let mut brokers = start_cluster("cluster3");
    let addrs: Vec<String> = brokers.iter().map(Broker::addr).collect();
    let bootstrap = addrs.join(",");
    let all = until("three brokers in every broker's Metadata", Duration::from_secs(20), || agreed(&addrs)).await;
    assert_eq!(all.1, [1, 2, 3], "{all:?}");
    let controller = all.0;
    assert!((1..=3).contains(&controller));
    let other = if controller == 1 { 2 } else { 1 };
    let other_addr = addrs[other as usize - 1].clone();

    // Created through an admin client bootstrapped from a non-controller broker, and through a
    // CreateTopics sent straight to a non-controller (forwarded to the controller).
    rdkafka_create(&other_addr, "orders", 6).await.expect("create through rdkafka");
    let mut client = strand::client::Client::connect(&other_addr).await.unwrap();
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("direct")))
        .with_num_partitions(3)
        .with_replication_factor(1)]);
    let (_, r) = client.send(&create, 7).await.unwrap();
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let view = until("the topics on every broker", Duration::from_secs(10), || async {
        agreed(&addrs).await.filter(|v| v.2.contains_key("orders") && v.2.contains_key("direct"))
    })
    .await;
    let leaders: std::collections::BTreeSet<i32> = view.2["orders"].iter().copied().collect();
    assert_eq!(leaders, [1, 2, 3].into(), "six partitions led by all three brokers: {view:?}");

    // Records to every partition through the cluster, read back.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for i in 0..60 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        producer
            .send(FutureRecord::to("orders").partition(i % 6).key(&key).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "cluster-it").set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset("orders", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 60 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.insert(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(seen.len(), 60, "every record read back across the three brokers");

    // kill -9 of the active controller: another takes over and the next CreateTopics (sent to
    // a survivor) succeeds within the bound.
    brokers[controller as usize - 1].kill9();
    let survivors: Vec<String> = addrs.iter().enumerate().filter(|(i, _)| *i as i32 + 1 != controller).map(|(_, a)| a.clone()).collect();
    let killed_at = Instant::now();
    let mut attempt = 0;
    until("CreateTopics after the controller's kill", FAILOVER_BOUND, || {
        attempt += 1;
        let name = format!("after-kill-{attempt}");
        let addr = survivors.join(",");
        async move { rdkafka_create(&addr, &name, 2).await.ok() }
    })
    .await;
    eprintln!("CreateTopics succeeded {:?} after kill -9 of controller {controller}", killed_at.elapsed());
    let after = until("the survivors agree on a new controller", FAILOVER_BOUND, || async {
        agreed(&survivors).await.filter(|v| v.0 != controller)
    })
    .await;
    assert!(after.2.keys().any(|t| t.starts_with("after-kill-")));
    // Its partitions have no leader once it is fenced (-1), never another broker.
    let fenced = until("the killed broker fenced", Duration::from_secs(20), || async {
        agreed(&survivors).await.filter(|v| !v.1.contains(&controller))
    })
    .await;
    for (p, l) in fenced.2["orders"].iter().enumerate() {
        assert!(*l == -1 || *l == view.2["orders"][p], "partition {p} moved from {} to {l}", view.2["orders"][p]);
    }

    // Back: every broker agrees again, with the original leaders.
    brokers[controller as usize - 1].restart();
    let healed = until("all three agree again", Duration::from_secs(30), || async {
        agreed(&addrs).await.filter(|v| v.1 == [1, 2, 3] && v.2["orders"] == view.2["orders"])
    })
    .await;
    assert_eq!(healed.2["direct"], view.2["direct"]);
    for b in &mut brokers {
        b.stop();
    }
}
