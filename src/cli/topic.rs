//! `strand topic create|list|describe|delete|alter|delete-records` over the Kafka protocol.

use anyhow::{anyhow, bail};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cli::{TopicArgs, TopicCommand};
use crate::client::{error_name, Client};

/// Parse `key=value`.
pub fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').ok_or_else(|| anyhow!("'{s}' is not KEY=VALUE"))?;
    if k.trim().is_empty() {
        bail!("'{s}' has an empty key");
    }
    Ok((k.trim().to_string(), v.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let configs: Vec<(String, String)> = match &args.command {
        TopicCommand::Create { configs, .. } => configs.iter().map(|c| parse_key_value(c)).collect::<anyhow::Result<_>>()?,
        TopicCommand::Alter { set, .. } => set.iter().map(|c| parse_key_value(c)).collect::<anyhow::Result<_>>()?,
        _ => Vec::new(),
    };
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let mut client = Client::connect(&args.connect.bootstrap_server).await?;
        match args.command {
            TopicCommand::Create { name, partitions, .. } => create(&mut client, &name, partitions, &configs).await,
            TopicCommand::List => list(&mut client).await,
            TopicCommand::Describe { name } => describe(&mut client, &name).await,
            TopicCommand::Delete { name } => delete(&mut client, &name).await,
            TopicCommand::Alter { name, delete, partitions, .. } => alter(&mut client, &name, &configs, &delete, partitions).await,
            TopicCommand::DeleteRecords { name, before, partition } => delete_records(&mut client, &name, before, partition).await,
        }
    })
}

async fn create(client: &mut Client, name: &str, partitions: i32, configs: &[(String, String)]) -> anyhow::Result<()> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(configs.iter().map(|(k, v)| CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v)))).collect());
    let (_, r) = client.send(&CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000), 7).await?;
    let t = r.topics.first().ok_or_else(|| anyhow!("empty CreateTopics response"))?;
    if t.error_code != 0 {
        bail!("creating topic '{name}': {}: {}", error_name(t.error_code), t.error_message.as_ref().map(|m| m.as_str()).unwrap_or(""));
    }
    println!("created topic {name} with {partitions} partition(s)");
    Ok(())
}

pub async fn metadata(client: &mut Client, topics: Option<&[&str]>, allow_create: bool) -> anyhow::Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|ts| ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect()))
        .with_allow_auto_topic_creation(allow_create);
    Ok(client.send(&request, 12).await?.1)
}

/// The partition count of `topic`, or an error naming the Kafka error. A topic that is still
/// being created (LEADER_NOT_AVAILABLE, or no partitions yet) is asked about again, a bounded
/// number of times.
pub async fn partition_count(client: &mut Client, topic: &str, allow_create: bool) -> anyhow::Result<i32> {
    const ATTEMPTS: u32 = 10;
    const LEADER_NOT_AVAILABLE: i16 = 5;
    for attempt in 1..=ATTEMPTS {
        let md = metadata(client, Some(&[topic]), allow_create).await?;
        let t = md.topics.first().ok_or_else(|| anyhow!("empty Metadata response"))?;
        let settling = t.error_code == LEADER_NOT_AVAILABLE || (t.error_code == 0 && t.partitions.is_empty());
        if settling && attempt < ATTEMPTS {
            tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
            continue;
        }
        if t.error_code != 0 {
            bail!("topic '{topic}': {}", error_name(t.error_code));
        }
        if t.partitions.is_empty() {
            bail!("topic '{topic}' has no partitions");
        }
        return i32::try_from(t.partitions.len()).map_err(|_| anyhow!("topic '{topic}': {} partitions", t.partitions.len()));
    }
    unreachable!("the last attempt returns")
}

async fn list(client: &mut Client) -> anyhow::Result<()> {
    let md = metadata(client, None, false).await?;
    let mut names: Vec<String> = md.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_string())).collect();
    names.sort();
    for n in names {
        println!("{n}");
    }
    Ok(())
}

/// (earliest, latest) offsets of every partition.
pub async fn offsets(client: &mut Client, topic: &str, partitions: i32) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for timestamp in [-2i64, -1] {
        let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions((0..partitions).map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp)).collect())]);
        let (_, r) = client.send(&request, 7).await?;
        let parts = &r.topics.first().ok_or_else(|| anyhow!("empty ListOffsets response"))?.partitions;
        let mut col = vec![0i64; partitions as usize];
        for p in parts {
            if p.error_code != 0 {
                bail!("{topic}-{}: ListOffsets: {}", p.partition_index, error_name(p.error_code));
            }
            if let Some(slot) = col.get_mut(p.partition_index as usize) {
                *slot = p.offset;
            }
        }
        out.push(col);
    }
    Ok(out[0].iter().zip(&out[1]).map(|(a, b)| (*a, *b)).collect())
}

