//! `strand bench`: this machine's own limits first, then the broker measured against them,
//! each figure printed as a ratio to its limit.
//!
//! 0. Wait until the disk is quiet (`settle`): deleting the previous run's files makes it stall
//!    for seconds on a filesystem mounted with `discard`.
//! 1. Disk: sequential 1 MiB writes, `fdatasync` after each, through the same `Disk` the broker
//!    uses: MiB/s over the volume the broker's throughput phase writes, and the per-fsync
//!    p50/p99 over at least `FSYNC_SAMPLES_MIN` syncs. (Sampling for as long as the latency
//!    phase, 10 GiB of writes, was tried: on the development VM it left the host's write cache
//!    full and the broker phase that followed several times slower in its tail.)
//! 2. Network: loopback TCP throughput between two tasks (MiB/s).
//! 3. Broker (in process, fresh data dir, one partition per connection): produce throughput with 1 KiB
//!    records, acks=all, several pipelined connections; produce latency p50/p99/p999 paced at
//!    half that throughput; consume throughput reading everything back.
//!
//! Targets (issue [broker]): produce >= 70 % of the fsync'd write limit; p99 at half load
//! <= 4 x the fsync p99.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::BenchArgs;
use crate::client::{encode_request, Client};
use crate::config::BrokerConfig;
use crate::runtime::{Clock, Runtime};

const MIB: f64 = 1024.0 * 1024.0;
const CONNECTIONS: usize = 4;
const IN_FLIGHT_PER_CONNECTION: usize = 16;
const BATCH_RECORDS: usize = 64;
const TOPIC: &str = "bench";
/// One partition per connection: each partition has its own group-commit flusher.
const PARTITIONS: usize = CONNECTIONS;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.cluster {
        return crate::cli::bench_cluster::run(&args);
    }
    if args.record_bytes == 0 || args.produce_mib == 0 {
        bail!("--record-bytes and --produce-mib must be positive");
    }
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let rt = Runtime::real();
    let nonce = crate::runtime::rng::random_u64();
    let root = args.data_dir.join(format!("run-{nonce:016x}"));
    rt.disk.create_dir_all(&root).await.with_context(|| format!("creating {}", root.display()))?;
    let result = if args.groups { crate::cli::bench_groups::run(&rt, &root).await } else { bench_in(&args, &rt, &root).await };
    let _ = rt.disk.remove_dir_all(&root).await;
    let _ = std::fs::remove_dir(&args.data_dir);
    result
}

/// One run's ratios, for the summary over several runs.
struct RunFigures {
    produce_ratio: f64,
    p99_ratio: f64,
    consume_ratio: f64,
}

async fn bench_in(args: &BenchArgs, rt: &Runtime, root: &std::path::Path) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        if args.runs > 1 {
            println!("=== run {run} of {}", args.runs);
        }
        let dir = root.join(format!("run-{run}"));
        rt.disk.create_dir_all(&dir).await?;
        let (waited, quiet) = settle(rt, &dir).await?;
        if quiet {
            println!("disk   quiet after {:.1} s (no fdatasync of a small append above {} ms for {} s)", waited.as_secs_f64(), SETTLE_STALL.as_millis(), SETTLE_QUIET.as_secs());
        } else {
            println!("disk   NOT quiet after {:.0} s of waiting (fdatasyncs of a small append still stall above {} ms): this run's figures carry the disk's stalls", waited.as_secs_f64(), SETTLE_STALL.as_millis());
        }
        runs.push(bench_once(args, rt, &dir).await?);
        let _ = rt.disk.remove_dir_all(&dir).await;
        println!();
    }
    if runs.len() > 1 {
        summarize(&runs);
    }
    Ok(())
}

