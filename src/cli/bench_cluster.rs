//! `strand bench --cluster`: a three-broker cluster of real `strand broker` processes (this same
//! executable) in a fresh temp dir, measured against its own limits (issue [raft]):
//!
//! 1. Controller failover, `--kills` times: find the active controller (every broker's Metadata
//!    agrees on it), SIGKILL it, then send CreateTopics (a new topic each attempt, 1 partition,
//!    RF 1) to a survivor until one succeeds; kill -> first success is the sample. Alongside, a
//!    poller records when the survivor's Metadata first names a new controller, to split the
//!    time into election and the rest. The killed node restarts on its data dir and the next
//!    kill waits until all three are back, unfenced, in every broker's Metadata. Shown next to
//!    the configured election timeout (10-20 ticks of 50 ms), the floor a Raft failover cannot
//!    beat; target median <= 1 s, max <= 3 s (printed, never failing the command).
//! 2. CreateTopics latency on the healthy cluster, sent to a non-controller (forwarded) and to
//!    the controller, next to the round trip of a Metadata request for no topics to the same
//!    broker.
//! 3. Idle CPU of each broker from `/proc/<pid>/stat` over `--idle-secs`.
//!
//! Only PIDs this command spawned are signalled; all of them get SIGTERM at the end (also on
//! error), and the temp dir is removed unless `--keep`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::process::{Child, Command};

use crate::cli::BenchArgs;
use crate::client::{error_name, Client};

const NODES: u32 = 3;
/// The brokers' default Raft tick and election timeout in ticks (`BrokerConfig`, `raft/`).
const ELECTION_TIMEOUT_TICKS: (u64, u64) = (10, 20);
/// Target of issue [raft] for kill -9 of the controller -> next CreateTopics answered.
const FAILOVER_TARGET_MEDIAN: Duration = Duration::from_secs(1);
const FAILOVER_TARGET_MAX: Duration = Duration::from_secs(3);
/// One CreateTopics attempt during failover gets this long before it is abandoned and retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed attempts (and between polls while waiting for the cluster).
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// A failover that takes longer than this is reported as an error: the cluster is wedged.
const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// How long the cluster gets to form, or to take a restarted node back.
const FORM_BOUND: Duration = Duration::from_secs(60);
/// After SIGTERM a broker gets this long before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Round trips sampled for the latency limit.
const RTT_SAMPLES: usize = 200;
/// `/proc/<pid>/stat` counts CPU time in USER_HZ, 100 on Linux whatever the kernel's HZ.
const USER_HZ: f64 = 100.0;

/// The median (mean of the middle two for an even count) of unsorted samples; zero if none.
pub fn median(samples: &[Duration]) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// The nearest-rank percentile `p` (0..=1) of unsorted samples; zero if none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// utime + stime (clock ticks) from the text of `/proc/<pid>/stat`. The command name (field 2)
/// is in parentheses and may contain spaces or ')', so fields are counted after the last ')'.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the file, utime 14 and stime 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

struct Node {
    id: u32,
    addr: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    exe: PathBuf,
    quorum: String,
    cluster_id: String,
    nodes: Vec<Node>,
}

fn pid_of(child: &Child) -> Option<rustix::process::Pid> {
    child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw)
}

