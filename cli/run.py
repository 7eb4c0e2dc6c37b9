"""``krakenflow run``: the whole pipeline on one machine, in one command.

1. a broker: ``KRAKENFLOW_BROKER`` if it names a reachable Kafka, else the embedded broker on
   127.0.0.1:9092 (memory only: restarting it loses every topic, so it is restarted with the worker);
2. a market: live Kraken when ``KRAKENFLOW_KRAKEN_URL`` answers, else the bundled simulator, said
   plainly;
3. the ingest (``krakenflow ingest``) and one worker (``faust -A app worker -l info``, web on 6066);
4. the URLs, once the first books are live.

Every child runs in a session of its own, so a signal to this command's process group (Ctrl-C, or the
SIGTERM of `timeout` or a supervisor) reaches only this command, which stops them in order within
:data:`STOP_BUDGET`: the ingest and the worker first, then the simulator, the broker last (the others
need it to stop cleanly).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from app.datadir import process_label
from app.settings import Settings
from broker.embedded import port_open, start_broker
from broker.kafka import kafka_unavailable

STOP_BUDGET = 10.0  # seconds from a stop request until every child is gone


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


def _local_broker(settings: Settings, host: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the broker this run uses: Apache Kafka when Java 17+ is here, else the embedded Tansu."""
    var = settings.data_dir
    why_not = "KRAKENFLOW_LOCAL_BROKER=embedded" if settings.local_broker == "embedded" else kafka_unavailable()
    if why_not is None:
        from broker.kafka import KAFKA_VERSION, start_kafka

        started = time.monotonic()
        print(f"broker: Apache Kafka {KAFKA_VERSION} (KRaft) on {host}:{port}, data in {var / 'kafka'}", flush=True)
        cluster = start_kafka(var / "kafka", nodes=1, host=host, ports=[port], log=var, own_session=True)
        print(f"        ready in {time.monotonic() - started:.1f} s; books come back from the tables after a "
              "restart", flush=True)
        env["KRAKENFLOW_BROKER_PROFILE"] = "apache-kafka"
        process = cluster.nodes[0].process
        assert process is not None
        return process
    if settings.local_broker == "kafka":
        raise SystemExit(f"KRAKENFLOW_LOCAL_BROKER=kafka, but {why_not}")
    why = "as KRAKENFLOW_LOCAL_BROKER=embedded asks" if settings.local_broker == "embedded" else (
        f"Apache Kafka cannot run here: {why_not}")
    print(f"broker: using the embedded broker (Tansu) on {host}:{port}, memory only ({why})")
    env["KRAKENFLOW_BROKER_PROFILE"] = "embedded"  # this run started it: its workarounds apply
    # a fresh (empty) broker: the worker moves any older local table state aside by itself
    return start_broker(host, port, var / "broker.log", own_session=True)


def port_holder(port: int) -> str | None:
    """``pid N (command line)`` of the process listening on TCP ``port`` (Linux /proc), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return process_label(int(proc.name))
        except OSError:  # gone, or another user's
            continue
    return None


def ensure_port_free(host: str, port: int, what: str, variable: str) -> None:
    """Exit naming the process that holds ``port`` (a leftover of an earlier run, say) and the fix."""
    if not port_open(host, port):
        return
    holder = port_holder(port)
    who = f"by {holder}" if holder else "by another process"
    stop = f"stop it (kill {holder.split()[1]})" if holder else "stop what listens there"
    raise SystemExit(f"port {port}, for the {what}, is taken {who}: a process of an earlier run, perhaps; "
                     f"{stop}, or choose another port with {variable}")


def stop_children(procs: dict[str, subprocess.Popen[bytes]], budget: float = STOP_BUDGET) -> None:
    """SIGTERM in order, SIGKILL for what outlives its share of ``budget``: clients, then the simulator,
    then the broker."""
    deadline = time.monotonic() + budget
    for stage, share in ((("ingest", "worker"), 0.7), (("simulator",), 0.1), (("broker",), 0.2)):
        running = [procs[n] for n in stage if n in procs and procs[n].poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        stage_end = min(deadline, time.monotonic() + share * budget)
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, stage_end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
        ensure_port_free(settings.web_host, settings.web_port, "worker's web views", "KRAKENFLOW_WEB_PORT")
        ensure_port_free(settings.web_host, settings.ingest_metrics_port, "ingest's metrics",
                         "KRAKENFLOW_INGEST_METRICS_PORT")
        host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
        if port_open(host, int(port)):
            print(f"broker: using the Kafka at {settings.broker} (profile {settings.broker_profile})")
        elif host in ("127.0.0.1", "localhost", "::1"):
            procs["broker"] = _local_broker(settings, host, int(port), env)
        else:
            raise SystemExit(f"cannot reach the broker {settings.broker}; start it or fix KRAKENFLOW_BROKER")

        answers = {url: asyncio.run(kraken_reachable(url)) for url in settings.kraken_urls}
        why = None if None in answers.values() else "; ".join(f"{u}: {w}" for u, w in answers.items())
        if why is None:
            print(f"market: live Kraken at {next(u for u, w in answers.items() if w is None)}")
        else:
            print(f"market: Kraken is not reachable from this machine ({why}).")
            sim_port = settings.sim_port
            ensure_port_free("127.0.0.1", sim_port, "simulator", "KRAKENFLOW_SIM_PORT")
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
        # a second Ctrl-C or SIGTERM must not cut the stop short and leave children behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(procs)


if __name__ == "__main__":
    sys.exit(run())
