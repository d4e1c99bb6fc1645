#!/usr/bin/env python3
"""kafka-python consumer group against a running strand broker (driven by tests/python_kcat.rs).

usage: kafka_python_group.py HOST:PORT TOPIC PARTITIONS COUNT
TOPIC must exist with PARTITIONS partitions and be empty. Two KafkaConsumers of group "g" in
this process, each polling in its own thread, wait until they share the partitions, then COUNT records are produced round-robin
and the two read every one exactly once, each only from its own partitions. Both commit and
close. A third consumer of the group gets every partition, reads nothing old, and then reads
exactly one new record per partition. Prints "ok COUNT".
"""
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

GROUP = "g"


def consumer(addr, topic, name):
    return KafkaConsumer(
        topic,
        bootstrap_servers=addr,
        group_id=GROUP,
        client_id=f"kp-group-{name}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=30000,
    )


def poll(c, timeout_ms=200):
    """(partition, offset, value) of the records one poll returns."""
    out = []
    for tp, records in c.poll(timeout_ms=timeout_ms).items():
        out.extend((tp.partition, r.offset, r.value) for r in records)
    return out


def deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end


class Member(threading.Thread):
    """One consumer of the group in its own thread, polling continuously as an application
    would (a KafkaConsumer is not thread-safe, so only this thread touches it)."""

    def __init__(self, addr, topic, name):
        super().__init__(daemon=True, name=f"member-{name}")
        self.addr, self.topic, self.member_name = addr, topic, name
        self.lock = threading.Lock()
        self.records, self.assigned = [], set()
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            c = consumer(self.addr, self.topic, self.member_name)
            # Know the topic's partitions before joining: a leader that assigns without them
            # rejoins at once, and kafka-python 3.0.12 sometimes wedges one consumer (no more
            # requests at all) after such a back-to-back rebalance on a loaded machine.
            known = deadline(30)
            while known() and not c.partitions_for_topic(self.topic):
                time.sleep(0.05)
            while not self.stop.is_set():
                got = poll(c)
                with self.lock:
                    self.records += got
                    self.assigned = {tp.partition for tp in c.assignment()}
            # Positions are at the end of every partition: commit them, then leave the group.
            c.commit()
            c.close(autocommit=False)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def snapshot(self):
        with self.lock:
            return list(self.records), set(self.assigned)


def main():
    addr, topic, partitions, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    everything = set(range(partitions))

    a, b = Member(addr, topic, "a"), Member(addr, topic, "b")
    a.start()
    b.start()
    # Both join before anything is produced, so no record is read before the final rebalance.
    pending = deadline(60)
    while pending():
        ra, pa = a.snapshot()
        rb, pb = b.snapshot()
        assert a.error is None and b.error is None, f"consumer failed: {a.error or b.error}"
        if pa and pb and not (pa & pb) and pa | pb == everything:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no shared assignment within 60 s: a={pa} b={pb}")
    assert not ra and not rb, f"records before any were produced: {(ra + rb)[:5]}"
    print(f"assignment a={sorted(pa)} b={sorted(pb)}", file=sys.stderr)

    producer = KafkaProducer(bootstrap_servers=addr, acks="all", request_timeout_ms=30000)
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions) for i in range(count)]
    producer.flush(timeout=60)
    acked = {(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)}
    assert len(acked) == count, f"{len(acked)} distinct acknowledgements for {count} records"

    pending = deadline(60)
    while pending():
        got_a, now_a = a.snapshot()
        got_b, now_b = b.snapshot()
        if len(got_a) + len(got_b) >= count:
            break
        time.sleep(0.05)
    assert (now_a, now_b) == (pa, pb), f"the assignment changed while reading: {pa}/{pb} -> {now_a}/{now_b}"
    for name, got, mine in (("a", got_a, pa), ("b", got_b, pb)):
        assert got, f"consumer {name} read nothing"
        stray = [r for r in got if r[0] not in mine]
        assert not stray, f"consumer {name} read partitions it was not assigned: {stray[:5]}"
    seen = [(p, o) for p, o, _ in got_a + got_b]
    assert len(seen) == len(set(seen)), "a record was read twice"
    assert set(seen) == acked, f"read {len(seen)} of {count}; missing {sorted(acked - set(seen))[:10]}"
    values = sorted(int(v[1:]) for _, _, v in got_a + got_b)
    assert values == list(range(count)), "values differ from what was produced"

    a.stop.set()
    b.stop.set()
    a.join(timeout=60)
    b.join(timeout=60)
    assert not a.is_alive() and not b.is_alive(), "a consumer did not commit and close within 60 s"
    assert a.error is None and b.error is None, f"consumer failed: {a.error or b.error}"
    got_a, _ = a.snapshot()
    got_b, _ = b.snapshot()
    assert len(got_a) + len(got_b) == count, "a consumer read more after the check"

    c = consumer(addr, topic, "c")
    pending = deadline(60)
    old = []
    while pending() and {tp.partition for tp in c.assignment()} != everything:
        old += poll(c)
    assert {tp.partition for tp in c.assignment()} == everything, f"third consumer's assignment: {c.assignment()}"
    for tp in c.assignment():
        end = max(o for p, o in acked if p == tp.partition) + 1
        assert c.committed(tp) == end, f"committed offset of {tp}: {c.committed(tp)}, expected {end}"
    pending = deadline(3)
    while pending():
        old += poll(c)
    assert not old, f"third consumer re-read committed records: {old[:5]}"

    # It does read: one new record per partition, and only those.
    for p in range(partitions):
        producer.send(topic, key=b"new", value=f"new{p}".encode(), partition=p)
    producer.flush(timeout=60)
    producer.close(timeout=10)
    new = []
    pending = deadline(60)
    while pending() and len(new) < partitions:
        new += poll(c)
    pending = deadline(1)
    while pending():
        new += poll(c)
    assert sorted(v for _, _, v in new) == [f"new{p}".encode() for p in range(partitions)], f"third consumer read {new}"
    c.close(autocommit=False)
    print("ok", count)


if __name__ == "__main__":
    main()
