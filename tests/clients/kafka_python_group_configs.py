#!/usr/bin/env python3
"""KIP-848 group configs through kafka-python's admin client (driven by tests/python_kcat.rs;
issue 21): DescribeConfigs and IncrementalAlterConfigs on resource type GROUP.

usage: kafka_python_group_configs.py HOST:PORT set|check
set:   a group that does not exist yet shows the broker's defaults; out-of-range values are
       refused with INVALID_CONFIG naming the bound; validate_only changes nothing; a valid
       change is stored (and the group is then created by a commit).
check: (after a broker restart) the stored values are still there.
Prints "ok".
"""
import sys

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

GROUP = "py-cfg-group"
SESSION = "consumer.session.timeout.ms"
HEARTBEAT = "consumer.heartbeat.interval.ms"


def group_configs(admin, group):
    r = admin.describe_configs([ConfigResource(ConfigResourceType.GROUP, group)], config_filter="all")
    found = [v for k, v in r.items() if str(k).upper().endswith("GROUP")]
    assert found, f"no group in describe_configs answer: {r}"
    return {k: (c["value"], c.get("config_source")) for k, c in found[0][group].items()}


def alter(admin, group, configs, validate_only=False):
    r = admin.alter_configs([ConfigResource(ConfigResourceType.GROUP, group, configs=configs)],
                            validate_only=validate_only, raise_on_unknown=False, incremental=True)
    return str(r["group"][group])


def values(admin, group):
    return {k: v for k, (v, _) in group_configs(admin, group).items()}


def main():
    addr, phase = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=30000)
    if phase == "set":
        c = group_configs(admin, GROUP)
        assert {k: v for k, (v, _) in c.items()} == {SESSION: "45000", HEARTBEAT: "5000"}, c
        refused = alter(admin, GROUP, {HEARTBEAT: "100"})
        assert "InvalidConfigurationError" in refused and "group.consumer.min.heartbeat.interval.ms" in refused, refused
        refused = alter(admin, GROUP, {SESSION: "120000"})
        assert "InvalidConfigurationError" in refused and "group.consumer.max.session.timeout.ms" in refused, refused
        refused = alter(admin, GROUP, {"consumer.bogus.ms": "1"})
        assert "InvalidConfigurationError" in refused and "consumer.bogus.ms" in refused, refused
        assert alter(admin, GROUP, {SESSION: "50000"}, validate_only=True) == "OK"
        assert values(admin, GROUP)[SESSION] == "45000", "validate_only changed the config"
        # Stored for a group that does not exist yet, as Kafka does.
        assert alter(admin, GROUP, {SESSION: "50000", HEARTBEAT: "6000"}) == "OK"
        assert alter(admin, GROUP, {HEARTBEAT: (AlterConfigOp.SET, "7000")}) == "OK"
        c = group_configs(admin, GROUP)
        assert {k: v for k, (v, _) in c.items()} == {SESSION: "50000", HEARTBEAT: "7000"}, c
        # Another group keeps the broker's defaults.
        assert values(admin, "py-cfg-other") == {SESSION: "45000", HEARTBEAT: "5000"}
        # Now the group exists: one offset committed.
        admin.create_topics([NewTopic("py-cfg", 1, 1)])
        consumer = KafkaConsumer(bootstrap_servers=addr, group_id=GROUP, enable_auto_commit=False)
        tp = TopicPartition("py-cfg", 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
        consumer.close()
    elif phase == "check":
        assert values(admin, GROUP) == {SESSION: "50000", HEARTBEAT: "7000"}, values(admin, GROUP)
        # DELETE goes back to the default.
        assert alter(admin, GROUP, {HEARTBEAT: (AlterConfigOp.DELETE, None)}) == "OK"
        assert values(admin, GROUP) == {SESSION: "50000", HEARTBEAT: "5000"}
        assert alter(admin, GROUP, {HEARTBEAT: "7000"}) == "OK"
    else:
        raise SystemExit(f"unknown phase {phase}")
    admin.close()
    print("ok")


if __name__ == "__main__":
    main()
