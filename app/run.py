"""``krakenflow run``: the whole pipeline on one machine, in one command.

1. a broker: ``KRAKENFLOW_BROKER`` if it names a reachable Kafka, else the embedded broker on
   127.0.0.1:9092 (memory only: restarting it loses every topic, so it is restarted with the worker);
2. a market: live Kraken when ``KRAKENFLOW_KRAKEN_URL`` answers, else the bundled simulator, said
   plainly;
3. the ingest (``krakenflow ingest``) and one worker (``faust -A app worker -l info``, web on 6066);
4. the URLs, once the first books are live.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from app.broker import port_open, start_broker
from app.settings import Settings

async def kraken_reachable(url: str, timeout: float = 6.0) -> str | None:
    """None when the URL answers with Kraken's status frame; else why not."""
    from websockets.asyncio.client import connect

    try:
        async with asyncio.timeout(timeout):
            async with connect(url, open_timeout=timeout) as ws:
                first = await ws.recv()
                if '"channel":"status"' not in str(first):
                    return f"unexpected first frame {str(first)[:80]!r}"
                return None
    except Exception as exc:  # DNS failure, refused, TLS, timeout: all mean "not reachable here"
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_books(port: int, procs: dict[str, subprocess.Popen[bytes]], timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see its log in var/")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/books/?local=1", timeout=2) as response:
                books = orjson.loads(response.read())["books"]
            live = [b for b in books if b["state"] in ("live", "stale")]
            if live:
                return len(live)
        except OSError:
            pass
        time.sleep(0.5)  # polling the worker's own HTTP endpoint while it starts
    raise SystemExit(f"no live book within {timeout:.0f} s; see var/worker.log")


def run() -> int:
    # SIGTERM (from a supervisor or `timeout`) must stop the children too: unwind through `finally`
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    settings = Settings.from_env()
    var = settings.data_dir
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    bin_dir = Path(sys.executable).parent
    try:
        host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
        if port_open(host, int(port)):
            print(f"broker: using the Kafka at {settings.broker}")
        elif settings.embedded_broker:
            procs["broker"] = start_broker(host, int(port), var / "broker.log")
            # a fresh (empty) broker: old local table state would disagree with it
            shutil.rmtree(var / f"worker-{settings.web_port}", ignore_errors=True)
            print(f"broker: embedded Kafka-protocol broker (Tansu) on {host}:{port}, memory only")
        else:
            raise SystemExit(f"cannot reach the broker {settings.broker}; start it or fix KRAKENFLOW_BROKER")

        why = asyncio.run(kraken_reachable(settings.kraken_url))
        if why is None:
            print(f"market: live Kraken at {settings.kraken_url}")
        else:
            print(f"market: Kraken is not reachable from this machine ({why}).")
            sim_port = settings.sim_port
            print(f"        Running the bundled Kraken simulator on ws://127.0.0.1:{sim_port}/v2 instead.")
            procs["simulator"] = _spawn([str(bin_dir / "krakenflow"), "sim", "--port", str(sim_port)], env,
                                        var / "sim.log")
            env["KRAKENFLOW_KRAKEN_URL"] = f"ws://127.0.0.1:{sim_port}/v2"
            deadline = time.monotonic() + 15
            while not port_open("127.0.0.1", sim_port):
                if time.monotonic() > deadline or procs["simulator"].poll() is not None:
                    raise SystemExit("the simulator did not start; see var/sim.log")
                time.sleep(0.05)  # polling the port of the simulator we just started

        procs["ingest"] = _spawn([str(bin_dir / "krakenflow"), "ingest"], env, var / "ingest.log")
        procs["worker"] = _spawn([str(bin_dir / "faust"), "-A", "app", "worker", "-l", "info"], env,
                                 var / "worker.log")
        live = _wait_for_books(settings.web_port, procs)
        base = f"http://127.0.0.1:{settings.web_port}"
        print(f"\n{live} books live. Open:")
        print(f"  {base}/books/                 every book: state, seq, last update")
        print(f"  {base}/books/BTC-USD/?depth=10  one book, best first")
        if "simulator" in procs:
            print(f"  http://127.0.0.1:{settings.sim_port}/control/state   simulator state and fault controls")
        print(f"Logs in {var}/. Ctrl-C stops everything.", flush=True)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)  # supervising child processes
        dead = [name for name, p in procs.items() if p.poll() is not None]
        print(f"{', '.join(dead)} stopped; shutting down (logs in {var}/)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for name in ("ingest", "worker", "simulator", "broker"):
            proc = procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(run())
