//! `strand group list|describe|delete|reset-offsets` over the Kafka protocol, in the habits of
//! Kafka's kafka-consumer-groups.sh. Every request goes to the bootstrap broker: on a single
//! broker it is every group's coordinator.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeConfigsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cli::{GroupArgs, GroupCommand, ResetOffsetsArgs};
use crate::client::{error_name, Client};

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// Highest versions asked for (each is within kafka-protocol 0.18's range).
const LIST_GROUPS_VERSION: i16 = 5;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const DELETE_GROUPS_VERSION: i16 = 2;
const OFFSET_FETCH_VERSION: i16 = 8;
const OFFSET_COMMIT_VERSION: i16 = 8;
const LIST_OFFSETS_VERSION: i16 = 7;
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
/// ConfigResource.Type GROUP.
const GROUP_RESOURCE_TYPE: i8 = 32;

/// ListOffsets timestamps with a special meaning.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// (topic, partition)
type Partition = (String, i32);

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_string() } else { s.to_string() }
}

fn does_not_exist(group: &str) -> anyhow::Error {
    anyhow!("group '{group}' does not exist")
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let spec = match &args.command {
        GroupCommand::ResetOffsets(r) => Some(ResetSpec::from_args(r)?),
        _ => None,
    };
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let mut client = Client::connect(&args.connect.bootstrap_server).await?;
        match args.command {
            GroupCommand::List => list(&mut client).await,
            GroupCommand::Describe { group } => describe(&mut client, &group).await,
            GroupCommand::Delete { group } => delete(&mut client, &group).await,
            GroupCommand::ResetOffsets(r) => reset_offsets(&mut client, &r, spec.expect("parsed above")).await,
        }
    })
}

/// Print rows under a header, columns left-aligned and two spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

// ---- assignment decoding ----------------------------------------------------------------

/// A bounds-checked big-endian reader; every read returns None past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length: -1 (null) counts as empty, other negatives are malformed.
    fn array_len(&mut self) -> Option<usize> {
        match self.i32()? {
            -1 => Some(0),
            n if n < 0 => None,
            n => Some(n as usize),
        }
    }
}

/// Decode a member's assignment as Kafka's ConsumerProtocolAssignment: int16 version, an array of
/// (string topic, array of int32 partitions), then nullable bytes of user data. Empty bytes are
/// no assignment (a member that has not been assigned yet). None when the bytes are not such an
/// assignment (truncated, negative lengths, topic names that are not UTF-8); never panics, and
/// allocates only in proportion to the bytes actually present. Bytes after the user data are
/// ignored, as newer versions may append fields.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader { buf: bytes };
    if r.i16()? < 0 {
        return None;
    }
    let topics = r.array_len()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        // Each iteration consumes at least 6 bytes or returns, so the loop is bounded by the input.
        let len = r.i16()?;
        if len < 0 {
            return None;
        }
        let name = std::str::from_utf8(r.take(len as usize)?).ok()?.to_string();
        let count = r.array_len()?;
        let mut partitions = Vec::new();
        for _ in 0..count {
            partitions.push(r.i32()?);
        }
        out.push((name, partitions));
    }
    match r.i32()? {
        -1 => {}
        n if n < 0 => return None,
        n => {
            r.take(n as usize)?;
        }
    }
    Some(out)
}

