//! Command-line interface: `strand broker` runs a broker; `cluster` runs several as a local dev
//! cluster; `topic`, `group`, `produce`, `consume` talk to one over the Kafka protocol; `bench`
//! measures this machine's limits and the broker against them. Bad flags or config print one line naming the problem and exit non-zero.

pub mod bench;
pub mod bench_cluster;
pub mod bench_groups;
pub mod broker;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "strand", version, about = "A Kafka-compatible message broker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a broker.
    Broker(BrokerArgs),
    /// Run a local multi-broker cluster (one `strand broker` process per node), or show one's state.
    Cluster(ClusterArgs),
    /// Create, list, describe, delete or alter topics.
    Topic(TopicArgs),
    /// List, describe or delete consumer groups, or reset their committed offsets.
    Group(GroupArgs),
    /// Produce lines from stdin, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print their values, one per line.
    Consume(ConsumeArgs),
    /// Measure this machine's disk and network limits, then the broker against them.
    Bench(BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Address to listen on [default: 127.0.0.1:9092].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// host:port clients should connect to [default: the listen address].
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// This broker's node id [default: 1].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// TOML config file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The metadata quorum's voters, id@host:port,... (this node among them; each address is
    /// that node's inter-broker listener). Without it: a single node.
    #[arg(long)]
    pub controller_quorum: Option<String>,
    /// The cluster id, needed at the first start of a quorum node (then stored in the data dir).
    /// Kafka's ids are base64url and may start with '-': such a value is taken as the id.
    #[arg(long, allow_hyphen_values = true)]
    pub cluster_id: Option<String>,
    /// `broker.rack`, for rack-aware placement.
    #[arg(long)]
    pub rack: Option<String>,
}

/// `strand cluster [--nodes N ...]` starts a cluster; `strand cluster status` describes one.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: Option<ClusterCommand>,
    #[command(flatten)]
    pub start: ClusterStartArgs,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster id, the active controller, the brokers and partitions without a leader.
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ClusterStartArgs {
    /// How many brokers (node ids 1..=N), 1 to 9 (the metadata quorum's limit).
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Node N's client port is base-port + N - 1.
    #[arg(long, default_value_t = 9092)]
    pub base_port: u16,
    /// Node N's inter-broker (controller) port is this + N - 1 [default: base-port + 1000].
    #[arg(long)]
    pub controller_base_port: Option<u16>,
    /// Holds `cluster.id` and each node's data in `node-N/`.
    #[arg(long, default_value = "./cluster-data")]
    pub data_dir: PathBuf,
}

/// Where a client command connects.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker address (host:port).
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
}

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Topic config, KEY=VALUE (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show partitions, offsets and configs of a topic.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Change topic configs or add partitions.
    Alter {
        name: String,
        /// Set a config, KEY=VALUE (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Reset a config to its default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<i32>,
    },
    /// Delete a topic's records below an offset (Kafka's DeleteRecords, as
    /// kafka-delete-records.sh): the log start moves there and earlier records are gone.
    DeleteRecords {
        name: String,
        /// The new log start: an offset, or `end` for the high watermark (everything so far).
        #[arg(long, value_parser = parse_before, allow_negative_numbers = true)]
        before: i64,
        /// Only this partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<i32>,
    },
}

/// `--before`: a non-negative offset, or `end` (DeleteRecords' -1, the high watermark).
fn parse_before(s: &str) -> Result<i64, String> {
    match s {
        "end" => Ok(-1),
        _ => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(format!("'{s}' is not an offset (a number >= 0, or 'end')")),
        },
    }
}

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups: group id, state, protocol type.
    List,
    /// Show a group's members and, per partition, committed offset, log end offset and lag.
    Describe { group: String },
    /// Delete a group and its committed offsets (the group must have no members).
    Delete { group: String },
    /// Compute new committed offsets for a group; a dry run unless --execute is given.
    ResetOffsets(ResetOffsetsArgs),
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("reset_to").required(true).multiple(false)
    .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
