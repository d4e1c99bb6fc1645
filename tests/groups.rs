//! Consumer groups with librdkafka (the rdkafka crate) against the real broker process:
//! queue semantics within a group while members join, leave and die; pub-sub across groups;
//! static membership; cooperative-sticky; KIP-848 `group.protocol=consumer`; resuming from
//! committed offsets after a broker restart.
#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Test brokers skip `group.initial.rebalance.delay.ms` (3 s by default, as Kafka).
const BROKER_CONFIG: &[&str] = &["group_initial_rebalance_delay_ms = 0", "group_consumer_heartbeat_interval_ms = 500"];

fn create_topic(broker: &Broker, name: &str, partitions: i32) {
    let out = Command::new(common::strand_bin())
        .args(["topic", "create", name, "-p", &partitions.to_string(), "-b", &broker.addr()])
        .output()
        .unwrap();
    assert!(out.status.success(), "create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Produce `n` records round-robin over `partitions`, `per_tick` every `tick`; returns the
/// (partition, offset) of every acknowledged record.
fn produce(addr: &str, topic: &str, partitions: i32, n: usize, per_tick: usize, tick: Duration) -> BTreeSet<(i32, i64)> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let mut sent = 0usize;
    while sent < n {
        for _ in 0..per_tick.min(n - sent) {
            let value = format!("v{sent}");
            let key = format!("k{sent}");
            producer
                .send(BaseRecord::<String, String>::to(topic).partition((sent % partitions as usize) as i32).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("enqueue");
            sent += 1;
        }
        producer.poll(tick);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    // Offsets: a fresh single-partition read of the log ends says what was stored.
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", addr).set("group.id", "offsets-probe").create().unwrap();
    let mut out = BTreeSet::new();
    for p in 0..partitions {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        out.extend((lo..hi).map(|o| (p, o)));
    }
    assert_eq!(out.len(), n, "every produced record is in the log");
    out
}

/// What one member did with one record.
#[derive(Debug, Clone)]
struct Consumption {
    member: String,
    partition: i32,
    offset: i64,
    committed: bool,
}

#[derive(Default)]
struct Events {
    assigned: AtomicUsize,
    revoked: AtomicUsize,
}

struct Ctx {
    events: Arc<Events>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => self.events.assigned.fetch_add(1, Ordering::SeqCst),
            Rebalance::Revoke(_) => self.events.revoked.fetch_add(1, Ordering::SeqCst),
            Rebalance::Error(_) => 0,
        };
    }
}

struct Member {
    name: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    events: Arc<Events>,
}

impl Member {
    /// Join `group`, consume `topic`, commit each record synchronously after reading it.
    fn start(addr: &str, group: &str, topic: &str, name: &str, extra: &[(&str, &str)], log: Arc<Mutex<Vec<Consumption>>>) -> Member {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", addr)
            .set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        let classic = !extra.iter().any(|(k, v)| *k == "group.protocol" && *v == "consumer");
        if classic {
            config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "500");
        }
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let events = Arc::new(Events::default());
        let consumer: BaseConsumer<Ctx> = config.create_with_context(Ctx { events: events.clone() }).expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let (stop2, assignment2, name2) = (stop.clone(), assignment.clone(), name.to_string());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => eprintln!("{name2}: consumer error: {e}"),
                    Some(Ok(m)) => {
                        let committed = consumer.commit_message(&m, CommitMode::Sync).is_ok();
                        log.lock().unwrap().push(Consumption { member: name2.clone(), partition: m.partition(), offset: m.offset(), committed });
                    }
                }
                if let Ok(a) = consumer.assignment() {
                    *assignment2.lock().unwrap() = a.elements().iter().map(|e| e.partition()).collect();
                }
            }
            // Dropping closes the consumer as an application's close() does: a dynamic member
            // leaves the group (LeaveGroup / epoch -1), a static one does not.
            drop(consumer);
        });
        Member { name: name.to_string(), stop, handle: Some(handle), assignment, events }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
    }
}

