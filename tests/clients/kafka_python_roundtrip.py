#!/usr/bin/env python3
"""kafka-python round trip against a running strand broker (driven by tests/python_kcat.rs).

usage: kafka_python_roundtrip.py HOST:PORT TOPIC COUNT
Produces COUNT keyed records with acks=all, checks every acknowledgement (partition 0, dense
offsets), then reads them back with assign() + seek_to_beginning() (no consumer group: the broker
has no group coordinator yet) and compares offsets, keys and values. Prints "ok COUNT".
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main():
    addr, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    expected = [(i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(count)]

    producer = KafkaProducer(bootstrap_servers=addr, acks="all", request_timeout_ms=30000)
    futures = [producer.send(topic, key=k, value=v, partition=0) for _, k, v in expected]
    producer.flush(timeout=60)
    metadata = [f.get(timeout=30) for f in futures]
    producer.close(timeout=10)
    offsets = [(m.partition, m.offset) for m in metadata]
    assert offsets == [(0, i) for i in range(count)], f"acknowledged offsets: {offsets[:10]}..."

    consumer = KafkaConsumer(
        bootstrap_servers=addr,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
        group_id=None,
        enable_auto_commit=False,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning()
    got = []
    for m in consumer:  # stops after consumer_timeout_ms without records
        got.append((m.offset, m.key, m.value))
        if len(got) == count:
            break
    consumer.close()
    assert len(got) == count, f"consumed {len(got)} of {count} records"
    for g, e in zip(got, expected):
        assert g == e, f"consumed {g}, expected {e}"
    print("ok", len(got))


if __name__ == "__main__":
    main()