impl Cluster {
    fn new(root: &Path) -> anyhow::Result<Cluster> {
        let exe = std::env::current_exe().context("cannot find the strand executable")?;
        // Free ports (the OS's picks for 127.0.0.1:0), distinct: every listener is held until
        // all are picked.
        let listeners: Vec<std::net::TcpListener> =
            (0..2 * NODES).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        drop(listeners);
        let quorum = (1..=NODES).map(|id| format!("{id}@127.0.0.1:{}", ports[(NODES + id - 1) as usize])).collect::<Vec<_>>().join(",");
        let cluster_id = crate::server::handlers::metadata::kafka_cluster_id(crate::runtime::rng::random_uuid());
        let mut nodes = Vec::new();
        for id in 1..=NODES {
            let dir = root.join(format!("node-{id}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let log = root.join(format!("node-{id}.log"));
            nodes.push(Node { id, addr: format!("127.0.0.1:{}", ports[(id - 1) as usize]), dir, log, child: None });
        }
        Ok(Cluster { exe, quorum, cluster_id, nodes })
    }

    fn node(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn addr(&self, id: u32) -> String {
        self.nodes[(id - 1) as usize].addr.clone()
    }

    fn spawn(&mut self, id: u32) -> anyhow::Result<()> {
        let (exe, quorum, cluster_id) = (self.exe.clone(), self.quorum.clone(), self.cluster_id.clone());
        let node = self.node(id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).with_context(|| format!("opening {}", node.log.display()))?;
        let child = Command::new(&exe)
            .arg("broker")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &node.addr])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--controller-quorum", &quorum])
            .args(["--cluster-id", &cluster_id])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {id} ({})", exe.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILL node `id` (a child of ours) and reap it; returns the instant of the kill.
    async fn kill9(&mut self, id: u32) -> anyhow::Result<Instant> {
        let node = self.node(id);
        let mut child = node.child.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        let pid = pid_of(&child).ok_or_else(|| anyhow!("node {id} has already exited"))?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).with_context(|| format!("SIGKILL to node {id}"))?;
        let at = Instant::now();
        child.wait().await?;
        Ok(at)
    }

    fn pids(&self) -> Vec<(u32, u32)> {
        self.nodes.iter().filter_map(|n| Some((n.id, n.child.as_ref()?.id()?))).collect()
    }

    /// SIGTERM every running node, then SIGKILL whoever is left after `STOP_TIMEOUT`.
    async fn stop_all(&mut self) {
        for n in &self.nodes {
            if let Some(pid) = n.child.as_ref().and_then(pid_of) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                    Ok(Ok(status)) if status.success() => {}
                    Ok(Ok(status)) => eprintln!("node {} exited with {status} after SIGTERM (log: {})", n.id, n.log.display()),
                    _ => {
                        eprintln!("node {} did not stop within {STOP_TIMEOUT:?}; SIGKILL", n.id);
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                    }
                }
            }
        }
    }

    /// A node that exited on its own is an error (with where to look).
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    n.child = None;
                    bail!("node {} exited on its own ({status}); see {}", n.id, n.log.display());
                }
            }
        }
        Ok(())
    }
}

/// (controller id, live broker ids) as one broker's Metadata tells them.
async fn view(addr: &str) -> anyhow::Result<(i32, Vec<i32>)> {
    let mut client = tokio::time::timeout(ATTEMPT_TIMEOUT, Client::connect(addr)).await.map_err(|_| anyhow!("{addr}: connect timed out"))??;
    let request = MetadataRequest::default().with_topics(Some(vec![])).with_allow_auto_topic_creation(false);
    let (_, r) = tokio::time::timeout(ATTEMPT_TIMEOUT, client.send(&request, 12)).await.map_err(|_| anyhow!("{addr}: Metadata timed out"))??;
    let mut brokers: Vec<i32> = r.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort();
    Ok((r.controller_id.0, brokers))
}

/// The controller, once every node's Metadata names the same one and all `NODES` brokers live.
async fn agreed_controller(cluster: &Cluster) -> Option<u32> {
    let all: Vec<i32> = (1..=NODES as i32).collect();
    let mut controller = None;
    for n in &cluster.nodes {
        let (c, brokers) = view(&n.addr).await.ok()?;
        if c < 1 || brokers != all || controller.is_some_and(|x| x != c) {
            return None;
        }
        controller = Some(c);
    }
    controller.map(|c| c as u32)
}