fn summarize(runs: &[RunFigures]) {
    fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        (median, v[0], v[n - 1])
    }
    let n = runs.len();
    let (p, p_min, p_max) = median_min_max(runs.iter().map(|r| 100.0 * r.produce_ratio).collect());
    let (l, l_min, l_max) = median_min_max(runs.iter().map(|r| r.p99_ratio).collect());
    let (c, c_min, c_max) = median_min_max(runs.iter().map(|r| 100.0 * r.consume_ratio).collect());
    let produce_met = runs.iter().filter(|r| r.produce_ratio >= 0.7).count();
    let p99_met = runs.iter().filter(|r| r.p99_ratio <= 4.0).count();
    println!("over {n} runs (each ratio against the limits measured in its own run):");
    println!("  produce throughput / fsync'd write limit: median {p:5.1} % (min {p_min:.1}, max {p_max:.1})   >= 70 % in {produce_met} of {n} runs");
    println!("  produce p99 at half load / fsync p99:     median {l:5.2} x (min {l_min:.2}, max {l_max:.2})   <= 4 x in {p99_met} of {n} runs");
    println!("  consume throughput / loopback TCP:        median {c:5.1} % (min {c_min:.1}, max {c_max:.1})");
}

async fn bench_once(args: &BenchArgs, rt: &Runtime, root: &std::path::Path) -> anyhow::Result<RunFigures> {
    let total_bytes = args.produce_mib * 1024 * 1024;
    println!("strand bench: {} MiB, {} B records, data in {}", args.produce_mib, args.record_bytes, root.display());

    // 1. Disk limit.
    let disk = disk_limit(rt, root, total_bytes).await?;
    let (disk_mib_s, fsync_p99) = (disk.mib_s, disk.fsync_p99);
    println!(
        "disk   sequential write + fdatasync/1 MiB: {disk_mib_s:9.1} MiB/s ({:.0} % of it in writes to the page cache)   fsync p50 {:.2} ms  p99 {:.2} ms over {} syncs (p99 of the first {} MiB alone: {:.2} ms)",
        100.0 * disk.write_share,
        ms(disk.fsync_p50),
        ms(fsync_p99),
        disk.fsyncs,
        args.produce_mib,
        ms(disk.fsync_p99_first)
    );
    // 2. Network limit.
    let tcp_mib_s = tcp_limit(rt.clock.as_ref()).await?;
    println!("net    loopback TCP:                       {tcp_mib_s:9.1} MiB/s");

    // 3. Broker.
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("static address"),
        data_dir: root.join("broker"),
        ..BrokerConfig::default()
    };
    let server = crate::server::start(rt.clone(), config).await?;
    let addr = server.local_addr().to_string();
    let outcome = broker_phase(args, rt, server.broker(), &addr, total_bytes, disk_mib_s, fsync_p99, tcp_mib_s).await;
    server.shutdown().await?;
    outcome
}

