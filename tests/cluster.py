"""A real local cluster for end-to-end tests: embedded broker, simulator, ingest and Faust workers.

Every component is a real process on loopback with its own ports, app id and data directory, so test
modules do not interfere. Waiting is done on observable conditions (a port, an HTTP answer, records on
a topic) with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from broker.embedded import start_broker
from broker.kafka import KafkaCluster
from tests import brokers
from tests.processes import ROOT, free_port

BIN = Path(sys.executable).parent


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2,
               required: bool = True) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` (not
    ``required``: return its last, falsy, result then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            if not required:
                return result
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_json(url: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return {"status": exc.code, **orjson.loads(body or b"{}")}
        except orjson.JSONDecodeError:
            return {"status": exc.code, "error": body.decode("utf-8", "replace")}
    except OSError:
        return None


def if_levels_equal(book: dict[str, Any] | None, exchange: dict[str, Any]) -> dict[str, Any] | None:
    """``book`` when its levels are exactly the exchange's, else None (for ``wait_until``)."""
    if book and (book.get("bids"), book.get("asks")) == (exchange["bids"], exchange["asks"]):
        return book
    return None


class Cluster:
    """One pipeline under test. On Apache Kafka (the default) it shares the session's broker and keeps
    to its own app id and topic prefix; on the embedded broker it starts a Tansu of its own."""

    def __init__(self, tmp: Path, pairs: list[str], depth: int = 25, sim_args: tuple[str, ...] = (),
                 raw_partitions: int = 4, with_sim: bool = True, broker: str | None = None,
                 kafka: KafkaCluster | None = None) -> None:
        self.tmp = tmp
        self.pairs, self.depth = pairs, depth
        self.broker = broker or brokers.DEFAULT
        self.sim_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        run_id = uuid.uuid4().hex[:8]
        self.prefix = f"kf{run_id}"
        if kafka is not None:  # a cluster of the test's own (broker faults)
            self.broker, self.bootstrap, profile = brokers.KAFKA, kafka.bootstrap, "apache-kafka"
        elif self.broker == brokers.KAFKA:
            self.bootstrap = brokers.shared_kafka().bootstrap
            profile = "apache-kafka"
        else:
            self.bootstrap = f"127.0.0.1:{free_port()}"
            profile = "embedded"
        self.env = dict(os.environ)
        self.env.update({
            "KRAKENFLOW_BROKER": ";".join(f"kafka://{b}" for b in self.bootstrap.split(",")),
            "KRAKENFLOW_BROKER_PROFILE": profile, "KRAKENFLOW_TOPIC_PREFIX": self.prefix,
            "KRAKENFLOW_KRAKEN_URL": f"ws://127.0.0.1:{self.sim_port}/v2",
            "KRAKENFLOW_APP_ID": f"kf-test-{run_id}",
            "KRAKENFLOW_PAIRS": ",".join(pairs), "KRAKENFLOW_DEPTH": str(depth),
            "KRAKENFLOW_RAW_PARTITIONS": str(raw_partitions), "KRAKENFLOW_OUTPUT_PARTITIONS": "4",
            "KRAKENFLOW_INGEST": "off",
            "KRAKENFLOW_SNAPSHOT_INTERVAL_MS": "1000", "KRAKENFLOW_STALE_AFTER": "30",
        })
        if self.broker == brokers.EMBEDDED:
            host, port = self.bootstrap.rsplit(":", 1)
            self.procs["broker"] = start_broker(host, int(port), tmp / "broker.log")
        if with_sim:
            self._spawn("sim", [str(BIN / "krakenflow"), "sim", "--port", str(self.sim_port), *sim_args])
            wait_until(lambda: http_json(self.sim_url("state")), 20, "the simulator")

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def sim_url(self, action: str, **query: Any) -> str:
        qs = "&".join(f"{k}={urllib.parse.quote(str(v))}" for k, v in query.items())
        return f"http://127.0.0.1:{self.sim_port}/control/{action}?{qs}"

    def sim(self, action: str, **query: Any) -> Any:
        return http_json(self.sim_url(action, **query))

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(args, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def start_ingest(self, name: str = "ingest") -> int:
        """A ``krakenflow ingest`` candidate; returns its metrics port."""
        port = free_port()
        self._spawn(name, [str(BIN / "krakenflow"), "ingest"], dict(self.env, KRAKENFLOW_INGEST_METRICS_PORT=str(port)))
        return port

    def start_worker(self, name: str = "worker", web_port: int | None = None, fresh: bool = False,
                     env: dict[str, str] | None = None) -> int:
        port = web_port or free_port()
        data = self.tmp / f"data-{name}"
        if fresh:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
        env = dict(self.env, KRAKENFLOW_WEB_PORT=str(port), KRAKENFLOW_DATA_DIR=str(data), **(env or {}))
        self._spawn(name, [str(BIN / "faust"), "-A", "app", "worker", "-l", "info"], env)
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/books/?local=1") is not None, 60,
                   f"worker {name} web on {port}")
        return port

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for name in [n for n in self.procs if n not in ("broker", "sim")] + ["sim", "broker"]:
            if name in self.procs:
                self.stop(name, timeout=15)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- topics ------------------------------------------------------------------------------------

    def read(self, topic: str, until: Callable[[list[dict[str, Any]]], bool] | None = None,
             timeout: float = 60, isolation: str | None = None) -> list[dict[str, Any]]:
        """Read ``<prefix>.<topic>`` from the beginning until ``until(records)``, or (``until=None``) all
        that is in the topic now; values as JSON. ``isolation``: as a downstream consumer reads by
        default (only what committed: the book agent writes in transactions on Apache Kafka)."""
        if isolation is None:
            isolation = "read_committed" if self.broker == brokers.KAFKA else "read_uncommitted"
        return asyncio.run(self._read(self.topic(topic), until, timeout, isolation))

    async def _read(self, topic: str, until: Callable[[list[dict[str, Any]]], bool] | None,
                    timeout: float, isolation: str) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", isolation_level=isolation)
        await consumer.start()
        deadline = time.monotonic() + 10
        while not (partitions := consumer.partitions_for_topic(topic)):  # another process creates it
            if time.monotonic() > deadline:
                await consumer.stop()
                raise AssertionError(f"topic {topic} does not exist")
            await asyncio.sleep(0.2)  # polling the broker's metadata for a topic another process creates
            consumer._client.add_topic(topic)  # the client's own metadata, which partitions_for_topic reads
            await consumer._client.force_metadata_update()
        records: list[dict[str, Any]] = []
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps) if until is None else {}
            deadline = time.monotonic() + timeout
            while True:
                if until is not None and until(records):
                    return records
                if until is None and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    return records
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out reading {topic}: {len(records)} records")
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    for message in batch:
                        value = orjson.loads(message.value) if message.value else {}
                        value["_partition"], value["_offset"] = message.partition, message.offset
                        value["_headers"] = {k: v.decode() for k, v in message.headers or ()}
                        records.append(value)
        finally:
            await consumer.stop()

    def alter_topic(self, topic: str, configs: dict[str, str | None]) -> None:
        """Set (a value) or remove (None) configs of ``<prefix>.<topic>``, keeping its other dynamic ones
        (AlterConfigs replaces the whole set)."""
        asyncio.run(self._alter_topic(self.topic(topic), configs))

    async def _alter_topic(self, topic: str, configs: dict[str, str | None]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            # entry: (name, value, read_only, is_default (v0) | config_source (v1+; 1 = set on the topic), ...)
            current = {e[0]: e[1] for e in described.resources[0][4]
                       if (e[3] is False if isinstance(e[3], bool) else e[3] == 1)}
            wanted = {k: v for k, v in {**current, **configs}.items() if v is not None}
            [altered] = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, wanted)])
            assert altered.resources[0][0] == 0, altered
        finally:
            await admin.close()

    def produce(self, topic: str, key: bytes, value: bytes, partition: int,
                headers: list[tuple[str, bytes]]) -> int:
        """Write one record to ``<prefix>.<topic>`` as another process would; returns its offset."""
        return asyncio.run(self._produce(self.topic(topic), key, value, partition, headers))

    async def _produce(self, topic: str, key: bytes, value: bytes, partition: int,
                       headers: list[tuple[str, bytes]]) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            sent = await producer.send_and_wait(topic, value, key=key, partition=partition, headers=headers)
            return int(sent.offset)
        finally:
            await producer.stop()
