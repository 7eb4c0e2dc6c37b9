"""Workers started the Faust way: Faust's --web-port and --datadir win; one data directory, one worker;
local state from an earlier broker is moved aside, not a crash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.brokers import EMBEDDED
from tests.cluster import BIN, Cluster, http_json, wait_until
from tests.processes import free_port

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD"]


def faust_worker(c: Cluster, name: str, datadir: Path, port: int) -> subprocess.Popen[bytes]:
    """``faust --datadir DIR -A app worker -l info --web-port PORT``, with no KRAKENFLOW_ port or dir."""
    env = {k: v for k, v in c.env.items() if k not in ("KRAKENFLOW_WEB_PORT", "KRAKENFLOW_DATA_DIR")}
    env["KRAKENFLOW_DATA_DIR"] = str(c.tmp / "default-data")  # would be shared if the flags were ignored
    return c._spawn(name, [str(BIN / "faust"), "--datadir", str(datadir), "-A", "app", "worker", "-l", "info",
                           "--web-port", str(port)], env)


def live_books(port: int) -> int:
    listing = http_json(f"http://127.0.0.1:{port}/books/") or {"books": []}
    return len([b for b in listing["books"] if b["state"] == "live"])


def test_two_workers_by_faust_flags_each_with_its_own_state_and_no_sharing(tmp_path: Path) -> None:
    c = Cluster(tmp_path, PAIRS, raw_partitions=4)
    try:
        c.start_ingest()
        ports = [free_port(), free_port()]
        dirs = [tmp_path / "w1", tmp_path / "w2"]
        for n, (port, datadir) in enumerate(zip(ports, dirs, strict=False)):
            faust_worker(c, f"w{n}", datadir, port)
        for port in ports:
            wait_until(lambda port=port: live_books(port) == len(PAIRS), 90, f"all books live via {port}")
        for n, datadir in enumerate(dirs):
            tables = sorted(p.name for p in datadir.rglob("*.db"))
            assert any(t.startswith("books-") for t in tables), (datadir, tables)
            assert f"pid {c.procs[f'w{n}'].pid}" in (datadir / ".krakenflow.lock").read_text()
        assert not (tmp_path / "default-data").exists()
        # a third worker pointed at the first one's directory is refused, naming the holder
        third = faust_worker(c, "w3", dirs[0], free_port())
        assert third.wait(timeout=60) != 0
        log = c.log("w3")
        assert f"the data directory {dirs[0]} is in use by pid {c.procs['w0'].pid}" in log, log
        assert "faust --datadir DIR -A app worker --web-port PORT" in log
    finally:
        c.close()


def test_without_datadir_the_state_follows_the_web_port_flag(tmp_path: Path) -> None:
    c = Cluster(tmp_path, PAIRS[:1], raw_partitions=2)
    try:
        port = free_port()
        env = {k: v for k, v in c.env.items() if k != "KRAKENFLOW_WEB_PORT"}
        env["KRAKENFLOW_DATA_DIR"] = str(tmp_path / "data")
        c._spawn("worker", [str(BIN / "faust"), "-A", "app", "worker", "-l", "info", "--web-port", str(port)], env)
        lock = tmp_path / "data" / f"worker-{port}" / ".krakenflow.lock"
        wait_until(lambda: lock.exists() and f"pid {c.procs['worker'].pid}" in lock.read_text(), 60,
                   f"the worker's state under worker-{port}")
        assert not (tmp_path / "data" / "worker-6066").exists()
    finally:
        c.close()


def test_stale_local_state_from_an_earlier_broker_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    datadir = tmp_path / "worker"
    port = free_port()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    # two embedded brokers: the second one is a fresh broker with nothing of the first's
    first = Cluster(tmp_path / "one", PAIRS, raw_partitions=4, broker=EMBEDDED)
    try:
        first.start_ingest()
        faust_worker(first, "worker", datadir, port)
        wait_until(lambda: live_books(port) == len(PAIRS), 90, "books live on the first broker")
        wait_until(lambda: list(datadir.rglob("books-*.db")), 30, "the books table on disk")
    finally:
        first.close()
    second = Cluster(tmp_path / "two", PAIRS, raw_partitions=4, broker=EMBEDDED)
    second.env["KRAKENFLOW_APP_ID"] = first.env["KRAKENFLOW_APP_ID"]  # the same app, as after a broker restart
    try:
        second.start_ingest()
        faust_worker(second, "worker", datadir, port)
        wait_until(lambda: live_books(port) == len(PAIRS), 90, "books live on the fresh broker")
        log = (tmp_path / "two" / "worker.log").read_text()
        assert "does not belong to this cluster" in log and "moved it to" in log, log
        assert "ConsistencyError" not in log
        assert [p for p in datadir.iterdir() if p.name.startswith("stale-")]
    finally:
        second.close()