/// "orders(0,1),audit(2)"; "-" for none; "?" when the assignment did not decode.
pub fn format_assignment(assignment: Option<&[(String, Vec<i32>)]>) -> String {
    match assignment {
        None => "?".to_string(),
        Some([]) => "-".to_string(),
        Some(topics) => topics
            .iter()
            .map(|(t, ps)| format!("{t}({})", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join(","),
    }
}

// ---- requests ---------------------------------------------------------------------------

async fn describe_group(client: &mut Client, group: &str) -> anyhow::Result<DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let (_, r) = client.send(&request, DESCRIBE_GROUPS_VERSION).await?;
    r.groups.into_iter().next().ok_or_else(|| anyhow!("empty DescribeGroups response"))
}

/// The group's committed offsets, every partition (topics = null). A group the broker does not
/// know has none.
async fn committed_offsets(client: &mut Client, group: &str) -> anyhow::Result<BTreeMap<Partition, i64>> {
    let version = client.version_for::<OffsetFetchRequest>(OFFSET_FETCH_VERSION)?;
    // v8 moved the group and its topics into a `groups` array; the old fields must stay unset.
    let request = if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(group_id(group)).with_topics(None)])
    } else {
        OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None)
    };
    let r = client.send_at(&request, version).await?;
    // (topic, partition, committed offset, error code)
    let (error, partitions): (i16, Vec<(String, i32, i64, i16)>) = if version >= 8 {
        let g = r
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == group)
            .or(r.groups.first())
            .ok_or_else(|| anyhow!("empty OffsetFetch response"))?;
        let ps = g
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code)))
            .collect();
        (g.error_code, ps)
    } else {
        let ps = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code)))
            .collect();
        (r.error_code, ps)
    };
    if error == GROUP_ID_NOT_FOUND {
        return Ok(BTreeMap::new());
    }
    if error != 0 {
        bail!("group '{group}': OffsetFetch: {}", error_name(error));
    }
    let mut out = BTreeMap::new();
    for (topic, partition, offset, error) in partitions {
        if error != 0 {
            bail!("group '{group}': {topic}-{partition}: OffsetFetch: {}", error_name(error));
        }
        // -1: no committed offset.
        if offset >= 0 {
            out.insert((topic, partition), offset);
        }
    }
    Ok(out)
}

/// ListOffsets at `timestamp` (LATEST, EARLIEST, or ms since the epoch: the first offset whose
/// timestamp is at or after it, -1 if none) for each partition: its offset or error code.
async fn list_offsets(client: &mut Client, partitions: &BTreeSet<Partition>, timestamp: i64) -> anyhow::Result<BTreeMap<Partition, Result<i64, i16>>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(
        by_topic
            .iter()
            .map(|(t, ps)| {
                ListOffsetsTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(ps.iter().map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(timestamp)).collect())
            })
            .collect(),
    );
    let (_, r) = client.send(&request, LIST_OFFSETS_VERSION).await?;
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            let result = if p.error_code == 0 { Ok(p.offset) } else { Err(p.error_code) };
            out.insert((t.name.0.to_string(), p.partition_index), result);
        }
    }
    Ok(out)
}

// ---- list, describe, delete -------------------------------------------------------------

