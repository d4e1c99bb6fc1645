#!/usr/bin/env python3
"""OffsetForLeaderEpoch (KIP-101/KIP-320) through kafka-python (driven by tests/python_kcat.rs).

usage: kafka_python_offset_for_leader_epoch.py HOST:PORT
Produces 5 records to a new topic, then asks the end offset of epoch 0 (the partition's only
epoch: the log end, 5), of an epoch above it (undefined: -1/-1), with the client's current
leader epoch too new (UNKNOWN_LEADER_EPOCH, 75) and for an unknown partition (3). Consumed
records carry leader epoch 0, and a consumer that validates its position (kafka-python does,
KIP-320, once the broker offers the API) reads them all. Prints "ok".
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.consumer import OffsetForLeaderEpochRequest

Topic = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
Part = Topic.OffsetForLeaderPartition


def ask(admin, topic, partitions):
    request = OffsetForLeaderEpochRequest(
        replica_id=-1,
        topics=[(topic, [Part(partition=p, current_leader_epoch=c, leader_epoch=e) for (p, c, e) in partitions])],
    )

    async def send():
        return await admin._manager.send(request)

    response = admin._manager.run(send)
    return [(p.partition, p.error_code, p.leader_epoch, p.end_offset) for t in response.topics for p in t.partitions]


def main():
    addr = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=30000)
    admin.create_topics([NewTopic("py-epochs", 1, 1)])
    empty = ask(admin, "py-epochs", [(0, -1, 0)])
    assert empty == [(0, 0, -1, -1)], f"an empty log knows no epoch: {empty}"
    producer = KafkaProducer(bootstrap_servers=addr, acks="all")
    for i in range(5):
        producer.send("py-epochs", value=f"v{i}".encode(), partition=0)
    producer.flush(timeout=60)
    producer.close(timeout=10)
    got = ask(admin, "py-epochs", [(0, -1, 0), (0, 0, 0)])
    assert got == [(0, 0, 0, 5), (0, 0, 0, 5)], f"epoch 0 ends at the log end: {got}"
    got = ask(admin, "py-epochs", [(0, -1, 3)])
    assert got == [(0, 0, -1, -1)], f"an epoch above the latest is undefined: {got}"
    got = ask(admin, "py-epochs", [(0, 1, 0)])
    assert got[0][1] == 75, f"a current leader epoch newer than the broker's: {got}"
    got = ask(admin, "py-epochs", [(7, -1, 0)])
    assert got[0][1] == 3, f"an unknown partition: {got}"
    admin.close()

    consumer = KafkaConsumer(bootstrap_servers=addr, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    consumer.assign([TopicPartition("py-epochs", 0)])
    records = []
    for r in consumer:
        records.append(r)
        if len(records) == 5:
            break
    consumer.close()
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(5)], records
    assert all(r.leader_epoch == 0 for r in records), [r.leader_epoch for r in records]
    print("ok")


if __name__ == "__main__":
    main()