/// Wait until the members' assignments are disjoint and cover 0..partitions.
fn wait_for_cover(broker: &Broker, members: &[&Member], partitions: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let sets: Vec<(String, BTreeSet<i32>)> = members.iter().map(|m| (m.name.clone(), m.assignment())).collect();
        let total: usize = sets.iter().map(|(_, s)| s.len()).sum();
        let union: BTreeSet<i32> = sets.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        if total == partitions as usize && union == (0..partitions).collect() && sets.iter().all(|(_, s)| !s.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "no stable assignment covering {partitions} partitions: {sets:?}\n{}", broker.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until every produced record was consumed; then check that no record was committed
/// twice (two owners of one partition in one generation would do that) and that the group's
/// committed offsets reach the end of every partition.
fn check_consumed(broker: &Broker, group: &str, topic: &str, produced: &BTreeSet<(i32, i64)>, log: &Mutex<Vec<Consumption>>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen: BTreeSet<(i32, i64)> = log.lock().unwrap().iter().map(|c| (c.partition, c.offset)).collect();
        let missing: Vec<_> = produced.difference(&seen).take(5).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "records never consumed (first few): {missing:?}\n{}", broker.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = log.lock().unwrap();
    let mut committed: BTreeMap<(i32, i64), Vec<&str>> = BTreeMap::new();
    for c in log.iter().filter(|c| c.committed) {
        committed.entry((c.partition, c.offset)).or_default().push(&c.member);
    }
    let twice: Vec<_> = committed.iter().filter(|(_, who)| who.len() > 1).take(5).collect();
    assert!(twice.is_empty(), "records consumed and committed more than once: {twice:?}");
    assert!(log.iter().all(|c| produced.contains(&(c.partition, c.offset))), "a consumed record was never produced");
    let ends: BTreeMap<i32, i64> = produced.iter().fold(BTreeMap::new(), |mut m, (p, o)| {
        let e = m.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
        m
    });
    let got = committed_offsets(&broker.addr(), group, topic, ends.len() as i32);
    assert_eq!(got, ends, "committed offsets are the log end of every partition");
}

fn committed_offsets(addr: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", addr).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    // Partitions without a committed offset (Offset::Invalid) are left out.
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            Offset::Invalid => None,
            other => panic!("partition {}: {other:?}", e.partition()),
        })
        .collect()
}

/// A kcat balanced consumer in its own process, to be killed with SIGKILL.
fn kcat_member(addr: &str, group: &str, topic: &str) -> Child {
    Command::new("kcat")
        .args(["-b", addr, "-G", group, topic, "-q", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-X", "enable.auto.commit=false"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat is installed by ci/setup.sh")
}

#[test]
fn queue_semantics_while_members_join_leave_and_die() {
    let broker = Broker::start_with("groups-queue", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "q", 4);
    let log = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let addr = addr.clone();
        std::thread::spawn(move || produce(&addr, "q", 4, 4000, 40, Duration::from_millis(50)))
    };
    let a = Member::start(&addr, "qg", "q", "a", &[], log.clone());
    let b = Member::start(&addr, "qg", "q", "b", &[], log.clone());
    wait_for_cover(&broker, &[&a, &b], 4, Duration::from_secs(30));
    let c = Member::start(&addr, "qg", "q", "c", &[], log.clone());
    wait_for_cover(&broker, &[&a, &b, &c], 4, Duration::from_secs(30));
    a.stop();
    wait_for_cover(&broker, &[&b, &c], 4, Duration::from_secs(30));
    // A member in another process takes partitions, then dies without leaving: its session
    // times out and the survivors take everything back from the committed offsets.
    let mut killed = kcat_member(&addr, "qg", "q");
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.assignment().len() + c.assignment().len() == 4 {
        assert!(Instant::now() < deadline, "kcat never got a partition:\n{}", broker.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    killed.kill().unwrap(); // SIGKILL: no LeaveGroup
    killed.wait().unwrap();
    wait_for_cover(&broker, &[&b, &c], 4, Duration::from_secs(30));
    let produced = producer.join().unwrap();
    check_consumed(&broker, "qg", "q", &produced, &log, Duration::from_secs(60));
    b.stop();
    c.stop();
}

#[test]
fn pub_sub_across_groups_queue_within_one() {
    let broker = Broker::start_with("groups-pubsub", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "ps", 4);
    let log_a = Arc::new(Mutex::new(Vec::new()));
    let log_b = Arc::new(Mutex::new(Vec::new()));
    let a1 = Member::start(&addr, "ga", "ps", "a1", &[], log_a.clone());
    let a2 = Member::start(&addr, "ga", "ps", "a2", &[], log_a.clone());
    let b1 = Member::start(&addr, "gb", "ps", "b1", &[], log_b.clone());
    wait_for_cover(&broker, &[&a1, &a2], 4, Duration::from_secs(30));
    wait_for_cover(&broker, &[&b1], 4, Duration::from_secs(30));
    let produced = produce(&addr, "ps", 4, 1000, 200, Duration::from_millis(10));
    check_consumed(&broker, "ga", "ps", &produced, &log_a, Duration::from_secs(60));
    check_consumed(&broker, "gb", "ps", &produced, &log_b, Duration::from_secs(60));
    let per_member: BTreeMap<String, usize> = log_a.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.member.clone()).or_default() += 1;
        m
    });
    assert_eq!(per_member.len(), 2, "both members of ga received records: {per_member:?}");
    assert_eq!(per_member.values().sum::<usize>(), 1000, "ga's members shared the records, none twice");
    a1.stop();
    a2.stop();
    b1.stop();
}

