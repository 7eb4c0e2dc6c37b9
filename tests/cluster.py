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
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.broker import start_broker
from tests.processes import ROOT, free_port

BIN = Path(sys.executable).parent


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
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
    def __init__(self, tmp: Path, pairs: list[str], depth: int = 25, sim_args: tuple[str, ...] = (),
                 raw_partitions: int = 4, with_sim: bool = True) -> None:
        self.tmp = tmp
        self.pairs, self.depth = pairs, depth
        self.broker_port = free_port()
        self.sim_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ)
        self.env.update({
            "KRAKENFLOW_BROKER": f"kafka://127.0.0.1:{self.broker_port}",
            "KRAKENFLOW_KRAKEN_URL": f"ws://127.0.0.1:{self.sim_port}/v2",
            "KRAKENFLOW_APP_ID": f"kf-test-{uuid.uuid4().hex[:8]}",
            "KRAKENFLOW_PAIRS": ",".join(pairs), "KRAKENFLOW_DEPTH": str(depth),
            "KRAKENFLOW_RAW_PARTITIONS": str(raw_partitions), "KRAKENFLOW_OUTPUT_PARTITIONS": "4",
            "KRAKENFLOW_INGEST": "off", "KRAKENFLOW_EMBEDDED_BROKER": "1",
            "KRAKENFLOW_SNAPSHOT_INTERVAL_MS": "1000", "KRAKENFLOW_STALE_AFTER": "30",
        })
        self.procs["broker"] = start_broker("127.0.0.1", self.broker_port, tmp / "broker.log")
        if with_sim:
            self._spawn("sim", [str(BIN / "krakenflow"), "sim", "--port", str(self.sim_port), *sim_args])
            wait_until(lambda: http_json(self.sim_url("state")), 20, "the simulator")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def topic(self, name: str) -> str:
        return f"kraken.{name}"

    def sim_url(self, action: str, **query: Any) -> str:
        qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
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

    def start_worker(self, name: str = "worker", web_port: int | None = None, fresh: bool = False) -> int:
        port = web_port or free_port()
        data = self.tmp / f"data-{name}"
        if fresh:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
        env = dict(self.env, KRAKENFLOW_WEB_PORT=str(port), KRAKENFLOW_DATA_DIR=str(data))
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
             timeout: float = 60) -> list[dict[str, Any]]:
        """Read ``kraken.<topic>`` from the beginning until ``until(records)``, or (``until=None``) all
        that is in the topic now; values as JSON."""
        return asyncio.run(self._read(self.topic(topic), until, timeout))

    async def _read(self, topic: str, until: Callable[[list[dict[str, Any]]], bool] | None,
                    timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:  # a starting consumer loads fresh metadata: the topic may be created meanwhile
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            await consumer.stop()
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist")
            await asyncio.sleep(0.2)  # polling for a topic another process creates
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
                        records.append(value)
        finally:
            await consumer.stop()
