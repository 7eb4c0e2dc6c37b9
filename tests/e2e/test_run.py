"""The main command: `krakenflow run` with Kraken unreachable falls back to the simulator and fills books,
on Apache Kafka (data kept under var/: a restart brings the books back) or on the embedded broker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import BIN, http_json, wait_until
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e


def processes_of(app_id: str) -> list[int]:
    """Every process started for the run with this app id (its environment says so): broker, simulator,
    ingest, worker and the command itself."""
    marker = f"KRAKENFLOW_APP_ID={app_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0")
                    and (proc / "stat").read_text().split(") ")[-1][0] != "Z"):  # a zombie has stopped
                found.append(int(proc.name))
        except OSError:
            continue
    return found


class Run:
    """One ``krakenflow run`` process, read until it says the books are live. It leads a process group
    of its own, as under a shell, `timeout` or a supervisor, which signal the whole group."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app_id = env["KRAKENFLOW_APP_ID"]
        self.proc = subprocess.Popen([str(BIN / "krakenflow"), "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.watchdog = threading.Timer(150, self.proc.kill)  # a hung start fails the test instead of hanging it
        self.watchdog.start()
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        while not any("Ctrl-C stops everything" in line for line in self.lines):
            line = self.proc.stdout.readline()
            if not line:
                self.stop()
                raise AssertionError("krakenflow run ended early:\n" + "".join(self.lines))
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> float:
        """SIGTERM to the command's process group; seconds until every process of the run is gone."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
            wait_until(lambda: not processes_of(self.app_id), 30, "every process of the run to end")
            return time.monotonic() - started
        finally:
            self.watchdog.cancel()


def run_env(tmp_path: Path, local_broker: str) -> tuple[dict[str, str], int, int]:
    web, broker, sim, closed = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, KRAKENFLOW_BROKER=f"kafka://127.0.0.1:{broker}", KRAKENFLOW_WEB_PORT=str(web),
               KRAKENFLOW_SIM_PORT=str(sim), KRAKENFLOW_KRAKEN_URL=f"ws://127.0.0.1:{closed}/v2",
               KRAKENFLOW_DATA_DIR=str(tmp_path / "var"), KRAKENFLOW_APP_ID=f"kf-run-{uuid.uuid4().hex[:6]}",
               KRAKENFLOW_PAIRS="BTC/USD,ETH/USD,PEPE/USD", KRAKENFLOW_LOCAL_BROKER=local_broker)
    return env, web, sim


def books(web: int) -> dict[str, Any]:
    listing = http_json(f"http://127.0.0.1:{web}/books/") or {"books": []}
    return {b["symbol"]: b for b in listing["books"]}


@pytest.mark.parametrize("local_broker", ["kafka", "embedded"])
def test_run_says_kraken_is_unreachable_and_serves_live_books_from_the_simulator(tmp_path: Path,
                                                                                 local_broker: str) -> None:
    env, web, sim = run_env(tmp_path, local_broker)
    run = Run(env)
    try:
        text = run.text
        expected = "broker: Apache Kafka 3.9" if local_broker == "kafka" else "using the embedded broker (Tansu)"
        assert expected in text, text
        assert "market: Kraken is not reachable from this machine" in text
        assert f"Running the bundled Kraken simulator on ws://127.0.0.1:{sim}/v2 instead." in text
        assert f"http://127.0.0.1:{web}/books/" in text
        children = [pid for pid in processes_of(run.app_id) if pid != run.proc.pid]
        assert len(children) >= 4, children  # broker, simulator, ingest, worker
        # none in the command's group: a group signal reaches only the command, which stops them in order
        assert [pid for pid in children if os.getpgid(pid) == run.proc.pid] == []
        listing = books(web)
        assert set(listing) <= {"BTC-USD", "ETH-USD", "PEPE-USD"}
        assert any(b["state"] == "live" for b in listing.values())
        url = f"http://127.0.0.1:{web}/books/BTC-USD/?depth=5"  # another pair may have gone live first
        book = wait_until(lambda: (lambda b: b if b and len(b.get("bids", ())) == 5 else None)(http_json(url)), 30,
                          "BTC-USD to serve 5 levels")
        assert len(book["bids"]) == 5
    finally:
        stopped_in = run.stop()
    assert http_json(f"http://127.0.0.1:{web}/books/") is None, "the worker stopped with the command"
    assert run.proc.returncode == 0
    print(f"every process of the run gone {stopped_in:.1f} s after SIGTERM to its group")
    # the broker went last: the clients stopped cleanly, with nothing left undelivered
    var = tmp_path / "var"
    assert "did not stop within" not in (var / "worker.log").read_text()
    assert re.search(r"ingest stopped: \d+ frames delivered, 0 not delivered, 0 in flight",
                     (var / "ingest.log").read_text())
    assert stopped_in < 12, f"stopping took {stopped_in:.1f} s (budget 10 s)"


def test_a_run_that_finds_its_port_taken_names_the_process_and_the_fix(tmp_path: Path) -> None:
    env, web, _ = run_env(tmp_path, "embedded")
    with socket.socket() as squatter:  # a leftover worker of an earlier run, say
        squatter.bind(("127.0.0.1", web))
        squatter.listen()
        done = subprocess.run([str(BIN / "krakenflow"), "run"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode != 0
    assert f"port {web}, for the worker's web views, is taken by pid {os.getpid()}" in done.stderr, done.stderr
    assert f"kill {os.getpid()}" in done.stderr and "KRAKENFLOW_WEB_PORT" in done.stderr
    assert not processes_of(env["KRAKENFLOW_APP_ID"]), "nothing was started"


def test_a_restarted_run_on_apache_kafka_brings_the_books_back_from_its_tables(tmp_path: Path) -> None:
    env, web, _ = run_env(tmp_path, "kafka")
    first = Run(env)
    try:
        before = books(web)
    finally:
        first.stop()
    assert before and (tmp_path / "var" / "kafka" / "cluster.id").exists()
    second = Run(env)
    try:
        books(web)
        worker_log = tmp_path / "var" / "worker.log"
        pattern = r"(\S+) restored from the books table: seq (\d+), epoch (\d+)"

        def all_restored() -> dict[str, tuple[int, int]] | None:  # a pair is restored when first seen
            found = {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(pattern, worker_log.read_text())}
            return found if all(was["exchange_symbol"] in found for was in before.values()) else None

        restored = wait_until(all_restored, 60, "every pair served before the stop to be restored")
        for symbol, was in before.items():
            # the same stream goes on from the stored book: seq and epoch continue, not start again
            seq, epoch = restored[was["exchange_symbol"]]
            assert seq >= was["seq"] and epoch >= was["epoch"], (symbol, was, restored)
            wait_until(lambda: books(web)[symbol]["seq"] > seq, 60, f"{symbol} to move on")
        log = worker_log.read_text()
        assert "does not belong to this cluster" not in log  # the broker kept its data: so do the tables
        assert "checksum mismatch" not in log, "a restored book lost its state (its depth, say)"
    finally:
        second.stop()
