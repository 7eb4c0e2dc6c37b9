"""The main command: `krakenflow run` with Kraken unreachable falls back to the simulator and fills books."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from tests.cluster import BIN, http_json
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_run_says_kraken_is_unreachable_and_serves_live_books_from_the_simulator(tmp_path: Path) -> None:
    web, broker, sim, closed = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, KRAKENFLOW_BROKER=f"kafka://127.0.0.1:{broker}", KRAKENFLOW_WEB_PORT=str(web),
               KRAKENFLOW_SIM_PORT=str(sim), KRAKENFLOW_KRAKEN_URL=f"ws://127.0.0.1:{closed}/v2",
               KRAKENFLOW_DATA_DIR=str(tmp_path / "var"), KRAKENFLOW_APP_ID=f"kf-run-{uuid.uuid4().hex[:6]}",
               KRAKENFLOW_PAIRS="BTC/USD,ETH/USD,PEPE/USD")
    proc = subprocess.Popen([str(BIN / "krakenflow"), "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(150, proc.kill)  # a hung start fails the test instead of hanging it
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("Ctrl-C stops everything" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("krakenflow run ended early:\n" + "".join(lines))
            lines.append(line)
        text = "".join(lines)
        assert "market: Kraken is not reachable from this machine" in text
        assert f"Running the bundled Kraken simulator on ws://127.0.0.1:{sim}/v2 instead." in text
        assert f"http://127.0.0.1:{web}/books/" in text
        listing = http_json(f"http://127.0.0.1:{web}/books/")
        assert {b["symbol"] for b in listing["books"]} <= {"BTC-USD", "ETH-USD", "PEPE-USD"}
        assert any(b["state"] == "live" for b in listing["books"])
        book = http_json(f"http://127.0.0.1:{web}/books/BTC-USD/?depth=5")
        assert len(book["bids"]) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            watchdog.cancel()
    assert http_json(f"http://127.0.0.1:{web}/books/") is None, "the worker stopped with the command"
