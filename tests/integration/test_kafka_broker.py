"""Apache Kafka run natively (broker/kafka.py): real JVMs on loopback, aiokafka as the client, no mocks.

Exactly-once building blocks on one node, data surviving a restart, a 3-node cluster writing acks=all
with a node SIGKILLed, and the clear errors when Java or Maven is missing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from broker.kafka import KafkaCluster, java_binary, maven_binary, start_kafka
from tests.brokers import shared_kafka
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.integration
# the controller fences a silent broker (and drops it from ISRs) after this session; 9 s by default
FAST_FAILOVER = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}


@pytest.fixture
def clusters() -> Iterator[list[KafkaCluster]]:
    """Every cluster a test starts goes in here and is stopped afterwards, pass or fail. The launcher is
    sync (it polls the JVMs), so async tests call it through ``asyncio.to_thread``."""
    started: list[KafkaCluster] = []
    try:
        yield started
    finally:
        for cluster in started:
            cluster.close()
        assert all(not n.alive for c in started for n in c.nodes)


async def create_topic(bootstrap: str, topic: str, replication: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=replication)])
    finally:
        await admin.close()


async def read_committed(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[bytes]:
    """The values of the first ``count`` committed records, waiting for them up to ``timeout``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            values += [r.value for r in batch.get(tp, []) if r.value is not None]
        return values
    finally:
        await consumer.stop()


async def produce_idempotent(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send ``values`` in order through an idempotent producer, each acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def test_idempotent_and_transactional_writes_read_back_committed(tmp_path: Path,
                                                                       clusters: list[KafkaCluster]) -> None:
    clusters.append(cluster := await asyncio.to_thread(start_kafka, tmp_path / "kafka", ports=[free_port()]))
    await create_topic(cluster.bootstrap, "eos")
    await produce_idempotent(cluster.bootstrap, "eos", [f"idem-{i}".encode() for i in range(3)])
    tx = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, transactional_id="krakenflow-test-tx")
    await tx.start()
    try:
        async with tx.transaction():
            for i in range(3):
                await tx.send("eos", f"tx-{i}".encode())
        await tx.begin_transaction()  # an aborted batch must stay invisible to read_committed
        await tx.send_and_wait("eos", b"aborted")
        await tx.abort_transaction()
        async with tx.transaction():
            await tx.send("eos", b"last")
    finally:
        await tx.stop()
    # "last" follows the aborted record, so seeing it means the reader has passed the aborted one
    assert await read_committed(cluster.bootstrap, "eos", 7) == [
        b"idem-0", b"idem-1", b"idem-2", b"tx-0", b"tx-1", b"tx-2", b"last"]


async def test_records_survive_a_restart_on_the_same_data_dir(tmp_path: Path, clusters: list[KafkaCluster]) -> None:
    data = tmp_path / "kafka"
    clusters.append(first := await asyncio.to_thread(start_kafka, data))
    await create_topic(first.bootstrap, "kept")
    expected = [f"r{i}".encode() for i in range(5)]
    await produce_idempotent(first.bootstrap, "kept", expected)
    await asyncio.to_thread(first.restart, 1)  # the same ports and settings
    assert await read_committed(first.bootstrap, "kept", 5) == expected
    await asyncio.to_thread(first.close)

    clusters.append(second := await asyncio.to_thread(start_kafka, data))  # new ports, same data: meta.properties skips the format
    assert second.cluster_id == first.cluster_id == (data / "cluster.id").read_text().strip()
    assert await read_committed(second.bootstrap, "kept", 5) == expected


async def test_three_nodes_keep_accepting_acks_all_with_one_node_killed(tmp_path: Path,
                                                                        clusters: list[KafkaCluster]) -> None:
    clusters.append(cluster := await asyncio.to_thread(start_kafka, tmp_path / "kafka", nodes=3, heap="384m",
                                                       settings=FAST_FAILOVER))
    assert len(cluster.bootstrap.split(",")) == 3
    await create_topic(cluster.bootstrap, "replicated", replication=3)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait("replicated", b"before")
        await asyncio.to_thread(cluster.kill, 2)  # SIGKILL: no controlled shutdown, the controller finds out by missed heartbeats
        assert not cluster.node(2).alive
        # min.insync.replicas=2: the two survivors are enough once the dead replica leaves the ISR
        meta = await asyncio.wait_for(producer.send_and_wait("replicated", b"after"), timeout=40)
        assert meta.offset == 1
    finally:
        await producer.stop()
    assert await read_committed(cluster.bootstrap, "replicated", 2) == [b"before", b"after"]