pub struct ResetOffsetsArgs {
    pub group: String,
    /// The topic whose offsets to reset.
    #[arg(long)]
    pub topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Reset to the earliest offset still in the log.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to this offset, clamped into [earliest, latest].
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Reset to the first offset whose timestamp is at or after this time (ms since the epoch);
    /// the log end offset if there is none.
    #[arg(long, value_name = "MS_SINCE_EPOCH")]
    pub to_datetime: Option<i64>,
    /// Move the committed offset by N (may be negative), clamped into [earliest, latest].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (default: only print them).
    #[arg(long)]
    pub execute: bool,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    pub topic: String,
    /// Split each line at the first occurrence of this separator into key and value.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key hash, else round-robin).
    #[arg(long)]
    pub partition: Option<i32>,
    /// acks: 0, 1 or all (-1).
    #[arg(long, default_value = "all")]
    pub acks: String,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    pub topic: String,
    /// Start from the earliest offset (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start from this offset (needs --partition, or applies to every partition).
    #[arg(long)]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Print keys too, separated by this string.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Exit when no record arrives for this long (ms); default: wait forever.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Directory for the benchmark's data (a fresh subdirectory is used and removed).
    #[arg(long, default_value = "./bench-data")]
    pub data_dir: PathBuf,
    /// Megabytes to produce in the throughput phase.
    #[arg(long, default_value_t = 256)]
    pub produce_mib: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Seconds for the latency phase.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Run the whole benchmark (limits and broker) this many times and end with the median of
    /// each ratio: on a shared machine one run's disk limit can swing by half.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Measure the group coordinator instead (rebalance time, offset-commit throughput).
    #[arg(long, conflicts_with = "cluster")]
    pub groups: bool,
    /// Measure a three-broker cluster of real processes instead (controller failover after
    /// kill -9, CreateTopics latency, idle CPU), in a fresh temp dir.
    #[arg(long)]
    pub cluster: bool,
    /// --cluster: how many times to kill -9 the active controller.
    #[arg(long, default_value_t = 10, requires = "cluster")]
    pub kills: u32,
    /// --cluster: CreateTopics requests per broker in the latency phase.
    #[arg(long, default_value_t = 50, requires = "cluster")]
    pub creates: usize,
    /// --cluster: seconds of idleness over which the brokers' CPU is sampled.
    #[arg(long, default_value_t = 10, requires = "cluster")]
    pub idle_secs: u64,
    /// --cluster: keep the temp dir (data dirs and broker logs) instead of removing it.
    #[arg(long, requires = "cluster")]
    pub keep: bool,
}

/// Parse the command line and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version.
                let _ = e.print();
                return 0;
            }
            eprintln!("strand: {}", one_line_error(&e.render().to_string()));
            return 2;
        }
    };
    init_tracing();
    let result = match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Topic(args) => topic::run(args),
        Command::Group(args) => group::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("strand: {e:#}");
            1
        }
    }
}

/// clap's multi-line error as one line naming the problem (without the usage and help hints).
fn one_line_error(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STRAND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A tokio runtime for client commands and the broker.
pub fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// A generated cluster id may start with '-' (base64url); `strand cluster` once passed such
    /// an id as a separate argument and every node refused it as an unknown flag.
    #[test]
    fn a_cluster_id_starting_with_a_dash_is_taken_as_the_id() {
        for args in [&["strand", "broker", "--cluster-id", "-mJxUYyHRKKQEIbDOkhMEA"][..], &["strand", "broker", "--cluster-id=-mJxUYyHRKKQEIbDOkhMEA"][..]] {
            match super::Cli::try_parse_from(args).unwrap().command {
                super::Command::Broker(b) => assert_eq!(b.cluster_id.as_deref(), Some("-mJxUYyHRKKQEIbDOkhMEA")),
                other => panic!("{other:?}"),
            }
        }
    }
}