async fn describe(client: &mut Client, name: &str) -> anyhow::Result<()> {
    let md = metadata(client, Some(&[name]), false).await?;
    let t = md.topics.first().ok_or_else(|| anyhow!("empty Metadata response"))?;
    if t.error_code != 0 {
        bail!("topic '{name}': {}", error_name(t.error_code));
    }
    let partitions = t.partitions.len() as i32;
    println!("topic {name}  id {}  partitions {partitions}", t.topic_id);
    let offsets = offsets(client, name, partitions).await?;
    println!("{:>9} {:>6} {:>16} {:>16}", "partition", "leader", "log_start_offset", "high_watermark");
    let mut sorted = t.partitions.clone();
    sorted.sort_by_key(|p| p.partition_index);
    for p in &sorted {
        let (start, end) = offsets.get(p.partition_index as usize).copied().unwrap_or((-1, -1));
        println!("{:>9} {:>6} {:>16} {:>16}", p.partition_index, p.leader_id.0, start, end);
    }
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None)]);
    let (_, r) = client.send(&request, 4).await?;
    let result = r.results.first().ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
    if result.error_code != 0 {
        bail!("topic '{name}': DescribeConfigs: {}", error_name(result.error_code));
    }
    println!("configs:");
    for c in &result.configs {
        // config_source 5 is DEFAULT_CONFIG.
        let note = if c.config_source == 5 { "" } else { "  (set)" };
        println!("  {}={}{note}", c.name.as_str(), c.value.as_ref().map(|v| v.as_str()).unwrap_or("null"));
    }
    Ok(())
}

async fn delete(client: &mut Client, name: &str) -> anyhow::Result<()> {
    let request = DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)]).with_timeout_ms(30_000);
    let (_, r) = client.send(&request, 5).await?;
    let t = r.responses.first().ok_or_else(|| anyhow!("empty DeleteTopics response"))?;
    if t.error_code != 0 {
        bail!("deleting topic '{name}': {}", error_name(t.error_code));
    }
    println!("deleted topic {name}");
    Ok(())
}

async fn alter(client: &mut Client, name: &str, set: &[(String, String)], delete: &[String], partitions: Option<i32>) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() && partitions.is_none() {
        bail!("nothing to alter: give --set KEY=VALUE, --delete KEY or --partitions N");
    }
    if !set.is_empty() || !delete.is_empty() {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| AlterableConfig::default().with_name(str_bytes(k)).with_config_operation(0).with_value(Some(str_bytes(v))))
            .collect();
        configs.extend(delete.iter().map(|k| AlterableConfig::default().with_name(str_bytes(k)).with_config_operation(1)));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(str_bytes(name))
            .with_configs(configs)]);
        let (_, r) = client.send(&request, 1).await?;
        let res = r.responses.first().ok_or_else(|| anyhow!("empty IncrementalAlterConfigs response"))?;
        if res.error_code != 0 {
            bail!("altering topic '{name}': {}: {}", error_name(res.error_code), res.error_message.as_ref().map(|m| m.as_str()).unwrap_or(""));
        }
        println!("altered configs of {name}");
    }
    if let Some(count) = partitions {
        let request = CreatePartitionsRequest::default()
            // Null assignments: the broker places them (kafka-protocol's default is an empty
            // list, which Kafka rejects as the wrong number of assignments).
            .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(count).with_assignments(None)])
            .with_timeout_ms(30_000);
        let (_, r) = client.send(&request, 3).await?;
        let res = r.results.first().ok_or_else(|| anyhow!("empty CreatePartitions response"))?;
        if res.error_code != 0 {
            bail!("adding partitions to '{name}': {}: {}", error_name(res.error_code), res.error_message.as_ref().map(|m| m.as_str()).unwrap_or(""));
        }
        println!("{name} now has {count} partitions");
    }
    Ok(())
}

async fn delete_records(client: &mut Client, name: &str, before: i64, partition: Option<i32>) -> anyhow::Result<()> {
    let partitions: Vec<i32> = match partition {
        Some(p) => vec![p],
        None => (0..partition_count(client, name, false).await?).collect(),
    };
    let request = DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic_name(name))
        .with_partitions(partitions.iter().map(|p| DeleteRecordsPartition::default().with_partition_index(*p).with_offset(before)).collect())]);
    let (_, r) = client.send(&request, 2).await?;
    let mut results = r.topics.first().ok_or_else(|| anyhow!("empty DeleteRecords response"))?.partitions.clone();
    results.sort_by_key(|p| p.partition_index);
    let mut failed = Vec::new();
    for p in &results {
        if p.error_code == 0 {
            println!("{name}-{}: log start offset {}", p.partition_index, p.low_watermark);
        } else {
            failed.push(format!("{name}-{}: {}", p.partition_index, error_name(p.error_code)));
        }
    }
    if !failed.is_empty() {
        bail!("deleting records: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("retention.ms=100").unwrap(), ("retention.ms".into(), "100".into()));
        assert_eq!(parse_key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_key_value("novalue").unwrap_err().to_string().contains("novalue"));
        assert!(parse_key_value("=x").is_err());
    }
}