async fn list(client: &mut Client) -> anyhow::Result<()> {
    let (_, r) = client.send(&ListGroupsRequest::default(), LIST_GROUPS_VERSION).await?;
    if r.error_code != 0 {
        bail!("listing groups: {}", error_name(r.error_code));
    }
    // group_state is only in v4+; below it prints "-".
    let mut rows: Vec<Vec<String>> =
        r.groups.iter().map(|g| vec![g.group_id.0.to_string(), or_dash(&g.group_state), or_dash(&g.protocol_type)]).collect();
    rows.sort();
    print_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

async fn describe(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let g = describe_group(client, group).await?;
    if g.error_code == GROUP_ID_NOT_FOUND {
        return Err(does_not_exist(group));
    }
    if g.error_code != 0 {
        bail!("group '{group}': DescribeGroups: {}", error_name(g.error_code));
    }
    let committed = committed_offsets(client, group).await?;
    let state = g.group_state.as_str();
    if g.members.is_empty() && committed.is_empty() && matches!(state, "Dead" | "Empty" | "") {
        return Err(does_not_exist(group));
    }

    // Members and who owns which partition; only consumer groups carry a ConsumerProtocolAssignment.
    let consumer = matches!(g.protocol_type.as_str(), "consumer" | "");
    let mut owner: BTreeMap<Partition, String> = BTreeMap::new();
    let mut member_rows = Vec::new();
    for m in &g.members {
        let assignment = if consumer { decode_assignment(&m.member_assignment) } else { None };
        for (t, ps) in assignment.iter().flatten() {
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.to_string());
            }
        }
        member_rows.push(vec![or_dash(&m.member_id), or_dash(&m.client_id), or_dash(&m.client_host), format_assignment(assignment.as_deref())]);
    }
    member_rows.sort();

    let mut partitions: BTreeSet<Partition> = committed.keys().cloned().collect();
    partitions.extend(owner.keys().cloned());
    let ends = list_offsets(client, &partitions, LATEST).await?;

    println!(
        "group {group}  state {}  protocol-type {}  protocol {}  members {}",
        or_dash(state),
        or_dash(&g.protocol_type),
        or_dash(&g.protocol_data),
        g.members.len()
    );
    if !member_rows.is_empty() {
        print_table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], &member_rows);
        println!();
    }
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp).copied();
            // A partition whose log end offset cannot be read (e.g. its topic was deleted) shows "-".
            let end = ends.get(tp).and_then(|r| r.ok());
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).to_string(),
                _ => "-".to_string(),
            };
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
            vec![tp.0.clone(), tp.1.to_string(), show(current), show(end), lag, owner.get(tp).map_or_else(|| "-".to_string(), |m| or_dash(m))]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"], &rows);
    print_group_configs(client, group).await
}

/// The group's configs (KIP-848: DescribeConfigs on resource type GROUP), its own values marked.
async fn print_group_configs(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(GROUP_RESOURCE_TYPE)
        .with_resource_name(str_bytes(group))
        .with_configuration_keys(None)]);
    let (_, r) = client.send(&request, DESCRIBE_CONFIGS_VERSION).await?;
    let result = r.results.first().ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
    println!();
    if result.error_code != 0 {
        // A broker without group configs: the rest of the description still stands.
        println!("configs: unavailable ({})", error_name(result.error_code));
        return Ok(());
    }
    println!("configs:");
    for c in &result.configs {
        // config_source 8 is GROUP_CONFIG: set for this group.
        let note = if c.config_source == 8 { "  (set)" } else { "" };
        println!("  {}={}{note}", c.name.as_str(), c.value.as_ref().map(|v| v.as_str()).unwrap_or("null"));
    }
    Ok(())
}

async fn delete(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let (_, r) = client.send(&request, DELETE_GROUPS_VERSION).await?;
    let res = r
        .results
        .iter()
        .find(|x| x.group_id.0.as_str() == group)
        .or(r.results.first())
        .ok_or_else(|| anyhow!("empty DeleteGroups response"))?;
    match res.error_code {
        0 => {
            println!("deleted group {group}");
            Ok(())
        }
        NON_EMPTY_GROUP => bail!("deleting group '{group}': {}: the group has active members", error_name(res.error_code)),
        GROUP_ID_NOT_FOUND => bail!("deleting group '{group}': {}: the group does not exist", error_name(res.error_code)),
        code => bail!("deleting group '{group}': {}", error_name(code)),
    }
}

// ---- reset-offsets ----------------------------------------------------------------------

/// Where `reset-offsets` moves each partition's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpec {
    Earliest,
    Latest,
    /// This offset, clamped into [earliest, latest].
    Offset(i64),
    /// The first offset at or after this time (ms since the epoch); latest if none.
    Datetime(i64),
    /// The committed offset plus this, clamped into [earliest, latest].
    ShiftBy(i64),
}

impl ResetSpec {
    /// The one --to-*/--shift-by option given (clap's ArgGroup already requires exactly one).
    pub fn from_args(a: &ResetOffsetsArgs) -> anyhow::Result<ResetSpec> {
        let mut given = Vec::new();
        if a.to_earliest {
            given.push(ResetSpec::Earliest);
        }
        if a.to_latest {
            given.push(ResetSpec::Latest);
        }
        given.extend(a.to_offset.map(ResetSpec::Offset));
        given.extend(a.to_datetime.map(ResetSpec::Datetime));
        given.extend(a.shift_by.map(ResetSpec::ShiftBy));
        match given.as_slice() {
            [one] => Ok(*one),
            _ => bail!("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"),
        }
    }
}

