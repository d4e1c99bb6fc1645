#!/usr/bin/env python3
"""kafka-python's admin client against a running strand broker (driven by tests/python_kcat.rs).

usage: kafka_python_admin.py HOST:PORT
The older AlterConfigs request (incremental=False, as kafka-python sends to brokers before 2.3
and other clients still do): values set, read back with DescribeConfigs, validate_only changes
nothing, a bad value is refused with INVALID_CONFIG. Then DeleteRecords: the low watermark
moves, the earliest offset follows, a consumer from the beginning starts there. Prints "ok".
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic


def topic_configs(admin, topic):
    r = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    found = [v for k, v in r.items() if str(k).upper().endswith("TOPIC")]
    assert found, f"no topic in describe_configs answer: {r}"
    return {k: (c["value"] if isinstance(c, dict) else c) for k, c in found[0][topic].items()}


def main():
    addr = sys.argv[1]
    topic = "py-admin"
    admin = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, 1, 1)])

    def alter(configs, validate_only=False):
        r = admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)],
            validate_only=validate_only,
            incremental=False,
        )
        return str(r["topic"][topic])

    assert alter({"retention.ms": "3600000", "max.message.bytes": "200000"}) == "OK"
    c = topic_configs(admin, topic)
    assert c["retention.ms"] == "3600000" and c["max.message.bytes"] == "200000", c
    assert alter({"retention.ms": "60000"}, validate_only=True) == "OK"
    assert topic_configs(admin, topic)["retention.ms"] == "3600000", "validate_only changed the config"
    refused = alter({"retention.ms": "soon"})
    assert "InvalidConfigurationError" in refused and "retention.ms" in refused, refused
    assert topic_configs(admin, topic)["retention.ms"] == "3600000", "a refused alter changed the config"

    producer = KafkaProducer(bootstrap_servers=addr, acks="all")
    for i in range(200):
        producer.send(topic, value=f"v{i}".encode(), partition=0)
    producer.flush(timeout=60)
    producer.close(timeout=10)
    tp = TopicPartition(topic, 0)
    result = admin.delete_records({tp: 120})
    low = result[tp]["low_watermark"] if isinstance(result[tp], dict) else result[tp].low_watermark
    assert low == 120, f"low watermark {result}"

    consumer = KafkaConsumer(bootstrap_servers=addr, group_id=None, enable_auto_commit=False, consumer_timeout_ms=10000)
    assert consumer.beginning_offsets([tp])[tp] == 120
    assert consumer.end_offsets([tp])[tp] == 200
    consumer.assign([tp])
    consumer.seek_to_beginning()
    got = [m.offset for m in consumer]
    consumer.close()
    assert got == list(range(120, 200)), f"consumed {got[:5]}..."
    admin.close()
    print("ok")


if __name__ == "__main__":
    main()
