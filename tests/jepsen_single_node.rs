//! Jepsen-style check of one real broker process with stock clients: librdkafka producers
//! (acks=all, one of them idempotent) and a librdkafka consumer reading along, while a nemesis
//! kills the broker with SIGKILL and restarts it, and pauses it with SIGSTOP / SIGCONT. After
//! healing, the whole partition is read back and the history goes through the simulator's
//! checkers (`strand_sim::check`): every acknowledged record at its offset, one value per
//! offset, dense offsets, no phantom records, a high watermark that never goes back, and the
//! idempotent producer's records stored once.
//!
//! A process kill keeps the page cache, so this checks the protocol, recovery and restart paths
//! under real clients and real timing; losing unsynced writes (power loss) is the simulator's
//! job (`sim/`).
#![cfg(not(madsim))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strand_sim::check::{self, History};

const TOPIC: &str = "jepsen";
const PRODUCERS: usize = 3;
/// Seconds of faults.
const FAULT_SECS: u64 = 20;

/// A small xorshift: the nemesis schedule differs per run (the seed is printed) but needs no
/// extra crate.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

async fn produce(addr: String, id: usize, idempotent: bool, history: Arc<Mutex<History>>, stop: Arc<AtomicBool>) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &addr)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "8000")
        .set("request.timeout.ms", "3000")
        .set("reconnect.backoff.max.ms", "500");
    if idempotent {
        c.set("enable.idempotence", "true");
    }
    let producer: FutureProducer = c.create().expect("producer");
    let mut n = 0u64;
    let mut in_flight = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        // A few records in flight at a time, awaited together.
        for _ in 0..8 {
            let value = format!("p{id}-{n}");
            n += 1;
            {
                let mut h = history.lock().unwrap();
                h.attempted.insert(value.clone());
                if idempotent {
                    h.idempotent_values.insert(value.clone());
                }
            }
            let record = FutureRecord::<(), String>::to(TOPIC).partition(0).payload(&value);
            match producer.send_result(record) {
                Ok(f) => in_flight.push((value, f)),
                Err((e, _)) => panic!("producer {id}: enqueue failed: {e}"),
            }
        }
        for (value, f) in in_flight.drain(..) {
            match f.await {
                Ok(Ok(delivery)) => history.lock().unwrap().acked.push((delivery.offset, vec![value])),
                Ok(Err(_)) => {
                    // Not acknowledged: it may or may not be in the log. A fatal error of the
                    // idempotent producer (e.g. a sequence the broker lost) is a finding,
                    // reported with the history.
                    if let Some((code, reason)) = producer.client().fatal_error() {
                        history.lock().unwrap().idempotent_errors.push(format!("producer {id}: fatal {code:?}: {reason}"));
                        return;
                    }
                }
                Err(_) => panic!("producer {id}: delivery future cancelled"),
            }
        }
    }
}

fn consumer(addr: &str, group: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    c
}

/// Read along until `stop`, recording every record and the high watermark of every fetch
/// response (librdkafka caches it per response, in the order they arrive; a ListOffsets answer
/// is not mixed in, as it can be newer than a fetch response still on its way).
fn read_along(addr: String, history: Arc<Mutex<History>>, stop: Arc<AtomicBool>) {
    let c = consumer(&addr, "jepsen-reader");
    let mut last_seen = -1;
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            history.lock().unwrap().observed.push((m.offset(), v));
        }
        if let Some(high) = cached_high_watermark(&c) {
            if high != last_seen {
                last_seen = high;
                history.lock().unwrap().high_watermarks.push(high);
            }
        }
    }
}

/// The high watermark of the last fetch response librdkafka got (its cache; no request).
/// rdkafka's safe API only offers `fetch_watermarks`, a ListOffsets round trip.
fn cached_high_watermark(c: &BaseConsumer) -> Option<i64> {
    let topic = std::ffi::CString::new(TOPIC).expect("no NUL");
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `c` lives; the topic is a NUL-terminated string
    // that outlives the call; low and high are valid out-pointers.
    let err = unsafe { rdkafka::bindings::rd_kafka_get_watermark_offsets(c.client().native_ptr(), topic.as_ptr(), 0, &mut low, &mut high) };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// The whole partition after healing, up to its high watermark.
fn final_read(addr: &str) -> Vec<(i64, String)> {
    let c = consumer(addr, "jepsen-final");
    let (_, high) = c.fetch_watermarks(TOPIC, 0, Duration::from_secs(20)).expect("final watermarks");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    while log.last().map_or(0, |(o, _): &(i64, String)| o + 1) < high {
        assert!(Instant::now() < deadline, "final read: {} of {high} records before the deadline", log.len());
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => log.push((m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())),
            Some(Err(e)) => panic!("final read: {e}"),
            None => {}
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread")]
async fn one_broker_under_kill_and_pause_keeps_every_acknowledged_record() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("nemesis seed {seed}");
    let broker = Broker::start("jepsen");
    let addr = broker.addr();
    let (ok, out, err) = common::strand_cli(&broker, &["topic", "create", TOPIC, "-p", "1"], None);
    assert!(ok, "{out}{err}");

    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS).map(|id| tokio::spawn(produce(addr.clone(), id, id == 0, history.clone(), stop.clone()))).collect();
    let reader = {
        let (addr, history, stop) = (addr.clone(), history.clone(), stop.clone());
        std::thread::spawn(move || read_along(addr, history, stop))
    };

    // The nemesis, on a blocking thread: kill -9 and restart, or pause and resume.
    let nemesis = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        let mut rng = Rng(seed);
        let (mut kills, mut pauses) = (0, 0);
        let end = Instant::now() + Duration::from_secs(FAULT_SECS);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
            if rng.below(2) == 0 {
                broker.kill9();
                std::thread::sleep(Duration::from_millis(rng.below(1000)));
                broker.restart();
                kills += 1;
            } else {
                let pid = broker.pid().expect("running");
                signal(pid, "-STOP");
                std::thread::sleep(Duration::from_millis(200 + rng.below(2500)));
                signal(pid, "-CONT");
                pauses += 1;
            }
        }
        (broker, kills, pauses)
    });
    let (mut broker, kills, pauses) = nemesis.await.unwrap();
    assert!(broker.is_running(), "the broker died outside the nemesis:\n{}", broker.log_tail());

    // Heal: faults are over; producers finish what they have in flight.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        tokio::time::timeout(Duration::from_secs(60), p).await.expect("a producer did not finish after healing").unwrap();
    }
    reader.join().unwrap();
    let log = final_read(&addr);
    let mut h = history.lock().unwrap().clone();
    h.final_log = log;
    let acked = h.acked.len();
    println!("{kills} kills, {pauses} pauses; {} records attempted, {acked} acknowledged, {} in the log, {} read along", h.attempted.len(), h.final_log.len(), h.observed.len());
    assert!(kills + pauses >= 5 && kills >= 1, "the nemesis hardly ran: {kills} kills, {pauses} pauses");
    assert!(acked >= 1000, "only {acked} records acknowledged: the workload hardly ran");
    let violations: Vec<String> = check::all(&h).into_iter().flat_map(|(name, v)| v.into_iter().map(move |m| format!("{name}: {m}"))).collect();
    assert!(violations.is_empty(), "nemesis seed {seed}:\n{}\n{}", violations.join("\n"), broker.log_tail());
}
