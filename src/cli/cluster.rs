//! `strand cluster`: a local dev cluster, one `strand broker` process per node (this same
//! executable), all voters of one metadata quorum; and `strand cluster status`, which asks a
//! running cluster for its id, controller, brokers and partitions without a leader.
//!
//! The launcher only starts, relays and stops processes: it decides nothing about the cluster.
//! A node that exits on its own (say, `kill -9` to watch failover) is reported and the others
//! keep running; SIGTERM or ctrl-c stops them all (SIGTERM, then SIGKILL after
//! `STOP_TIMEOUT`). The cluster id is kept in `DIR/cluster.id`, so a restart on the same
//! directory is the same cluster.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::{ClusterArgs, ClusterCommand, ClusterStartArgs, ConnectArgs};
use crate::client::{error_name, Client};

/// At most this many nodes: the metadata quorum's voter limit (`config::parse_quorum`).
pub const NODES_MAX: u32 = 9;
/// After SIGTERM, a node gets this long to shut down before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the launcher looks for nodes that exited.
const REAP_INTERVAL: Duration = Duration::from_millis(100);
/// A child's output line longer than this is relayed in pieces (bounds the relay's buffer).
const LINE_BYTES_MAX: u64 = 64 * 1024;
/// The file under the cluster's data dir that holds its id.
const CLUSTER_ID_FILE: &str = "cluster.id";
/// Kafka's LEADER_NOT_AVAILABLE.
const LEADER_NOT_AVAILABLE: i16 = 5;

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        None => start(args.start),
        Some(ClusterCommand::Status { connect }) => status(connect),
    }
}

/// What the launcher runs: every node's ports and directory, derived from the flags.
#[derive(Debug, PartialEq)]
struct Layout {
    /// (node id, client port, controller port), node ids 1..=N.
    nodes: Vec<(u32, u16, u16)>,
}

impl Layout {
    fn new(args: &ClusterStartArgs) -> anyhow::Result<Layout> {
        if !(1..=NODES_MAX).contains(&args.nodes) {
            bail!("--nodes {} must be between 1 and {NODES_MAX}", args.nodes);
        }
        let controller_base_port = match args.controller_base_port {
            Some(p) => p,
            None => args.base_port.checked_add(1000).ok_or_else(|| {
                anyhow!("--base-port {} leaves no room for the default --controller-base-port (base-port + 1000); give one", args.base_port)
            })?,
        };
        let range = |flag: &str, base: u16| -> anyhow::Result<std::ops::RangeInclusive<u16>> {
            if base == 0 {
                bail!("{flag} must not be 0");
            }
            let last = u16::try_from(u32::from(base) + args.nodes - 1)
                .map_err(|_| anyhow!("{flag} {base} with --nodes {}: port {} is above 65535", args.nodes, u32::from(base) + args.nodes - 1))?;
            Ok(base..=last)
        };
        let client = range("--base-port", args.base_port)?;
        let controller = range("--controller-base-port", controller_base_port)?;
        if client.start() <= controller.end() && controller.start() <= client.end() {
            bail!(
                "client ports {}-{} and controller ports {}-{} overlap; choose another --controller-base-port",
                client.start(),
                client.end(),
                controller.start(),
                controller.end()
            );
        }
        let nodes = (1..=args.nodes).zip(client).zip(controller).map(|((id, c), q)| (id, c, q)).collect();
        Ok(Layout { nodes })
    }