/// A single fdatasync of a small append slower than this is a stall of the disk, not its usual
/// latency (a few ms at most on the development VM).
const SETTLE_STALL: Duration = Duration::from_millis(20);
/// How long the disk must go without a stall before a run starts.
const SETTLE_QUIET: Duration = Duration::from_secs(4);
/// How long to wait for that at most.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Wait until the disk has gone `SETTLE_QUIET` without a stall, probing it with small appends
/// and `fdatasync`s; returns how long that took and whether it happened within
/// `SETTLE_WAIT_MAX`.
///
/// Why: on a filesystem mounted with `discard` (the development VM's root is), blocks freed by
/// deleting files are discarded in the background over the next seconds, and meanwhile single
/// fdatasyncs stall for 60-250 ms (measured with four plain C writers: none above 10 ms for
/// 20 s when nothing had been deleted; stalls of 100-250 ms within 4 s after deleting 2 GiB, even
/// with a syncfs and 6 s of waiting in between). Each run deletes the previous run's few GiB,
/// and one such stall in a 10 s latency phase holds a few percent of the requests, which is
/// more than a p99 allows: a run would measure the previous run's clean-up, not the broker.
/// The probe file stays in the run's directory (deleting it would free blocks again).
async fn settle(rt: &Runtime, dir: &std::path::Path) -> anyhow::Result<(Duration, bool)> {
    const PROBE_BYTES: usize = 4096;
    let file = rt.disk.open(&dir.join("settle-probe.bin"), true).await?;
    let probe = Bytes::from(vec![0u8; PROBE_BYTES]);
    let start = rt.clock.monotonic();
    let mut quiet_since = start;
    let mut pos = 0u64;
    loop {
        let now = rt.clock.monotonic();
        if now - quiet_since >= SETTLE_QUIET {
            return Ok((now - start, true));
        }
        if now - start >= SETTLE_WAIT_MAX {
            return Ok((now - start, false));
        }
        file.write_at(pos, probe.clone()).await?;
        pos += PROBE_BYTES as u64;
        let synced = rt.clock.monotonic();
        file.sync_data().await?;
        let after = rt.clock.monotonic();
        if after - synced > SETTLE_STALL {
            quiet_since = after;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Fewest fsyncs the disk limit's p99 is taken over: with only a few hundred, the p99 is the
/// third or fourth slowest sync and swings by a fifth from run to run.
const FSYNC_SAMPLES_MIN: usize = 1024;

struct DiskLimit {
    /// Throughput over the first `total_bytes` (the volume the broker's throughput phase writes).
    mib_s: f64,
    /// fsync p50 / p99 over every sync (at least `FSYNC_SAMPLES_MIN`).
    fsync_p50: Duration,
    fsync_p99: Duration,
    fsyncs: usize,
    /// fsync p99 over the syncs of the first `total_bytes` alone, printed for comparison.
    fsync_p99_first: Duration,
    /// Share of the throughput measurement spent in `write_at` (copying into the page cache)
    /// rather than in `fdatasync`: normally a third; far more when the VM is slow to hand out
    /// memory, which is not the disk's doing.
    write_share: f64,
}

async fn disk_limit(rt: &Runtime, root: &std::path::Path, total_bytes: u64) -> anyhow::Result<DiskLimit> {
    const CHUNK_BYTES: u64 = 1024 * 1024;
    /// A new file after this much. The files stay until the run's directory is removed:
    /// deleting them as the measurement went freed blocks whose discard (on a filesystem
    /// mounted with `discard`) stalled the measurement's own syncs and the broker's (`settle`).
    const FILE_BYTES: u64 = 256 * CHUNK_BYTES;
    let chunk = Bytes::from(vec![0xa5u8; CHUNK_BYTES as usize]);
    let mut fsyncs = Vec::new();
    let start = rt.clock.monotonic();
    let mut first_elapsed = None;
    let mut first_write_time = Duration::ZERO;
    let (mut written, mut n_file) = (0u64, 0usize);
    let more = |written: u64, syncs: usize| written < total_bytes || syncs < FSYNC_SAMPLES_MIN;
    while more(written, fsyncs.len()) {
        let path = root.join(format!("disk-limit-{n_file}.bin"));
        let file = rt.disk.open(&path, true).await?;
        let mut pos = 0u64;
        while pos < FILE_BYTES && more(written, fsyncs.len()) {
            let w = rt.clock.monotonic();
            file.write_at(pos, chunk.clone()).await?;
            let t = rt.clock.monotonic();
            if first_elapsed.is_none() {
                first_write_time += t - w;
            }
            file.sync_data().await?;
            fsyncs.push(rt.clock.monotonic() - t);
            pos += CHUNK_BYTES;
            written += CHUNK_BYTES;
            if written == total_bytes.div_ceil(CHUNK_BYTES) * CHUNK_BYTES {
                first_elapsed = Some((rt.clock.monotonic() - start, fsyncs.len()));
            }
        }
        drop(file);
        n_file += 1;
    }
    let (first_elapsed, first_n) = first_elapsed.expect("the loop writes at least total_bytes");
    let mut first: Vec<Duration> = fsyncs[..first_n].to_vec();
    first.sort();
    fsyncs.sort();
    Ok(DiskLimit {
        mib_s: (first_n as u64 * CHUNK_BYTES) as f64 / MIB / first_elapsed.as_secs_f64(),
        fsync_p50: percentile(&fsyncs, 0.5),
        fsync_p99: percentile(&fsyncs, 0.99),
        fsyncs: fsyncs.len(),
        fsync_p99_first: percentile(&first, 0.99),
        write_share: first_write_time.as_secs_f64() / first_elapsed.as_secs_f64(),
    })
}

async fn tcp_limit(clock: &dyn Clock) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                return Ok::<u64, std::io::Error>(n);
            }
            n += r as u64;
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let buf = vec![0x5au8; 1 << 20];
    let start = clock.monotonic();
    let mut sent = 0u64;
    while clock.monotonic() - start < Duration::from_secs(2) {
        s.write_all(&buf).await?;
        sent += buf.len() as u64;
    }
    s.shutdown().await?;
    drop(s);
    let received = reader.await.map_err(|e| anyhow!("{e}"))??;
    let elapsed = clock.monotonic() - start;
    Ok(received.min(sent) as f64 / MIB / elapsed.as_secs_f64())
}

fn produce_request(record_bytes: usize, now_ms: i64, partition: i32) -> anyhow::Result<ProduceRequest> {
    let value = Bytes::from(vec![b'x'; record_bytes]);
    let records: Vec<(Option<Bytes>, Bytes)> = (0..BATCH_RECORDS).map(|_| (None, value.clone())).collect();
    let batch = crate::cli::produce::encode_batch(&records, now_ms)?;
    Ok(ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch))])]))
}