def run_python(code: str, path: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    if home is not None:
        env["KRAKENFLOW_KAFKA_HOME"] = str(home)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def fake_java(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(0o755)


def test_missing_or_old_java_and_missing_maven_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"Java 17\+: apt-get install -y openjdk-17-jre-headless"):
        java_binary(which=lambda name: None)
    with pytest.raises(SystemExit, match="needs Maven to fetch its jars once: apt-get install -y maven"):
        maven_binary(which=lambda name: None)

    empty = tmp_path / "empty"
    empty.mkdir()
    no_java = run_python("from broker.kafka import start_kafka; start_kafka('unused')", str(empty), tmp_path / "home")
    assert no_java.returncode == 1
    assert "java not found on PATH" in no_java.stderr and "openjdk-17-jre-headless" in no_java.stderr

    fake_java(tmp_path / "java8", "1.8.0_392")
    old = run_python("from broker.kafka import java_binary; java_binary()", str(tmp_path / "java8"))
    assert old.returncode == 1 and "is Java 8. Apache Kafka needs Java 17+" in old.stderr

    fake_java(tmp_path / "java17", "17.0.15")  # Java fine, Maven absent, jar cache empty
    no_mvn = run_python("from broker.kafka import ensure_jars; ensure_jars()", str(tmp_path / "java17"),
                        tmp_path / "home")
    assert no_mvn.returncode == 1 and "apt-get install -y maven" in no_mvn.stderr


async def test_a_client_that_knows_no_broker_asks_the_cluster_again_before_topics_count_as_ready() -> None:
    """A node starting up may answer metadata with no brokers; aiokafka's client then knows none (it keeps
    the answer it had, which after a bootstrap is none). Asking no broker is not every broker ready."""
    from app.topics import _wait_ready

    bootstrap = shared_kafka().bootstrap
    topic = f"ready-{os.getpid()}-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        admin._client.cluster._brokers.clear()  # what aiokafka's bootstrap is left with after such an answer
        await asyncio.wait_for(_wait_ready(admin, {topic: 1}), 30)
        assert admin._client.cluster.brokers(), "the brokers were looked up and asked"
    finally:
        await admin.close()


async def test_topics_are_ready_on_every_broker_when_ensure_topics_returns(tmp_path: Path,
                                                                          clusters: list[KafkaCluster]) -> None:
    """Right after a create, the brokers other than the controller answer metadata without the new
    topics' partitions (a producer that looked then failed its sends, a table found its changelog with 0
    partitions: a worker crashed on start). ``ensure_topics`` returns once every broker knows them."""
    from aiokafka import AIOKafkaClient

    from app.settings import Settings
    from app.topics import TOPICS, ExtraTopic, ensure_topics, topic_layout, unready_topics

    clusters.append(cluster := await asyncio.to_thread(start_kafka, tmp_path / "kafka", nodes=3, heap="384m"))
    settings = Settings.from_env({"KRAKENFLOW_BROKER": f"kafka://{cluster.bootstrap.replace(',', ';')}",
                                  "KRAKENFLOW_BROKER_PROFILE": "apache-kafka", "KRAKENFLOW_REPLICATION_FACTOR": "3"})
    extra = tuple(ExtraTopic(f"{settings.app_id}-{name}-changelog", 8, {"cleanup.policy": "compact"})
                  for name in ("books", "candles-1m"))
    await ensure_topics(settings, extra)
    client = AIOKafkaClient(bootstrap_servers=cluster.bootstrap)
    await client.bootstrap()
    try:
        assert len(client.cluster.brokers()) == 3
        wanted = topic_layout(settings) | {t.name: t.partitions for t in extra}
        assert len(wanted) == len(TOPICS) + 2
        silent: set[int] = set()
        assert await unready_topics(client, wanted, silent) == set()  # one look at every broker, no retry
        assert silent == set(), "a broker did not answer"
    finally:
        await client.close()