#[test]
fn static_member_restart_causes_no_rebalance() {
    let broker = Broker::start_with("groups-static", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "st", 4);
    let log = Arc::new(Mutex::new(Vec::new()));
    let s1 = Member::start(&addr, "sg", "st", "s1", &[("group.instance.id", "i1"), ("session.timeout.ms", "20000")], log.clone());
    let s2 = Member::start(&addr, "sg", "st", "s2", &[("group.instance.id", "i2"), ("session.timeout.ms", "20000")], log.clone());
    wait_for_cover(&broker, &[&s1, &s2], 4, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let before = s2.events.assigned.load(Ordering::SeqCst) + s2.events.revoked.load(Ordering::SeqCst);
    let s1_parts = s1.assignment();
    // A static member does not send LeaveGroup on close; it comes back under the same
    // instance id well within its session timeout.
    s1.stop();
    let s1 = Member::start(&addr, "sg", "st", "s1-again", &[("group.instance.id", "i1"), ("session.timeout.ms", "20000")], log.clone());
    wait_for_cover(&broker, &[&s1, &s2], 4, Duration::from_secs(30));
    assert_eq!(s1.assignment(), s1_parts, "the restarted static member got its old partitions back");
    std::thread::sleep(Duration::from_secs(2));
    let after = s2.events.assigned.load(Ordering::SeqCst) + s2.events.revoked.load(Ordering::SeqCst);
    assert_eq!(before, after, "the other member saw no rebalance");
    s1.stop();
    s2.stop();
}

#[test]
fn cooperative_sticky_incremental_rebalance() {
    let broker = Broker::start_with("groups-coop", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "co", 6);
    let log = Arc::new(Mutex::new(Vec::new()));
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let producer = {
        let addr = addr.clone();
        std::thread::spawn(move || produce(&addr, "co", 6, 3000, 30, Duration::from_millis(50)))
    };
    let c1 = Member::start(&addr, "cg", "co", "c1", &coop, log.clone());
    let c2 = Member::start(&addr, "cg", "co", "c2", &coop, log.clone());
    wait_for_cover(&broker, &[&c1, &c2], 6, Duration::from_secs(30));
    let (k1, k2) = (c1.assignment(), c2.assignment());
    let c3 = Member::start(&addr, "cg", "co", "c3", &coop, log.clone());
    wait_for_cover(&broker, &[&c1, &c2, &c3], 6, Duration::from_secs(30));
    // Sticky: the old members kept what they did not give to the newcomer.
    assert!(c1.assignment().is_subset(&k1) && c2.assignment().is_subset(&k2), "{k1:?}->{:?} {k2:?}->{:?}", c1.assignment(), c2.assignment());
    assert_eq!(c3.assignment().len(), 2);
    let produced = producer.join().unwrap();
    check_consumed(&broker, "cg", "co", &produced, &log, Duration::from_secs(60));
    c1.stop();
    c2.stop();
    c3.stop();
}

#[test]
fn kip848_consumer_protocol() {
    let broker = Broker::start_with("groups-kip848", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "nk", 4);
    let log = Arc::new(Mutex::new(Vec::new()));
    let next = [("group.protocol", "consumer")];
    let producer = {
        let addr = addr.clone();
        std::thread::spawn(move || produce(&addr, "nk", 4, 2000, 40, Duration::from_millis(50)))
    };
    let m1 = Member::start(&addr, "ng", "nk", "m1", &next, log.clone());
    let m2 = Member::start(&addr, "ng", "nk", "m2", &next, log.clone());
    wait_for_cover(&broker, &[&m1, &m2], 4, Duration::from_secs(30));
    let m3 = Member::start(&addr, "ng", "nk", "m3", &next, log.clone());
    wait_for_cover(&broker, &[&m1, &m2, &m3], 4, Duration::from_secs(30));
    m1.stop();
    wait_for_cover(&broker, &[&m2, &m3], 4, Duration::from_secs(30));
    let produced = producer.join().unwrap();
    check_consumed(&broker, "ng", "nk", &produced, &log, Duration::from_secs(60));
    // ConsumerGroupDescribe agrees with what the members hold.
    let described = describe_consumer_group(&addr, "ng");
    let mut want: Vec<(String, BTreeSet<i32>)> = vec![("m2".into(), m2.assignment()), ("m3".into(), m3.assignment())];
    want.sort();
    assert_eq!(described, want);
    m2.stop();
    m3.stop();
}

/// (client id, assigned partitions) of each member, from ConsumerGroupDescribe.
fn describe_consumer_group(addr: &str, group: &str) -> Vec<(String, BTreeSet<i32>)> {
    use kafka_protocol::messages::{ConsumerGroupDescribeRequest, GroupId};
    use kafka_protocol::protocol::StrBytes;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = strand::client::Client::connect(addr).await.unwrap();
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let (_, r) = c.send(&req, 1).await.unwrap();
        let g = &r.groups[0];
        assert_eq!(g.error_code, 0);
        assert_eq!(g.group_state.as_str(), "Stable");
        let mut out: Vec<(String, BTreeSet<i32>)> = g
            .members
            .iter()
            .map(|m| (m.client_id.to_string(), m.assignment.topic_partitions.iter().flat_map(|t| t.partitions.iter().copied()).collect()))
            .collect();
        out.sort();
        out
    })
}

