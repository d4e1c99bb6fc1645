#!/usr/bin/env python3
"""ListOffsets MAX_TIMESTAMP (KIP-734) through kafka-python's admin client (driven by
tests/python_kcat.rs; issue 21).

usage: kafka_python_max_timestamp.py HOST:PORT
One uncompressed batch whose largest timestamp is on its middle record: Kafka answers that
record's offset (strand answered the batch's last offset before). Then a gzip batch with the
same shape: strand never decompresses, so it answers the batch's first offset (batch
granularity, DESIGN.md). Prints "ok".
"""
import sys
import time

from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.consumer.offsets import OffsetSpec


def produce_one_batch(addr, topic, timestamps, compression_type=None):
    # linger_ms keeps the three sends in one batch; they are sent at once by flush().
    producer = KafkaProducer(bootstrap_servers=addr, acks="all", linger_ms=5000,
                             compression_type=compression_type)
    # Compressible values: kafka-python sends a batch uncompressed when gzip would not shrink it.
    futures = [producer.send(topic, value=f"v{i}-{'x' * 500}".encode(), partition=0, timestamp_ms=ts)
               for i, ts in enumerate(timestamps)]
    producer.flush(timeout=60)
    offsets = [f.get(timeout=10).offset for f in futures]
    producer.close(timeout=10)
    return offsets


def max_timestamp(admin, topic):
    tp = TopicPartition(topic, 0)
    r = admin.list_partition_offsets({tp: OffsetSpec.MAX_TIMESTAMP})[tp]
    return (r.offset, r.timestamp)


def main():
    addr = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=30000)
    admin.create_topics([NewTopic("py-maxts", 1, 1), NewTopic("py-maxts-gzip", 1, 1)])
    now = int(time.time() * 1000)

    assert max_timestamp(admin, "py-maxts") == (-1, -1), "an empty partition has no max timestamp"
    offsets = produce_one_batch(addr, "py-maxts", [now - 3000, now - 1000, now - 2000])
    assert offsets == [0, 1, 2], f"offsets {offsets}"
    got = max_timestamp(admin, "py-maxts")
    assert got == (1, now - 1000), f"max timestamp answered {got}, expected (1, {now - 1000})"
    # A later batch with an earlier max changes nothing; one with a later max moves it.
    produce_one_batch(addr, "py-maxts", [now - 5000, now - 4000])
    assert max_timestamp(admin, "py-maxts") == (1, now - 1000)
    produce_one_batch(addr, "py-maxts", [now - 500, now, now - 100])
    got = max_timestamp(admin, "py-maxts")
    assert got == (6, now), f"max timestamp answered {got}, expected (6, {now})"

    offsets = produce_one_batch(addr, "py-maxts-gzip", [now - 3000, now - 1000, now - 2000], compression_type="gzip")
    assert offsets == [0, 1, 2], f"offsets {offsets}"
    got = max_timestamp(admin, "py-maxts-gzip")
    assert got == (0, now - 1000), f"gzip batch: max timestamp answered {got}, expected (0, {now - 1000})"
    admin.close()
    print("ok")


if __name__ == "__main__":
    main()
