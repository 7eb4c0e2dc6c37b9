"""Broker faults on a 3-node Apache Kafka (replication 3, min.insync.replicas 2): one broker SIGKILLed
under load and restarted, then all three SIGKILLed and restarted. The ingest and the worker recover by
themselves; books equal the exchange's after settling; every delta verifies and no seq is missing."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from broker.kafka import start_kafka
from models.symbols import normalize
from tests.cluster import Cluster, http_json, if_levels_equal, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "PEPE/USD"]


def delta_count(c: Cluster, port: int) -> int:
    listing = http_json(f"http://127.0.0.1:{port}/books/") or {"books": []}
    return sum(b["seq"] for b in listing["books"])


def flowing(c: Cluster, port: int, what: str, timeout: float = 90) -> float:
    """Seconds until the books moved on by 50 deltas (the pipeline works again)."""
    start, base = time.monotonic(), delta_count(c, port)
    wait_until(lambda: delta_count(c, port) >= base + 50, timeout, what)
    return time.monotonic() - start


def test_one_broker_killed_then_all_three_and_the_pipeline_recovers(tmp_path: Path) -> None:
    kafka = start_kafka(tmp_path / "kafka", nodes=3, log=tmp_path,
                        settings={"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 1000})
    c = Cluster(tmp_path, PAIRS, depth=25, sim_args=("--pair-rate", "20", "--seed", "12"), kafka=kafka)
    c.env["KRAKENFLOW_REPLICATION_FACTOR"] = "3"
    recovery: dict[str, float] = {}
    try:
        c.start_ingest()
        port = c.start_worker()
        wait_until(lambda: len([b for b in (http_json(f"http://127.0.0.1:{port}/books/") or {"books": []})["books"]
                                if b["state"] == "live"]) == len(PAIRS), 90, "all books live")
        flowing(c, port, "deltas before the faults")

        kafka.kill(2)  # one of three: acks=all still has its two in-sync replicas
        recovery["one broker down"] = flowing(c, port, "deltas with broker 2 down")
        kafka.restart(2)
        recovery["broker 2 back"] = flowing(c, port, "deltas after broker 2 came back")

        for node in kafka.nodes:
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
        for node in kafka.nodes:
            assert node.process is not None
            node.process.wait()
            node.process = None
        started = time.monotonic()
        for node in kafka.nodes:
            kafka.launch(node)
        kafka.wait_ready(kafka.nodes)
        recovery["cluster restart"] = time.monotonic() - started
        recovery["all three down, then back"] = flowing(c, port, "deltas after the whole cluster restarted", 180)

        assert c.sim("pause", on=1)["ok"]
        for pair in PAIRS:
            exchange = c.sim("book", symbol=pair, depth=25)
            url = f"http://127.0.0.1:{port}/books/{normalize(pair)}/?depth=25"
            wait_until(lambda: if_levels_equal(http_json(url), exchange), 90, f"{pair} to equal the exchange")
        deltas = c.read("book.deltas")
        by_symbol: dict[str, dict[int, dict[str, Any]]] = {}
        for d in deltas:
            first = by_symbol.setdefault(d["symbol"], {}).setdefault(d["seq"], d)
            assert (first["raw_partition"], first["raw_offset"]) == (d["raw_partition"], d["raw_offset"])
        for symbol, seqs in by_symbol.items():
            assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{symbol}: a seq is missing"
        bad = [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False]
        assert bad == [], bad
        print("recovery seconds:", {k: round(v, 1) for k, v in recovery.items()})
    finally:
        c.close()
        kafka.close()


def test_the_ingest_outlives_a_paused_broker_and_starts_over_with_fresh_snapshots(tmp_path: Path) -> None:
    kafka = start_kafka(tmp_path / "kafka", nodes=1, log=tmp_path)
    c = Cluster(tmp_path, PAIRS, depth=25, sim_args=("--pair-rate", "20", "--seed", "12"), kafka=kafka)
    c.env.update({"KRAKENFLOW_INGEST_SEND_TIMEOUT": "3", "KRAKENFLOW_INGEST_RELEASE_AFTER": "6"})
    ingest_log = tmp_path / "ingest.log"
    try:
        metrics_port = c.start_ingest()
        port = c.start_worker()
        wait_until(lambda: len([b for b in (http_json(f"http://127.0.0.1:{port}/books/") or {"books": []})["books"]
                                if b["state"] == "live"]) == len(PAIRS), 90, "all books live")
        flowing(c, port, "deltas before the pause")
        spent = len(c.sim("state")["connects"])
        broker = kafka.node(1).process
        assert broker is not None
        broker.send_signal(signal.SIGSTOP)  # slow to the point of silence: nothing times out at once
        try:
            wait_until(lambda: "kafka unavailable" in ingest_log.read_text(), 60,
                       "the ingest to drop its Kraken connection")
            wait_until(lambda: "releasing the ingest lock" in ingest_log.read_text(), 60,
                       "the ingest to give up its lock")
        finally:
            broker.send_signal(signal.SIGCONT)
        resumed_ns = time.time_ns()
        wait_until(lambda: ingest_log.read_text().count("this process is the live ingest") >= 2, 120,
                   "the ingest to win its lock back")
        flowing(c, port, "deltas after the pause", timeout=120)
        assert c.procs["ingest"].poll() is None, "the ingest process lives on"
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        counters = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                    if line.startswith(("krakenflow_ingest_kafka_drops_total", "krakenflow_ingest_lock_releases_total"))}
        assert counters["krakenflow_ingest_kafka_drops_total"] >= 1 and counters["krakenflow_ingest_lock_releases_total"] >= 1
        symbols = {normalize(p) for p in PAIRS}

        def fresh(r: list[dict[str, Any]]) -> set[str]:
            return {d["symbol"] for d in r if d["is_snapshot"] and (d["ts_recv_ns"] or 0) > resumed_ns}

        deltas = c.read("book.deltas", until=lambda r: fresh(r) == symbols, timeout=90)
        assert fresh(deltas) == symbols, "every pair started over from a fresh snapshot"
        assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
        # dropped for Kafka, then the lock given up and won back: still one connect for the one connection
        assert len(c.sim("state")["connects"]) - spent == 1, "one Kraken connect for the whole fault"
    finally:
        c.close()
        kafka.close()


def test_a_broker_blip_costs_one_kraken_connect_per_connection(tmp_path: Path) -> None:
    """Kraken allows about 150 connects per 10 minutes per IP. The broker stops for longer than the
    ingest's send timeout and its lock group's session: the overflow policy drops every Kraken
    connection. Each comes back once, when Kafka answers again (not while it is away, nor again if the
    broker, back, expired the ingest's group session before serving its pending heartbeat and the lock
    is won back), and every book starts over from a fresh snapshot."""
    kafka = start_kafka(tmp_path / "kafka", nodes=1, log=tmp_path)
    c = Cluster(tmp_path, PAIRS, depth=25, sim_args=("--pair-rate", "20", "--seed", "12"), kafka=kafka)
    c.env.update({"KRAKENFLOW_INGEST_SEND_TIMEOUT": "3", "KRAKENFLOW_INGEST_RELEASE_AFTER": "600",
                  "KRAKENFLOW_PAIRS_PER_CONNECTION": "2"})
    ingest_log = tmp_path / "ingest.log"

    def subscribed() -> set[str]:
        return {cid for cid, symbols in (c.sim("state") or {}).get("subscriptions", {}).items() if symbols}

    try:
        c.start_ingest()
        port = c.start_worker()
        wait_until(lambda: len([b for b in (http_json(f"http://127.0.0.1:{port}/books/") or {"books": []})["books"]
                                if b["state"] == "live"]) == len(PAIRS), 90, "all books live")
        flowing(c, port, "deltas before the blip")
        before = wait_until(lambda: subscribed() if len(subscribed()) == 2 else None, 30, "two connections")
        spent = len(c.sim("state")["connects"])
        broker = kafka.node(1).process
        assert broker is not None
        broker.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_until(lambda: all(re.search(rf"connection \S+:{n} lost \(kafka unavailable", ingest_log.read_text())
                                   for n in range(2)), 60, "the overflow policy to drop both Kraken connections")
            # the blip's length, not a wait for something: longer than the lock group's session (6 s)
            wait_until(lambda: time.monotonic() - stopped > 8, 30, "the blip to outlast the group session")
        finally:
            broker.send_signal(signal.SIGCONT)
        resumed_ns = time.time_ns()
        flowing(c, port, "deltas after the blip", timeout=120)
        symbols = {normalize(p) for p in PAIRS}

        def fresh(r: list[dict[str, Any]]) -> set[str]:
            return {d["symbol"] for d in r if d["is_snapshot"] and (d["ts_recv_ns"] or 0) > resumed_ns}

        deltas = c.read("book.deltas", until=lambda r: fresh(r) == symbols, timeout=90)
        after = wait_until(lambda: subscribed() if len(subscribed()) == 2 else None, 30, "two connections again")
        assert not after & before, "both connections were dropped"
        text = ingest_log.read_text()
        print("lock won back after the blip:", "losing the group session" in text)  # which way the broker went
        assert len(c.sim("state")["connects"]) - spent == 2, "one connect per Kraken connection"
        assert "reconnecting to Kraken for fresh snapshots" not in text
        assert [(d["symbol"], d["seq"]) for d in deltas if d["checksum_ok"] is False] == [], "a checksum failed"
        assert c.procs["ingest"].poll() is None, "the ingest process lives on"
    finally:
        c.close()
        kafka.close()