async fn wait_healthy(cluster: &mut Cluster, what: &str) -> anyhow::Result<(u32, Duration)> {
    let start = Instant::now();
    loop {
        cluster.check_alive()?;
        if let Some(c) = agreed_controller(cluster).await {
            return Ok((c, start.elapsed()));
        }
        if start.elapsed() > FORM_BOUND {
            bail!("{what}: not all {NODES} brokers in every broker's Metadata after {FORM_BOUND:?} (logs in {})", cluster.nodes[0].log.parent().unwrap_or(Path::new(".")).display());
        }
        tokio::time::sleep(RETRY_PAUSE * 5).await;
    }
}

fn create_request(name: &str) -> CreateTopicsRequest {
    CreateTopicsRequest::default().with_timeout_ms(ATTEMPT_TIMEOUT.as_millis() as i32).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(1)
        .with_replication_factor(1)])
}

/// One CreateTopics on `client`: Ok(()) on success, Err(reason) otherwise.
async fn create_once(client: &mut Client, name: &str) -> Result<(), String> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, client.send(&create_request(name), 7)).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => Err(format!("{e:#}").chars().take(60).collect()),
        Ok(Ok((_, r))) => match r.topics.first() {
            Some(t) if t.error_code == 0 => Ok(()),
            Some(t) => Err(error_name(t.error_code)),
            None => Err("empty response".into()),
        },
    }
}

struct Failover {
    killed: u32,
    total: Duration,
    /// Kill -> the survivor's Metadata first names another controller (None: not seen).
    elected: Option<(Duration, i32)>,
    attempts: usize,
    /// Why attempts failed, and how often.
    errors: BTreeMap<String, usize>,
    /// Restart of the killed node -> all three back in every broker's Metadata.
    rejoin: Duration,
}