/// `offset` moved into [earliest, latest].
pub fn clamp_offset(offset: i64, earliest: i64, latest: i64) -> i64 {
    offset.max(earliest).min(latest)
}

/// The new offset of one partition whose log spans [earliest, latest]. `current` is its committed
/// offset (ShiftBy needs one); `at_time` is ListOffsets' answer for Datetime (-1: no record at or
/// after the time). Err names what is missing.
pub fn new_offset(spec: ResetSpec, earliest: i64, latest: i64, current: Option<i64>, at_time: Option<i64>) -> Result<i64, String> {
    Ok(match spec {
        ResetSpec::Earliest => earliest,
        ResetSpec::Latest => latest,
        ResetSpec::Offset(n) => clamp_offset(n, earliest, latest),
        ResetSpec::Datetime(_) => match at_time {
            Some(o) if o >= 0 => clamp_offset(o, earliest, latest),
            _ => latest,
        },
        ResetSpec::ShiftBy(n) => {
            let c = current.ok_or_else(|| "no committed offset to shift".to_string())?;
            clamp_offset(c.saturating_add(n), earliest, latest)
        }
    })
}

/// The offset of every partition in `partitions` from a ListOffsets answer, or an error naming it.
fn offsets_of(topic: &str, partitions: &[i32], answer: &BTreeMap<Partition, Result<i64, i16>>) -> anyhow::Result<Vec<i64>> {
    partitions
        .iter()
        .map(|p| match answer.get(&(topic.to_string(), *p)) {
            Some(Ok(o)) => Ok(*o),
            Some(Err(e)) => bail!("{topic}-{p}: ListOffsets: {}", error_name(*e)),
            None => bail!("{topic}-{p}: no ListOffsets answer"),
        })
        .collect()
}