#[test]
fn committed_offsets_survive_a_broker_crash() {
    let mut broker = Broker::start_with("groups-restart", BROKER_CONFIG);
    let addr = broker.addr();
    create_topic(&broker, "rs", 2);
    let produced = produce(&addr, "rs", 2, 200, 200, Duration::from_millis(10));
    let log = Arc::new(Mutex::new(Vec::new()));
    let m = Member::start(&addr, "rg", "rs", "r1", &[], log.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < 60 {
        assert!(Instant::now() < deadline, "consumed only {}", log.lock().unwrap().len());
        std::thread::sleep(Duration::from_millis(20));
    }
    m.stop();
    let acknowledged: BTreeMap<i32, i64> = log.lock().unwrap().iter().filter(|c| c.committed).fold(BTreeMap::new(), |mut acc, c| {
        let e = acc.entry(c.partition).or_insert(0);
        *e = (*e).max(c.offset + 1);
        acc
    });
    broker.kill9();
    broker.restart();
    let after = committed_offsets(&addr, "rg", "rs", 2);
    for (p, o) in &acknowledged {
        assert_eq!(after.get(p), Some(o), "partition {p}: the last acknowledged commit survived the crash");
    }
    // A new member resumes from there and reads the rest exactly once.
    let log2 = Arc::new(Mutex::new(Vec::new()));
    let m = Member::start(&addr, "rg", "rs", "r2", &[], log2.clone());
    let rest: BTreeSet<(i32, i64)> = produced.iter().filter(|(p, o)| *o >= *acknowledged.get(p).unwrap_or(&0)).copied().collect();
    check_consumed(&broker, "rg", "rs", &rest, &log2, Duration::from_secs(60));
    assert_eq!(log2.lock().unwrap().len(), rest.len(), "nothing committed before the crash was delivered again");
    m.stop();
}

/// KIP-848 regex subscription: `subscribe("^rx-.*")` with `group.protocol=consumer` gets the
/// partitions of every matching topic (whole names only) from the coordinator.
#[test]
fn kip848_regex_subscription() {
    let broker = Broker::start_with("groups-regex", BROKER_CONFIG);
    let addr = broker.addr();
    for (t, p) in [("rx-a", 2), ("rx-b", 1), ("not-rx-a", 1)] {
        create_topic(&broker, t, p);
        produce(&addr, t, p, 10 * p as usize, 100, Duration::from_millis(10));
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("group.id", "rg-regex")
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&["^rx-.*"]).unwrap();
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().sum::<usize>() < 30 {
        assert!(Instant::now() < deadline, "read {got:?} of 20 rx-a and 10 rx-b records\n{}", broker.log_tail());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            *got.entry(m.topic().to_string()).or_default() += 1;
        }
    }
    // A little longer: nothing from the topic that only contains the pattern.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            *got.entry(m.topic().to_string()).or_default() += 1;
        }
    }
    assert_eq!(got, [("rx-a".to_string(), 20), ("rx-b".to_string(), 10)].into());
    // The coordinator resolved the pattern (librdkafka sends it as subscribed_topic_regex).
    use kafka_protocol::messages::{ConsumerGroupDescribeRequest, GroupId};
    use kafka_protocol::protocol::StrBytes;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (regex, names) = rt.block_on(async {
        let mut client = strand::client::Client::connect(&addr).await.unwrap();
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_static_str("rg-regex"))]);
        let (_, r) = client.send(&req, 1).await.unwrap();
        let m = &r.groups[0].members[0];
        (m.subscribed_topic_regex.as_ref().map(|s| s.to_string()), m.subscribed_topic_names.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    });
    assert!(regex.as_deref().is_some_and(|r| r.contains("^rx-.*")), "regex {regex:?}");
    assert!(names.is_empty(), "names {names:?}");
}