async fn failover(cluster: &mut Cluster, round: usize) -> anyhow::Result<Failover> {
    let (controller, _) = wait_healthy(cluster, "before a kill").await?;
    let survivor = (1..=NODES).find(|&i| i != controller).expect("three nodes");
    let survivor_addr = cluster.addr(survivor);
    // Connected before the kill, as a client already talking to the cluster would be.
    let mut client = Client::connect(&survivor_addr).await?;
    let killed_at = cluster.kill9(controller).await?;

    let poll_addr = survivor_addr.clone();
    let poller = tokio::spawn(async move {
        while killed_at.elapsed() < FAILOVER_BOUND {
            if let Ok((c, _)) = view(&poll_addr).await {
                if c >= 1 && c as u32 != controller {
                    return Some((killed_at.elapsed(), c));
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        None
    });

    let mut errors = BTreeMap::new();
    let mut attempts = 0;
    let total = loop {
        attempts += 1;
        let name = format!("failover-{round}-{attempts}");
        match create_once(&mut client, &name).await {
            Ok(()) => break killed_at.elapsed(),
            Err(reason) => {
                *errors.entry(reason).or_insert(0) += 1;
                if killed_at.elapsed() > FAILOVER_BOUND {
                    poller.abort();
                    bail!("no CreateTopics succeeded within {FAILOVER_BOUND:?} of killing controller {controller}: {errors:?}");
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                // After an error or a timeout the connection may be dead or out of step.
                if let Ok(Ok(c)) = tokio::time::timeout(ATTEMPT_TIMEOUT, Client::connect(&survivor_addr)).await {
                    client = c;
                }
            }
        }
    };
    // The poller may still be waiting if the create won the race; give it a moment.
    let elected = tokio::time::timeout(Duration::from_secs(5), poller).await.ok().and_then(|r| r.ok()).flatten();

    cluster.spawn(controller)?;
    let (_, rejoin) = wait_healthy(cluster, "after restarting the killed controller").await?;
    Ok(Failover { killed: controller, total, elected, attempts, errors, rejoin })
}

/// `n` sequential creates on one connection to `addr`; each one's latency.
async fn create_latencies(addr: &str, prefix: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut client = Client::connect(addr).await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        create_once(&mut client, &format!("{prefix}-{i}")).await.map_err(|e| anyhow!("CreateTopics to {addr}: {e}"))?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Round trips of Metadata for no topics on one connection to `addr`.
async fn metadata_rtts(addr: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut client = Client::connect(addr).await?;
    let request = MetadataRequest::default().with_topics(Some(vec![])).with_allow_auto_topic_creation(false);
    let version = client.version_for::<MetadataRequest>(12)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.send_at(&request, version).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn read_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cpu_ticks(&text).ok_or_else(|| anyhow!("{path}: unexpected format"))
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.kills == 0 || args.creates == 0 || args.idle_secs == 0 {
        bail!("--kills, --creates and --idle-secs must be positive");
    }
    let nonce = crate::runtime::rng::random_u64();
    let root = std::env::temp_dir().join(format!("strand-bench-cluster-{nonce:016x}"));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let runtime = crate::cli::tokio_runtime()?;
    let result = runtime.block_on(async {
        let mut cluster = Cluster::new(&root)?;
        let result = bench(args, &mut cluster, &root).await;
        cluster.stop_all().await;
        result
    });
    if args.keep {
        println!("kept {}", root.display());
    } else if result.is_err() {
        // The logs are what explains the error: keep them, drop the data.
        for id in 1..=NODES {
            let _ = std::fs::remove_dir_all(root.join(format!("node-{id}")));
        }
        eprintln!("broker logs kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

async fn bench(args: &BenchArgs, cluster: &mut Cluster, root: &Path) -> anyhow::Result<()> {
    let tick = Duration::from_millis(crate::config::BrokerConfig::default().controller_tick_ms);
    let (election_min, election_max) = (tick * ELECTION_TIMEOUT_TICKS.0 as u32, tick * ELECTION_TIMEOUT_TICKS.1 as u32);
    println!(
        "strand bench --cluster: {NODES} `strand broker` processes ({}), data and logs in {}",
        if cfg!(debug_assertions) { "debug build" } else { "release build" },
        root.display()
    );
    println!(
        "  brokers {}; quorum {}; defaults: tick {} ms, election timeout {}-{} ms, broker session timeout {} ms",
        cluster.nodes.iter().map(|n| n.addr.as_str()).collect::<Vec<_>>().join(","),
        cluster.quorum,
        tick.as_millis(),
        election_min.as_millis(),
        election_max.as_millis(),
        crate::config::BrokerConfig::default().broker_session_timeout_ms
    );
    let started = Instant::now();
    for id in 1..=NODES {
        cluster.spawn(id)?;
    }
    let (controller, _) = wait_healthy(cluster, "forming the cluster").await?;
    println!("cluster formed in {}: controller {controller}, all {NODES} brokers in every broker's Metadata", secs(started.elapsed()));

    // 1. Failover.
    println!();
    println!("controller failover: kill -9 of the active controller -> first CreateTopics answered by a survivor ({} kills)", args.kills);
    let mut samples = Vec::new();
    let mut elections = Vec::new();
    for round in 1..=args.kills as usize {
        let f = failover(cluster, round).await?;
        let elected = match f.elected {
            Some((d, c)) => {
                elections.push(d);
                format!("new controller {c} in Metadata after {}", secs(d))
            }
            None => "new controller not seen in Metadata".into(),
        };
        let errors = if f.errors.is_empty() { String::new() } else { format!("; failed attempts: {:?}", f.errors) };
        println!(
            "  kill {round:>2}: controller {} -> CreateTopics ok after {} ({} attempts; {elected}{errors}); restarted node back in {}",
            f.killed,
            secs(f.total),
            f.attempts,
            secs(f.rejoin)
        );
        samples.push(f.total);
    }
    let (fo_median, fo_max) = (median(&samples), samples.iter().copied().max().unwrap_or_default());
    let met = fo_median <= FAILOVER_TARGET_MEDIAN && fo_max <= FAILOVER_TARGET_MAX;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "  failover median {}  max {}  = {:.2}-{:.2} x the election timeout ({}-{} ms, the floor)   target median <= {} s, max <= {} s: {}",
        secs(fo_median),
        secs(fo_max),
        fo_median.as_secs_f64() / election_max.as_secs_f64(),
        fo_median.as_secs_f64() / election_min.as_secs_f64(),
        election_min.as_millis(),
        election_max.as_millis(),
        FAILOVER_TARGET_MEDIAN.as_secs(),
        FAILOVER_TARGET_MAX.as_secs(),
        verdict(met)
    );
    if !elections.is_empty() {
        println!(
            "  of which kill -> new controller in the survivor's Metadata: median {}  max {}",
            secs(median(&elections)),
            secs(elections.iter().copied().max().unwrap_or_default())
        );
    }

    // 2. CreateTopics latency.
    let (controller, _) = wait_healthy(cluster, "before the latency phase").await?;
    let other = (1..=NODES).find(|&i| i != controller).expect("three nodes");
    println!();
    println!("CreateTopics latency ({} sequential creates, 1 partition, RF 1, one connection each):", args.creates);
    let mut latency = Vec::new();
    for (label, id) in [("non-controller (forwarded)", other), ("controller", controller)] {
        let addr = cluster.addr(id);
        let rtt = median(&metadata_rtts(&addr, RTT_SAMPLES).await?);
        let l = create_latencies(&addr, &format!("latency-{id}"), args.creates).await?;
        let (p50, p99) = (median(&l), percentile(&l, 0.99));
        println!(
            "  to {label:<27} node {id}: p50 {:7.2} ms  p99 {:7.2} ms   p50 = {:6.1} x the Metadata round trip to it ({:.3} ms, median of {RTT_SAMPLES})",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / rtt.as_secs_f64().max(1e-9),
            ms(rtt)
        );
        latency.push((p50, p99, rtt));
    }

    // 3. Idle CPU.
    cluster.check_alive()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids = cluster.pids();
    let before: Vec<u64> = pids.iter().map(|(_, p)| read_cpu_ticks(*p)).collect::<Result<_, _>>()?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after: Vec<u64> = pids.iter().map(|(_, p)| read_cpu_ticks(*p)).collect::<Result<_, _>>()?;
    let elapsed = t.elapsed().as_secs_f64();
    println!();
    println!("idle CPU over {} s (utime + stime from /proc/<pid>/stat):", args.idle_secs);
    let mut total = 0.0;
    for ((id, pid), (b, a)) in pids.iter().zip(before.iter().zip(&after)) {
        let pct = 100.0 * (a - b) as f64 / USER_HZ / elapsed;
        total += pct;
        println!("  node {id} (pid {pid}): {pct:5.2} % of one core");
    }
    println!("  total: {total:5.2} % of one core ({:.2} % of the machine's {} cores)", total / num_cores() as f64, num_cores());
    cluster.check_alive()?;

    println!();
    println!(
        "summary: failover median {:.3} s max {:.3} s (target <= 1 / <= 3 s: {}); CreateTopics p50 forwarded {:.2} ms, controller {:.2} ms (RTT {:.3} ms); idle CPU {:.2} % of a core for {NODES} brokers",
        fo_median.as_secs_f64(),
        fo_max.as_secs_f64(),
        verdict(met),
        ms(latency[0].0),
        ms(latency[1].0),
        ms(latency[0].2),
        total
    );
    Ok(())
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn median_and_percentile() {
        assert_eq!(median(&[]), Duration::ZERO);
        assert_eq!(median(&d(&[5, 1, 3])), Duration::from_millis(3));
        assert_eq!(median(&d(&[4, 1, 3, 2])), Duration::from_micros(2500));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&d(&hundred), 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&d(&hundred), 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&d(&hundred), 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&d(&[7]), 0.99), Duration::from_millis(7));
    }

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let stat = "1234 (strand (x) y) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(21));
        assert_eq!(cpu_ticks("garbage"), None);
    }
}