/// Send `requests` produce requests on one connection with up to IN_FLIGHT requests pipelined,
/// at most one every `pace` (zero = as fast as possible). Returns each request's latency.
async fn produce_connection(addr: String, request: ProduceRequest, requests: usize, pace: Duration, clock: Arc<dyn Clock>) -> anyhow::Result<Vec<Duration>> {
    let client = Client::connect(&addr).await?;
    let (mut writer, mut reader) = client.into_pipeline(IN_FLIGHT_PER_CONNECTION, clock.clone());
    let version = writer.version_for::<ProduceRequest>(9)?;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(requests);
        while let Some((response, latency)) = reader.recv::<ProduceRequest>().await? {
            for p in response.responses.iter().flat_map(|t| t.partition_responses.iter()) {
                if p.error_code != 0 {
                    bail!("produce to partition {} failed: {}", p.index, crate::client::error_name(p.error_code));
                }
            }
            latencies.push(latency);
        }
        Ok::<_, anyhow::Error>(latencies)
    });
    // Encoded once; the pipeline patches the correlation id in place for each send.
    let mut frame = encode_request(&request, version, 0)?.to_vec();
    let start = clock.monotonic();
    for i in 0..requests {
        if !pace.is_zero() {
            let due = start + pace * i as u32;
            let now = clock.monotonic();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        writer.send_frame(&mut frame, ApiKey::Produce, version, true).await?;
    }
    drop(writer);
    let latencies = reader.await.map_err(|e| anyhow!("{e}"))??;
    if latencies.len() != requests {
        bail!("{} produce responses for {requests} requests", latencies.len());
    }
    Ok(latencies)
}

async fn produce_phase(addr: &str, rt: &Runtime, args: &BenchArgs, total_requests: usize, pace_per_connection: Duration) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let start = rt.clock.monotonic();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let n = total_requests / CONNECTIONS + usize::from(c < total_requests % CONNECTIONS);
        let request = produce_request(args.record_bytes, rt.clock.wall_ms(), (c % PARTITIONS) as i32)?;
        tasks.push(tokio::spawn(produce_connection(addr.to_string(), request, n, pace_per_connection, rt.clock.clone())));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| anyhow!("{e}"))??);
    }
    latencies.sort();
    Ok((rt.clock.monotonic() - start, latencies))
}

