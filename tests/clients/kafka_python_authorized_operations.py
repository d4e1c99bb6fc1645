#!/usr/bin/env python3
"""KIP-430 authorized operations through kafka-python's admin client (driven by
tests/python_kcat.rs; issue 21).

usage: kafka_python_authorized_operations.py HOST:PORT
kafka-python asks for authorized operations in describe_topics (Metadata), describe_cluster
(DescribeCluster) and describe_groups (DescribeGroups). With no authorizer Kafka answers every
operation the resource type supports (AclEntry.supportedOperations); strand answered the
"not asked" sentinel, which kafka-python shows as None. Prints "ok".
"""
import sys

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

TOPIC_OPS = {"READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPS = {"CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"}
GROUP_OPS = {"READ", "DESCRIBE", "DELETE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}


def ops(described):
    got = described.get("authorized_operations")
    assert got is not None, f"no authorized operations in {described}"
    return set(got)


def main():
    addr = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=30000)
    admin.create_topics([NewTopic("py-ops", 2, 1)])

    topics = admin.describe_topics(["py-ops"])
    assert len(topics) == 1 and topics[0]["name"] == "py-ops", topics
    assert ops(topics[0]) == TOPIC_OPS, f"topic operations {topics[0].get('authorized_operations')}"

    cluster = admin.describe_cluster()
    assert ops(cluster) == CLUSTER_OPS, f"cluster operations {cluster.get('authorized_operations')}"

    # A group that exists: one offset committed by a consumer of that group.
    consumer = KafkaConsumer(bootstrap_servers=addr, group_id="py-ops-group", enable_auto_commit=False)
    tp = TopicPartition("py-ops", 0)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
    consumer.close()
    groups = admin.describe_groups(["py-ops-group"])
    group = groups["py-ops-group"]
    assert group["error"] is None, group
    assert ops(group) == GROUP_OPS, f"group operations {group.get('authorized_operations')}"
    admin.close()
    print("ok")


if __name__ == "__main__":
    main()