    fn bootstrap_servers(&self) -> String {
        self.nodes.iter().map(|(_, port, _)| format!("127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    fn controller_quorum(&self) -> String {
        self.nodes.iter().map(|(id, _, port)| format!("{id}@127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }
}

/// The cluster id in `dir/cluster.id`, made (22 characters, as Kafka's) on the first run.
fn load_or_create_cluster_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            crate::config::validate_cluster_id(&id).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = crate::server::handlers::metadata::kafka_cluster_id(crate::runtime::rng::random_uuid());
            std::fs::write(&path, format!("{id}\n")).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn start(args: ClusterStartArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&args)?;
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let cluster_id = load_or_create_cluster_id(dir)?;
    for (id, _, _) in &layout.nodes {
        let node_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir).with_context(|| format!("cannot create data dir {}", node_dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the strand executable")?;

    println!("strand cluster: {} node(s)", layout.nodes.len());
    println!("  bootstrap servers: {}", layout.bootstrap_servers());
    println!("  controller quorum: {}", layout.controller_quorum());
    println!("  data dir:          {}", dir.display());
    println!("  cluster id:        {cluster_id}");

    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let quorum = layout.controller_quorum();
        let mut running: BTreeMap<u32, Child> = BTreeMap::new();
        let mut relays = Vec::new();
        for (id, client_port, _) in &layout.nodes {
            let mut child = Command::new(&exe)
                .arg("broker")
                .args(["--node-id", &id.to_string()])
                .args(["--listen", &format!("127.0.0.1:{client_port}")])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{id}")))
                .args(["--controller-quorum", &quorum])
                .args(["--cluster-id", &cluster_id])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Should the launcher fail before it stops them, dropping a child kills it.
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start node {id} ({})", exe.display()))?;
            if let Some(out) = child.stdout.take() {
                relays.push(tokio::spawn(relay(*id, out, false)));
            }
            if let Some(err) = child.stderr.take() {
                relays.push(tokio::spawn(relay(*id, err, true)));
            }
            running.insert(*id, child);
        }

        let result = supervise(&mut running).await;
        // The children have exited (or been SIGKILLed): their pipes close, so the relays end
        // once the last lines are out.
        for r in relays {
            let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
        }
        result
    })
}

/// Run until every node has exited (an error if one failed) or a signal comes (then stop all, Ok).
async fn supervise(running: &mut BTreeMap<u32, Child>) -> anyhow::Result<()> {
    let node_count = running.len();
    let mut failed = 0usize;
    let signal = crate::cli::broker::wait_for_signal();
    tokio::pin!(signal);
    let mut reap_tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tokio::select! {
            biased;
            r = &mut signal => {
                r?;
                eprintln!("strand cluster: stopping {} node(s)", running.len());
                stop(running).await;
                return Ok(());
            }
            _ = reap_tick.tick() => {}
        }
        for (id, status) in reap(running)? {
            println!("[node {id}] {}", describe_exit(status));
            if !status.success() {
                failed += 1;
            }
        }
        if running.is_empty() {
            if failed > 0 {
                bail!("all {node_count} node(s) have exited, {failed} of them with an error");
            }
            eprintln!("strand cluster: all {node_count} node(s) have exited");
            return Ok(());
        }
    }
}

/// Remove and return the nodes that have exited. Only this reaps the children, so a PID in
/// `running` is always still ours to signal.
fn reap(running: &mut BTreeMap<u32, Child>) -> anyhow::Result<Vec<(u32, ExitStatus)>> {
    let mut exited = Vec::new();
    for (id, child) in running.iter_mut() {
        if let Some(status) = child.try_wait().with_context(|| format!("waiting for node {id}"))? {
            exited.push((*id, status));
        }
    }
    for (id, _) in &exited {
        running.remove(id);
    }
    Ok(exited)
}

/// SIGTERM every node, wait up to `STOP_TIMEOUT`, then SIGKILL whoever is left.
async fn stop(running: &mut BTreeMap<u32, Child>) {
    for (id, child) in running.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
            if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
                eprintln!("strand cluster: SIGTERM to node {id} (pid {}): {e}", pid.as_raw_nonzero());
            }
        }
    }
    let deadline = tokio::time::sleep(STOP_TIMEOUT);
    tokio::pin!(deadline);
    let mut reap_tick = tokio::time::interval(REAP_INTERVAL);
    while !running.is_empty() {
        tokio::select! {
            biased;
            _ = &mut deadline => break,
            _ = reap_tick.tick() => {}
        }
        match reap(running) {
            Ok(exited) => exited.into_iter().for_each(|(id, status)| println!("[node {id}] {}", describe_exit(status))),
            Err(e) => {
                eprintln!("strand cluster: {e:#}");
                break;
            }
        }
    }
    for (id, mut child) in std::mem::take(running) {
        eprintln!("strand cluster: node {id} did not stop within {STOP_TIMEOUT:?}; SIGKILL");
        let _ = child.start_kill();
        if let Ok(status) = child.wait().await {
            println!("[node {id}] {}", describe_exit(status));
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("exited on signal {signal}"),
        (None, None) => format!("exited ({status})"),
    }
}

/// Copy a child's output to ours (stdout or stderr, as the child wrote it), each line prefixed
/// with `[node N] `. Lines of different nodes do not interleave: each goes out in one write.
async fn relay<R: AsyncRead + Unpin>(node: u32, reader: R, to_stderr: bool) {
    use std::io::Write;
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(LINE_BYTES_MAX).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let mut out = format!("[node {node}] ").into_bytes();
        out.extend_from_slice(&line);
        // A closed stdout (say, piped into `head`) must not stop the cluster; drop the line.
        let _ = if to_stderr { std::io::stderr().lock().write_all(&out) } else { std::io::stdout().lock().write_all(&out) };
    }
}

