"""docker-compose.yml proven as far as this machine allows: its brokers' settings boot a native
3-node Apache Kafka, its topics service's topics are created there, and a replicated write goes through.

No Docker engine runs here, so the compose file's values (node ids, quorum, roles, listeners' names,
cluster id, replication and ISR settings, auto-create off) are started natively on loopback; a value
that cannot boot fails this test."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from broker.kafka import start_kafka

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# set by the launcher for loopback (the compose file's hostnames and ports do not exist here)
LOCAL = {"KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_NODE_ID"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def broker_settings(doc: dict[str, Any]) -> tuple[str, dict[str, str], list[int]]:
    """(cluster id, server.properties from the compose brokers' KAFKA_* variables, node ids)."""
    env = doc["x-kafka"]["environment"]
    settings = {k[6:].lower().replace("_", "."): str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in env.items() if k.startswith("KAFKA_") and k not in LOCAL}
    nodes = sorted(int(s["environment"]["KAFKA_NODE_ID"]) for s in doc["services"].values()
                   if "KAFKA_NODE_ID" in s.get("environment", {}))
    voters = [int(v.split("@")[0]) for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert voters == nodes, "every broker is a voter of the quorum"
    return str(env["CLUSTER_ID"]), settings, nodes


def compose_topics(doc: dict[str, Any]) -> list[tuple[str, int, dict[str, str]]]:
    script = doc["services"]["topics"]["command"][0]
    out = []
    for m in re.finditer(r"^\s*create (\S+) (\d+)(?: (\S+))?$", script, re.M):
        configs = dict([m[3].split("=", 1)]) if m[3] else {}
        out.append((m[1], int(m[2]), configs))
    return out


def test_the_compose_brokers_boot_and_take_the_compose_topics(tmp_path: Path) -> None:
    doc = compose()
    cluster_id, settings, nodes = broker_settings(doc)
    assert settings["process.roles"] == "broker,controller" and settings["auto.create.topics.enable"] == "false"
    assert nodes == [1, 2, 3]
    cluster = start_kafka(tmp_path / "kafka", nodes=len(nodes), cluster_id=cluster_id, settings=settings,
                          log=tmp_path)
    try:
        asyncio.run(_topics_and_a_replicated_write(cluster.bootstrap, compose_topics(doc)))
    finally:
        cluster.close()


async def _topics_and_a_replicated_write(bootstrap: str, topics: list[tuple[str, int, dict[str, str]]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 3, topic_configs=configs) for name, n, configs in topics])
        deadline = time.monotonic() + 30
        while True:  # created on the controller; every broker learns the new partitions a moment later
            described = {t["topic"]: t for t in await admin.describe_topics([name for name, _, _ in topics])}
            if all(len(described[name]["partitions"]) == n for name, n, _ in topics) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # polling the brokers' metadata
    finally:
        await admin.close()
    for name, partitions, _ in topics:
        assert len(described[name]["partitions"]) == partitions, name
        assert all(len(p["replicas"]) == 3 for p in described[name]["partitions"]), name
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                compression_type="zstd")
    await producer.start()
    try:
        await (await producer.send("kraken.raw", b'{"channel":"heartbeat"}', key=b"conn:compose", partition=0))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition("kraken.raw", 0)
        consumer.assign([tp])
        batch = await consumer.getmany(tp, timeout_ms=10000)
        assert [m.value for m in batch[tp]] == [b'{"channel":"heartbeat"}']
    finally:
        await consumer.stop()