async fn reset_offsets(client: &mut Client, args: &ResetOffsetsArgs, spec: ResetSpec) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let topic = args.topic.as_str();

    // Like Kafka: offsets are only reset for a group no consumer is in.
    let g = describe_group(client, group).await?;
    if g.error_code != 0 && g.error_code != GROUP_ID_NOT_FOUND {
        bail!("group '{group}': DescribeGroups: {}", error_name(g.error_code));
    }
    let state = g.group_state.as_str();
    if g.error_code == 0 && (!g.members.is_empty() || !matches!(state, "Empty" | "Dead" | "")) {
        bail!("group '{group}' must be inactive to reset offsets, but it is {} with {} member(s)", or_dash(state), g.members.len());
    }

    let count = crate::cli::topic::partition_count(client, topic, false).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if (0..count).contains(&p) => vec![p],
        Some(p) => bail!("topic '{topic}' has no partition {p} (it has {count})"),
        None => (0..count).collect(),
    };
    let set: BTreeSet<Partition> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let earliest = offsets_of(topic, &partitions, &list_offsets(client, &set, EARLIEST).await?)?;
    let latest = offsets_of(topic, &partitions, &list_offsets(client, &set, LATEST).await?)?;
    let at_time = match spec {
        ResetSpec::Datetime(ms) => Some(offsets_of(topic, &partitions, &list_offsets(client, &set, ms).await?)?),
        _ => None,
    };
    let committed = match spec {
        ResetSpec::ShiftBy(_) => committed_offsets(client, group).await?,
        _ => BTreeMap::new(),
    };

    let mut new = Vec::new();
    for (i, p) in partitions.iter().enumerate() {
        let current = committed.get(&(topic.to_string(), *p)).copied();
        let at = at_time.as_ref().map(|v| v[i]);
        let offset = new_offset(spec, earliest[i], latest[i], current, at).map_err(|e| anyhow!("group '{group}' {topic}-{p}: {e}"))?;
        new.push((*p, offset));
    }
    let rows: Vec<Vec<String>> = new.iter().map(|(p, o)| vec![topic.to_string(), p.to_string(), o.to_string()]).collect();
    print_table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
    if !args.execute {
        println!("dry run; pass --execute to apply");
        return Ok(());
    }

    // Kafka's admin commits for an empty group as generation -1 and no member id.
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(
            new.iter()
                .map(|(p, o)| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_metadata(Some(StrBytes::from_static_str("")))
                })
                .collect(),
        )]);
    let (_, r) = client.send(&request, OFFSET_COMMIT_VERSION).await?;
    let mut answered: BTreeMap<i32, i16> = BTreeMap::new();
    for t in r.topics.iter().filter(|t| t.name.0.as_str() == topic) {
        for p in &t.partitions {
            answered.insert(p.partition_index, p.error_code);
        }
    }
    let mut failures = Vec::new();
    let mut active = false;
    for (p, _) in &new {
        match answered.get(p) {
            Some(0) => {}
            Some(&code) => {
                active |= matches!(code, UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION);
                failures.push(format!("{topic}-{p}: {}", error_name(code)));
            }
            None => failures.push(format!("{topic}-{p}: no answer")),
        }
    }
    if !failures.is_empty() {
        let hint = if active { "; the group must be inactive (stop its consumers) to reset offsets" } else { "" };
        bail!("committing offsets of group '{group}': {}{hint}", failures.join(", "));
    }
    println!("committed {} offset(s) for group {group}", new.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConsumerProtocolAssignment as Kafka's consumer writes it.
    fn encode_assignment(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        match user_data {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(d) => {
                b.extend_from_slice(&(d.len() as i32).to_be_bytes());
                b.extend_from_slice(d);
            }
        }
        b
    }

    #[test]
    fn assignment_decodes() {
        let bytes = encode_assignment(0, &[("orders", &[0, 2]), ("audit", &[1])], None);
        let a = decode_assignment(&bytes).unwrap();
        assert_eq!(a, vec![("orders".to_string(), vec![0, 2]), ("audit".to_string(), vec![1])]);
        assert_eq!(format_assignment(Some(&a)), "orders(0,2),audit(1)");

        let bytes = encode_assignment(3, &[("t", &[5])], Some(b"userdata"));
        assert_eq!(decode_assignment(&bytes).unwrap(), vec![("t".to_string(), vec![5])]);

        // No bytes: not assigned yet. No topics: assigned nothing.
        assert_eq!(decode_assignment(&[]).unwrap(), Vec::new());
        assert_eq!(decode_assignment(&encode_assignment(1, &[], None)).unwrap(), Vec::new());
        assert_eq!(format_assignment(Some(&[])), "-");
        assert_eq!(format_assignment(None), "?");
    }

    #[test]
    fn truncated_assignment_is_none_at_every_length() {
        let bytes = encode_assignment(1, &[("orders", &[0, 1, 2]), ("audit", &[7])], Some(b"xyz"));
        assert!(decode_assignment(&bytes).is_some());
        for len in 1..bytes.len() {
            assert_eq!(decode_assignment(&bytes[..len]), None, "truncated to {len} bytes");
        }
    }

    #[test]
    fn garbage_assignment_does_not_panic() {
        // Huge or negative lengths.
        let mut huge = vec![0, 0];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_assignment(&huge), None);
        let mut negative = vec![0, 0];
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(decode_assignment(&negative), None);
        let mut bad_topic = vec![0, 0, 0, 0, 0, 1];
        bad_topic.extend_from_slice(&(-3i16).to_be_bytes());
        assert_eq!(decode_assignment(&bad_topic), None);
        let mut huge_partitions = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        huge_partitions.extend_from_slice(&i32::MAX.to_be_bytes());
        huge_partitions.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(decode_assignment(&huge_partitions), None);
        // Topic name that is not UTF-8.
        let bytes = encode_assignment(0, &[("ab", &[0])], None);
        let mut not_utf8 = bytes.clone();
        not_utf8[8] = 0xff;
        assert_eq!(decode_assignment(&not_utf8), None);
        // Negative version.
        assert_eq!(decode_assignment(&encode_assignment(-1, &[], None)), None);
        // Pseudo-random bytes: any answer is fine, but no panic.
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x >> 24) as u8
                })
                .collect();
            let _ = decode_assignment(&bytes);
        }
    }

    #[test]
    fn to_offset_is_clamped() {
        assert_eq!(new_offset(ResetSpec::Offset(3), 0, 5, None, None), Ok(3));
        assert_eq!(new_offset(ResetSpec::Offset(99), 0, 5, None, None), Ok(5));
        assert_eq!(new_offset(ResetSpec::Offset(1), 2, 5, None, None), Ok(2));
        assert_eq!(new_offset(ResetSpec::Offset(-7), 2, 5, None, None), Ok(2));
        assert_eq!(new_offset(ResetSpec::Offset(0), 0, 0, None, None), Ok(0));
    }

    #[test]
    fn shift_by_is_clamped_and_needs_a_committed_offset() {
        assert_eq!(new_offset(ResetSpec::ShiftBy(-1), 0, 5, Some(3), None), Ok(2));
        assert_eq!(new_offset(ResetSpec::ShiftBy(2), 0, 5, Some(3), None), Ok(5));
        assert_eq!(new_offset(ResetSpec::ShiftBy(100), 0, 5, Some(3), None), Ok(5));
        assert_eq!(new_offset(ResetSpec::ShiftBy(-100), 1, 5, Some(3), None), Ok(1));
        assert_eq!(new_offset(ResetSpec::ShiftBy(i64::MAX), 0, 5, Some(3), None), Ok(5));
        assert_eq!(new_offset(ResetSpec::ShiftBy(i64::MIN), 0, 5, Some(3), None), Ok(0));
        assert!(new_offset(ResetSpec::ShiftBy(1), 0, 5, None, None).unwrap_err().contains("no committed offset"));
    }

    #[test]
    fn earliest_latest_and_datetime() {
        assert_eq!(new_offset(ResetSpec::Earliest, 2, 9, Some(4), None), Ok(2));
        assert_eq!(new_offset(ResetSpec::Latest, 2, 9, Some(4), None), Ok(9));
        assert_eq!(new_offset(ResetSpec::Datetime(1000), 2, 9, None, Some(6)), Ok(6));
        // No record at or after the time: the log end.
        assert_eq!(new_offset(ResetSpec::Datetime(1000), 2, 9, None, Some(-1)), Ok(9));
    }

    #[test]
    fn reset_options_parse() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let base = ["strand", "group", "reset-offsets", "g", "--topic", "t"];
            crate::cli::Cli::try_parse_from(base.iter().chain(args))
        };
        let spec = |args: &[&str]| match parse(args).unwrap().command {
            crate::cli::Command::Group(GroupArgs { command: GroupCommand::ResetOffsets(r), .. }) => (ResetSpec::from_args(&r).unwrap(), r.execute),
            other => panic!("{other:?}"),
        };
        assert_eq!(spec(&["--to-earliest"]), (ResetSpec::Earliest, false));
        assert_eq!(spec(&["--shift-by", "-2", "--execute"]), (ResetSpec::ShiftBy(-2), true));
        assert_eq!(spec(&["--to-offset", "3"]), (ResetSpec::Offset(3), false));
        assert_eq!(spec(&["--to-datetime", "1700000000000"]), (ResetSpec::Datetime(1_700_000_000_000), false));
        assert!(parse(&[]).is_err(), "one of the --to-* options is required");
        assert!(parse(&["--to-earliest", "--to-latest"]).is_err(), "only one");
        assert!(parse(&["--to-offset", "3", "--shift-by", "1"]).is_err(), "only one");
    }
}
