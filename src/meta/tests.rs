use std::collections::BTreeMap;

use super::image::*;
use super::records::*;

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);

fn id(n: u8) -> TopicId {
    TopicId([n; 16])
}

fn create(name: &str, topic_id: TopicId, configs: &[(&str, &str)]) -> MetadataRecord {
    MetadataRecord::CreateTopic(CreateTopicRecord {
        name: name.to_string(),
        topic_id,
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })
}

fn partition(topic_id: TopicId, partition: i32, replicas: &[NodeId]) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        topic_id,
        partition,
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader: replicas.first().copied(),
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

fn config(topic: &str, key: &str, value: Option<&str>) -> MetadataRecord {
    MetadataRecord::Config(ConfigRecord {
        resource: ConfigResource::Topic { name: topic.to_string() },
        key: key.to_string(),
        value: value.map(str::to_string),
    })
}

fn register(node_id: NodeId, broker_epoch: i64) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        node_id,
        incarnation: [broker_epoch as u8; 16],
        broker_epoch,
        endpoints: vec![Endpoint { listener: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 }],
        rack: Some("r1".into()),
    })
}

/// A cluster's life: formed, two brokers, topics created, grown, reconfigured, a leader moved,
/// producer ids handed out, a topic deleted.
fn history() -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: [9; 16] }),
        register(N1, 1),
        MetadataRecord::UnfenceBroker(BrokerEpochRecord { node_id: N1, broker_epoch: 1 }),
        register(N2, 2),
        create("orders", id(1), &[("retention.ms", "1000")]),
        partition(id(1), 0, &[N1]),
        partition(id(1), 1, &[N1]),
        create("clicks", id(2), &[]),
        partition(id(2), 0, &[N2, N1]),
        MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord { node_id: N1, first: 0, size: 1000 }),
        partition(id(1), 2, &[N1]),
        config("orders", "cleanup.policy", Some("delete")),
        config("orders", "retention.ms", None),
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id(2),
            partition: 0,
            leader: Some(Some(N1)),
            isr: Some(vec![N1]),
            replicas: None,
        }),
        MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord { node_id: N2, first: 1000, size: 1000 }),
        create("scratch", id(3), &[]),
        partition(id(3), 0, &[N1]),
        MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: id(3) }),
        MetadataRecord::FenceBroker(BrokerEpochRecord { node_id: N1, broker_epoch: 1 }),
    ]
}

fn replay(records: &[MetadataRecord]) -> MetadataImage {
    MetadataImage::from_snapshot(records).expect("a consistent history")
}

#[test]
fn a_history_with_creates_partitions_configs_and_a_delete() {
    let image = replay(&history());
    assert_eq!(image.cluster_id(), Some(uuid::Uuid::from_bytes([9; 16])));
    let names: Vec<&str> = image.topics().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["clicks", "orders"], "by name, and scratch is gone");
    assert!(image.topic("scratch").is_none() && image.topic_by_id(id(3)).is_none());

    let orders = image.topic("orders").unwrap();
    assert_eq!(orders.id, id(1));
    assert_eq!(orders.partition_count(), 3);
    assert_eq!(orders.configs, BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]));
    assert_eq!(image.topic_by_id(id(1)).map(|t| t.name.as_str()), Some("orders"));

    let clicks = image.topic("clicks").unwrap().partition(0).unwrap();
    assert_eq!(clicks.replicas, [N2, N1]);
    assert_eq!((clicks.leader, clicks.isr.as_slice()), (Some(N1), &[N1][..]));
    assert_eq!((clicks.leader_epoch, clicks.partition_epoch), (1, 1), "a new leader bumps both epochs");

    assert_eq!(image.next_producer_id(), 2000);
    let brokers: Vec<(NodeId, bool)> = image.brokers().map(|b| (b.registration.node_id, b.fenced)).collect();
    assert_eq!(brokers, [(N1, true), (N2, true)]);
    assert_eq!(image.broker(N2).unwrap().registration.rack.as_deref(), Some("r1"));
}

#[test]
fn replay_and_snapshot_then_restore_give_the_same_image() {
    let records = history();
    // At every prefix, not only at the end.
    for n in 0..=records.len() {
        let image = replay(&records[..n]);
        let snapshot = image.snapshot();
        let restored = MetadataImage::from_snapshot(&snapshot).expect("a snapshot restores");
        assert_eq!(restored, image, "after {n} records");
        assert_eq!(restored.snapshot(), snapshot, "a restored image snapshots the same");
        // Records after the snapshot apply to the restored image as to the replayed one.
        let rest = &records[n..];
        assert_eq!(restored.applied(rest).unwrap(), replay(&records), "after {n} records then the rest");
    }
}

#[test]
fn the_same_records_give_the_same_snapshot_bytes() {
    let a = encode_snapshot(&replay(&history()).snapshot());
    let b = encode_snapshot(&replay(&history()).snapshot());
    assert_eq!(a, b);
    // The same topics created in the other order snapshot the same (topics go by name).
    let h = history();
    let reordered: Vec<MetadataRecord> =
        h[..4].iter().chain([&h[7], &h[8], &h[4], &h[5], &h[6]]).chain(&h[9..]).cloned().collect();
    assert_eq!(encode_snapshot(&replay(&reordered).snapshot()), a);
    assert_eq!(decode_snapshot(&a).unwrap(), replay(&history()).snapshot());
}

