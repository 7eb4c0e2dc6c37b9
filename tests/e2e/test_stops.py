"""Stops that end: a worker whose broker is gone still exits on SIGTERM within its stop timeout, and the
standalone ingest stops cleanly on SIGTERM (flushes its frames, leaves the lock group for a standby)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.brokers import EMBEDDED
from tests.cluster import Cluster, http_json, wait_until

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD"]


def live(port: int) -> bool:
    listing = http_json(f"http://127.0.0.1:{port}/books/?local=1") or {"books": []}
    return any(b["state"] == "live" for b in listing["books"])


def test_a_worker_whose_broker_is_gone_still_exits_on_sigterm(tmp_path: Path) -> None:
    c = Cluster(tmp_path, PAIRS, depth=10, sim_args=("--pair-rate", "10"), broker=EMBEDDED)
    c.env["KRAKENFLOW_STOP_TIMEOUT"] = "4"
    try:
        c.start_ingest()
        port = c.start_worker()
        wait_until(lambda: live(port), 90, "a live book")
        c.stop("broker", signal.SIGKILL)  # gone for good: every commit and flush would wait on it
        worker = c.procs["worker"]
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker was still running 30 s after SIGTERM") from None
        took = time.monotonic() - started
        print(f"worker exited {took:.1f} s after SIGTERM, broker gone")
        assert took < 4 + 3, f"{took:.1f} s"
        assert "the worker did not stop within 4 s" in c.log("worker")
    finally:
        c.close()


def test_the_standalone_ingest_flushes_and_leaves_its_group_on_sigterm(tmp_path: Path) -> None:
    c = Cluster(tmp_path, PAIRS, depth=10, sim_args=("--pair-rate", "10"))
    try:
        c.start_ingest("ingest-1")
        wait_until(lambda: "this process is the live ingest" in c.log("ingest-1"), 60, "ingest-1 to be live")
        c.start_ingest("ingest-2")
        wait_until(lambda: "Joined group" in c.log("ingest-2"), 60, "ingest-2 to stand by")
        c.read("raw", until=lambda r: len(r) > 50, timeout=60)
        proc = c.procs["ingest-1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = c.log("ingest-1")
        assert "SIGTERM: stopping (flushing frames, leaving the ingest group)" in log
        assert "LeaveGroup request succeeded" in log
        assert " 0 not delivered, 0 in flight" in log, log[-1500:]
        # the standby is told at once by the group (no session timeout to wait out)
        wait_until(lambda: "this process is the live ingest" in c.log("ingest-2"), 30, "the standby to take over")
    finally:
        c.close()