fn status(connect: ConnectArgs) -> anyhow::Result<()> {
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let addr = &connect.bootstrap_server;
        // Its error names the address ("connecting to 127.0.0.1:9092: Connection refused").
        let mut client = Client::connect(addr).await?;
        let (_, cluster) = client.send(&DescribeClusterRequest::default().with_endpoint_type(1).with_include_fenced_brokers(true), 2).await?;
        if cluster.error_code != 0 {
            bail!(
                "{addr}: DescribeCluster failed: {}{}",
                error_name(cluster.error_code),
                cluster.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default()
            );
        }
        // All topics (a null topic list); Metadata's brokers are the live (unfenced) ones.
        let (_, metadata) = client.send(&MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false), 12).await?;

        println!("cluster id: {}", cluster.cluster_id.as_str());
        let controller = cluster.controller_id.0;
        println!("controller: {}", if controller < 0 { "none".to_string() } else { controller.to_string() });

        let live: std::collections::BTreeSet<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
        let mut brokers: BTreeMap<i32, (String, String, &str)> = BTreeMap::new();
        for b in &cluster.brokers {
            let state = if live.contains(&b.broker_id.0) { "live" } else if b.is_fenced { "fenced" } else { "not-live" };
            brokers.insert(b.broker_id.0, (format!("{}:{}", b.host.as_str(), b.port), rack_or_dash(b.rack.as_ref()), state));
        }
        // A broker in Metadata but not in DescribeCluster (brokers can disagree while metadata
        // propagates) is still live.
        for b in &metadata.brokers {
            brokers.entry(b.node_id.0).or_insert_with(|| (format!("{}:{}", b.host.as_str(), b.port), rack_or_dash(b.rack.as_ref()), "live"));
        }
        println!();
        println!("{:<6} {:<24} {:<12} STATE", "BROKER", "HOST:PORT", "RACK");
        for (id, (address, rack, state)) in &brokers {
            println!("{id:<6} {address:<24} {rack:<12} {state}");
        }

        let mut leaderless = Vec::new();
        for t in &metadata.topics {
            let name = t.name.as_ref().map(|n| n.as_str().to_string()).unwrap_or_else(|| "?".into());
            if t.error_code == LEADER_NOT_AVAILABLE && t.partitions.is_empty() {
                leaderless.push((name.clone(), None));
            }
            for p in &t.partitions {
                if p.leader_id.0 < 0 || p.error_code == LEADER_NOT_AVAILABLE {
                    leaderless.push((name.clone(), Some(p.partition_index)));
                }
            }
        }
        leaderless.sort();
        println!();
        if leaderless.is_empty() {
            println!("partitions without a leader: none");
        } else {
            println!("partitions without a leader: {}", leaderless.len());
            for (topic, partition) in leaderless {
                match partition {
                    Some(p) => println!("  {topic}-{p}"),
                    None => println!("  {topic} (no partitions known)"),
                }
            }
        }
        Ok(())
    })
}

fn rack_or_dash(rack: Option<&kafka_protocol::protocol::StrBytes>) -> String {
    rack.map_or_else(|| "-".to_string(), |r| r.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u32, base_port: u16, controller_base_port: Option<u16>) -> ClusterStartArgs {
        ClusterStartArgs { nodes, base_port, controller_base_port, data_dir: "unused".into() }
    }

    #[test]
    fn default_layout() {
        let l = Layout::new(&args(3, 9092, None)).unwrap();
        assert_eq!(l.nodes, vec![(1, 9092, 10092), (2, 9093, 10093), (3, 9094, 10094)]);
        assert_eq!(l.bootstrap_servers(), "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094");
        assert_eq!(l.controller_quorum(), "1@127.0.0.1:10092,2@127.0.0.1:10093,3@127.0.0.1:10094");
    }

    #[test]
    fn bad_layouts() {
        for (a, want) in [
            (args(0, 9092, None), "--nodes 0"),
            (args(10, 9092, None), "--nodes 10"),
            (args(3, 65534, Some(20000)), "above 65535"),
            (args(3, 65000, None), "no room"),
            (args(3, 9092, Some(9094)), "overlap"),
            (args(3, 0, Some(20000)), "must not be 0"),
        ] {
            let e = Layout::new(&a).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