#[allow(clippy::too_many_arguments)]
async fn broker_phase(args: &BenchArgs, rt: &Runtime, broker: &crate::server::Broker, addr: &str, total_bytes: u64, disk_mib_s: f64, fsync_p99: Duration, tcp_mib_s: f64) -> anyhow::Result<RunFigures> {
    let mut client = Client::connect(addr).await?;
    create_topic(&mut client).await?;
    let request_bytes = (BATCH_RECORDS * args.record_bytes) as u64;
    let total_requests = (total_bytes / request_bytes).max(CONNECTIONS as u64) as usize;

    // Throughput, unpaced.
    let (elapsed, _) = produce_phase(addr, rt, args, total_requests, Duration::ZERO).await?;
    let produced_bytes = total_requests as u64 * request_bytes;
    let produce_mib_s = produced_bytes as f64 / MIB / elapsed.as_secs_f64();
    println!(
        "broker produce acks=all ({} partitions, {} conns x {} in flight, {} x {} B per request): {produce_mib_s:9.1} MiB/s   = {:5.1} % of the fsync'd write limit (target >= 70 %)",
        PARTITIONS, CONNECTIONS, IN_FLIGHT_PER_CONNECTION, BATCH_RECORDS, args.record_bytes, 100.0 * produce_mib_s / disk_mib_s
    );

    // Latency at half that rate.
    let half_rate_requests_s = produce_mib_s * MIB / 2.0 / request_bytes as f64;
    let latency_requests = ((half_rate_requests_s * args.latency_secs as f64) as usize).max(CONNECTIONS * 10);
    let pace = Duration::from_secs_f64(CONNECTIONS as f64 / half_rate_requests_s.max(1.0));
    let syncs_before = broker_syncs(broker);
    let requests_before = broker.produce_latency.snapshot();
    let (_, latencies) = produce_phase(addr, rt, args, latency_requests, pace).await?;
    let syncs_after = broker_syncs(broker);
    let (syncs, appends) = (syncs_after.0.since(&syncs_before.0), syncs_after.1.since(&syncs_before.1));
    let requests = broker.produce_latency.snapshot().since(&requests_before);
    let (p50, p99, p999) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), percentile(&latencies, 0.999));
    println!(
        "broker produce latency at half load ({:.0} req/s): p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms   p99 = {:.2} x fsync p99 (target <= 4)",
        half_rate_requests_s,
        ms(p50),
        ms(p99),
        ms(p999),
        p99.as_secs_f64() / fsync_p99.as_secs_f64().max(1e-9)
    );
    // Where the tail comes from: a produce waits for the group commit in progress, then its
    // own (up to two fdatasyncs), so a request's p99 near twice the broker's fsync p99 is the
    // disk's doing, not the broker's.
    println!(
        "broker fdatasyncs during that phase (group commits of {PARTITIONS} partitions, concurrent): {}   {}",
        syncs.count(),
        quantiles(&syncs)
    );
    println!("broker's own time per produce (request read -> response written) in that phase: {}", quantiles(&requests));
    println!("broker appends (validation + write into the page cache) during that phase: {}", quantiles(&appends));

    // Consume everything back.
    let mut consumed = (0.0, 0u64);
    let consume_start = rt.clock.monotonic();
    for p in 0..PARTITIONS as i32 {
        consumed.1 += consume_all(&mut client, rt.clock.as_ref(), p).await?.1;
    }
    consumed.0 = consumed.1 as f64 / MIB / (rt.clock.monotonic() - consume_start).as_secs_f64();
    println!(
        "broker consume: {:9.1} MiB/s   = {:5.1} % of loopback TCP",
        consumed.0,
        100.0 * consumed.0 / tcp_mib_s
    );
    if consumed.1 < produced_bytes {
        bail!("consumed {} bytes, less than the {produced_bytes} produced", consumed.1);
    }

    let produce_ratio = produce_mib_s / disk_mib_s;
    let p99_ratio = p99.as_secs_f64() / fsync_p99.as_secs_f64().max(1e-9);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!("{:<34} {:>14} {:>30} {:>9} {:>8} {:>8}", "figure", "measured", "limit", "ratio", "target", "");
    println!(
        "{:<34} {:>14} {:>30} {:>8.1}% {:>8} {:>8}",
        "produce throughput, acks=all",
        format!("{produce_mib_s:.1} MiB/s"),
        format!("{disk_mib_s:.1} MiB/s (disk, fsync/MiB)"),
        100.0 * produce_ratio,
        ">= 70%",
        verdict(produce_ratio >= 0.7)
    );
    println!(
        "{:<34} {:>14} {:>30} {:>8.2}x {:>8} {:>8}",
        "produce p99 at half load",
        format!("{:.2} ms", ms(p99)),
        format!("{:.2} ms (fsync p99)", ms(fsync_p99)),
        p99_ratio,
        "<= 4x",
        verdict(p99_ratio <= 4.0)
    );
    println!("{:<34} {:>14}", "produce p50 / p999 at half load", format!("{:.2} / {:.2} ms", ms(p50), ms(p999)));
    println!(
        "{:<34} {:>14} {:>30} {:>8.1}%",
        "consume throughput",
        format!("{:.1} MiB/s", consumed.0),
        format!("{tcp_mib_s:.1} MiB/s (loopback TCP)"),
        100.0 * consumed.0 / tcp_mib_s
    );
    if produce_ratio > 1.0 {
        println!(
            "note: produce beat the disk limit: the broker's group commit syncs more than 1 MiB at a time, \
             or the disk was busier during the limit measurement (it is noisy on shared machines)"
        );
    }
    Ok(RunFigures { produce_ratio, p99_ratio, consume_ratio: consumed.0 / tcp_mib_s })
}