#[test]
fn records_round_trip_through_their_encoding() {
    for r in history() {
        let bytes = encode_record(&r);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode_record(&bytes).unwrap(), r);
    }
    let mut bytes = encode_record(&history()[0]);
    bytes[0] = 99;
    assert!(decode_record(&bytes).unwrap_err().contains("version 99"));
    assert!(decode_record(&[]).is_err());
    assert!(decode_record(&[RECORD_VERSION, 200]).is_err(), "an unknown record kind is an error");
}

/// Each record contradicting the image is refused with an error, not a panic, and leaves the
/// image as it was.
#[test]
fn a_record_that_contradicts_the_image_is_an_error() {
    let image = replay(&history());
    let bad: Vec<(MetadataRecord, &str)> = vec![
        (MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: [1; 16] }), "cluster id is already"),
        (create("orders", id(7), &[]), "already exists"),
        (create("other", id(1), &[]), "already in use"),
        (create("other", TopicId([0; 16]), &[]), "nil topic id"),
        (create("bad/name", id(7), &[]), "contains '/'"),
        (partition(id(7), 0, &[N1]), "no topic has id"),
        (partition(id(1), 5, &[N1]), "not the next one"),
        (partition(id(1), 1, &[N1]), "not the next one"),
        (partition(id(1), 3, &[]), "no replicas"),
        (partition(id(1), 3, &[N1, N1]), "listed twice"),
        (
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id(1),
                partition: 3,
                replicas: vec![N1],
                isr: vec![N2],
                leader: None,
                leader_epoch: 0,
                partition_epoch: 0,
            }),
            "is not a replica",
        ),
        (
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: id(1),
                partition: 0,
                leader: Some(Some(N2)),
                isr: None,
                replicas: None,
            }),
            "not in sync",
        ),
        (
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: id(1),
                partition: -1,
                leader: None,
                isr: None,
                replicas: None,
            }),
            "no partition -1",
        ),
        (MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: id(3) }), "no topic has id"),
        (config("scratch", "retention.ms", Some("1")), "does not exist"),
        (MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord { node_id: N1, first: 1999, size: 10 }), "does not follow"),
        (MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord { node_id: N1, first: 2000, size: 0 }), "does not follow"),
        (MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord { node_id: N1, first: i64::MAX, size: 2 }), "does not follow"),
        (register(N2, 2), "has epoch 2, not 2"),
        (MetadataRecord::UnfenceBroker(BrokerEpochRecord { node_id: N1, broker_epoch: 0 }), "has epoch 1, not 0"),
        (MetadataRecord::FenceBroker(BrokerEpochRecord { node_id: NodeId(5), broker_epoch: 1 }), "not registered"),
    ];
    for (record, expect) in bad {
        let mut copy = image.clone();
        let err = copy.apply(&record).expect_err(expect);
        assert!(err.to_string().contains(expect), "{record:?}: {err}");
        assert_eq!(copy, image, "{record:?} changed the image");
        // A batch with it fails as a whole.
        assert!(image.applied(&[config("orders", "k", Some("v")), record]).is_err());
    }
}

#[test]
fn validation_for_the_controller() {
    let image = replay(&history());
    assert_eq!(image.validate_create("fresh", 3), Ok(()));
    assert_eq!(image.validate_create("orders", 1), Err(ImageError::TopicExists { name: "orders".into() }));
    assert_eq!(
        image.validate_create("click", 0).unwrap_err().to_string(),
        "Number of partitions must be between 1 and 10000, got 0."
    );
    assert!(matches!(image.validate_create("a b", 1), Err(ImageError::InvalidTopicName(_))));
    let mut dotted = image.clone();
    dotted.apply(&create("web.clicks", id(8), &[])).unwrap();
    assert_eq!(
        dotted.validate_create("web_clicks", 1).unwrap_err().to_string(),
        "Topic 'web_clicks' collides with existing topic: web.clicks"
    );

    assert_eq!(image.validate_add_partitions("orders", 5).map(|t| t.id), Ok(id(1)));
    assert_eq!(image.validate_add_partitions("orders", 3), Err(ImageError::PartitionCountUnchanged { current: 3 }));
    assert_eq!(
        image.validate_add_partitions("orders", 2).unwrap_err().to_string(),
        "Topic currently has 3 partitions, which is higher than the requested 2."
    );
    assert!(matches!(image.validate_add_partitions("orders", 10_001), Err(ImageError::PartitionCountOverMax { .. })));
    assert!(matches!(image.validate_add_partitions("nope", 2), Err(ImageError::UnknownTopic { .. })));

    // Config changes: set new and changed keys, remove dropped ones; none when equal.
    let next = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
    let changes = image.config_changes("orders", &next).unwrap();
    assert_eq!(changes, [config("orders", "cleanup.policy", None), config("orders", "retention.ms", Some("5"))]);
    assert_eq!(image.applied(&changes).unwrap().topic("orders").unwrap().configs, next);
    let same = image.topic("orders").unwrap().configs.clone();
    assert_eq!(image.config_changes("orders", &same).unwrap(), []);
}

#[test]
fn a_reregistered_broker_starts_fenced_with_its_new_epoch() {
    let mut image = replay(&history()[..3]);
    assert!(!image.broker(N1).unwrap().fenced);
    image.apply(&register(N1, 5)).unwrap();
    let b = image.broker(N1).unwrap();
    assert_eq!((b.registration.broker_epoch, b.fenced), (5, true));
    image.apply(&MetadataRecord::UnregisterBroker(BrokerEpochRecord { node_id: N1, broker_epoch: 5 })).unwrap();
    assert!(image.broker(N1).is_none());
}