/// "p50 <= .. p99 <= .. p999 <= .. max <= .." of a histogram (bucket upper bounds, in ms).
fn quantiles(h: &crate::metrics::Snapshot) -> String {
    format!(
        "p50 <= {:.2} ms  p99 <= {:.2} ms  p999 <= {:.2} ms  max <= {:.2} ms",
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.quantile(1.0))
    )
}

/// The fdatasync and append histograms of the benchmark topic's partitions, summed.
fn broker_syncs(broker: &crate::server::Broker) -> (crate::metrics::Snapshot, crate::metrics::Snapshot) {
    let (mut syncs, mut appends) = (crate::metrics::Snapshot::default(), crate::metrics::Snapshot::default());
    for p in broker.topics.get(TOPIC).map(|t| t.partitions.iter().flatten().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        syncs.add(&p.sync_latency.snapshot());
        appends.add(&p.append_latency.snapshot());
    }
    (syncs, appends)
}

async fn create_topic(client: &mut Client) -> anyhow::Result<()> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_num_partitions(PARTITIONS as i32)
        .with_replication_factor(1);
    let (_, r) = client.send(&CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000), 7).await?;
    match r.topics.first() {
        Some(t) if t.error_code == 0 => Ok(()),
        Some(t) => bail!("creating the bench topic: {}", crate::client::error_name(t.error_code)),
        None => bail!("empty CreateTopics response"),
    }
}

/// Fetch one whole partition from offset 0; returns (MiB/s, record-batch bytes read).
async fn consume_all(client: &mut Client, clock: &dyn Clock, partition: i32) -> anyhow::Result<(f64, u64)> {
    use kafka_protocol::messages::FetchRequest;
    let version = client.version_for::<FetchRequest>(12)?;
    let mut offset = 0i64;
    let mut bytes = 0u64;
    let start = clock.monotonic();
    loop {
        let request = crate::client::fetch_request(TOPIC, [(partition, offset)], 0, 16 * 1024 * 1024, 16 * 1024 * 1024);
        let response = client.send_at(&request, version).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow!("fetch response without partition {partition}"))?;
        if p.error_code != 0 {
            bail!("fetch failed: {}", crate::client::error_name(p.error_code));
        }
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            break;
        }
        let (batches, _) = crate::protocol::batch::split_batches(&records)?;
        offset = batches.last().map(|b| b.next_offset()).unwrap_or(offset);
        bytes += records.len() as u64;
        if offset >= p.high_watermark {
            break;
        }
    }
    let elapsed = clock.monotonic() - start;
    Ok((bytes as f64 / MIB / elapsed.as_secs_f64(), bytes))
}
