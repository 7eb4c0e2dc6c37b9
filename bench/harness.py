"""What the pipeline benches share: a fresh broker with krakenflow's topics, simulator frames, a fast
pre-loader, a delta reader, worker processes and their CPU and RSS read from ``/proc``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.kafka_writer import BatchWriter  # noqa: E402
from app.profile import APACHE_KAFKA_FETCH_MAX_WAIT_MS  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.topics import align_configs, ensure_topics  # noqa: E402
from broker.embedded import start_broker  # noqa: E402
from broker.kafka import start_kafka  # noqa: E402
from sim import render  # noqa: E402
from sim.exchange import PairMarket  # noqa: E402
from sim.pairs import catalogue  # noqa: E402
from tests.processes import free_port  # noqa: E402

BIN = Path(sys.executable).parent
Frames = list[tuple[bytes, bytes]]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Market:
    """Simulator book frames keyed as the ingest keys them: a session start (instruments, acks,
    snapshots), then updates round-robin over the pairs, as many as asked, continuing where the
    previous call ended."""

    def __init__(self, pairs: int, depth: int, seed: int) -> None:
        self.specs = catalogue(pairs)
        self.depth = depth
        self.markets = [PairMarket(spec, seed) for spec in self.specs]
        self.i = 0
        self.now = time.time_ns()

    @property
    def symbols(self) -> list[str]:
        return [spec.symbol for spec in self.specs]

    def start(self) -> Frames:
        out = [(b"conn:bench", render.instrument(self.specs).encode())]
        for m in self.markets:
            symbol = m.spec.symbol
            out.append((symbol.encode(), render.response(
                "subscribe", result={"channel": "book", "depth": self.depth, "snapshot": True, "symbol": symbol},
                time_in_ns=self.now).encode()))
            bids, asks, checksum = m.snapshot(self.depth)
            out.append((symbol.encode(), render.book(symbol, True, bids, asks, checksum, self.now).encode()))
        return out

    def updates(self, n: int, first_ns: int | None = None, spacing_ns: float = 1000) -> Frames:
        """``n`` updates; their exchange times ``spacing_ns`` apart from ``first_ns`` (a replay paces
        them so: the k-th is due ``k * spacing_ns`` after the first), else 1 us apart."""
        out: Frames = []
        while len(out) < n:
            m = self.markets[self.i % len(self.markets)]
            self.i += 1
            stamp = self.now + self.i * 1000 if first_ns is None else first_ns + int(len(out) * spacing_ns)
            event = m.step((self.depth,), stamp)
            b, a = event.views[self.depth]
            if b or a:
                out.append((m.spec.symbol.encode(), render.book(m.spec.symbol, False, b, a, event.checksum,
                                                                 event.ts_ns).encode()))
        return out


#: updates :meth:`Market.updates` renders per second on this machine class, with margin (measured: ~18k)
RENDERED_PER_S = 12_000


def paced_updates(market: Market, count: int, rate: float, lead_s: float) -> tuple[int, Frames]:
    """``count`` updates ``1 / rate`` apart, the first stamped ``lead_s`` after they are rendered (after every
    start frame: an ack's ``time_out`` is the clock at render), in whole us (frames carry us stamps); and
    that stamp. Rendering takes ~5 s per 100k updates here, so the lead starts after its estimate: at 10k
    frames/s the 550k updates outlasted a fixed lead, and the simulator sent them overdue, in a burst."""
    first_ns = (time.time_ns() + int((lead_s + count / RENDERED_PER_S) * 1e9)) // 1000 * 1000
    return first_ns, market.updates(count, first_ns=first_ns, spacing_ns=1e9 / rate)


def write_session(path: Path, frames: Frames) -> int:
    """A session the simulator replays: its status frame, then ``frames``; returns its frame count."""
    lines = [render.status(1)] + [v.decode() for _, v in frames]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


async def preload(settings: Settings, records: Frames, rate: float = 0) -> None:
    """Write ``records`` to ``kraken.raw`` (at ``rate`` frames/s, or as fast as the broker takes them),
    each stamped as the ingest stamps its receive time: at its due time when offered at a rate (a
    late send keeps it, so a stall is counted: no coordinated omission), else when sent."""
    writer = BatchWriter(settings.kafka_bootstrap, "bench-preload")
    await writer.start()
    try:
        chunk = 500 if rate == 0 else max(1, int(rate / 200))
        started, started_ns = time.monotonic(), time.time_ns()
        pending: list[asyncio.Future[object]] = []
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            if rate:
                ahead = start / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # the offered rate
                stamp = str(started_ns + int(start * 1e9 / rate)).encode()
            else:
                stamp = str(time.time_ns()).encode()
            futures = await writer.send_keyed(settings.raw_topic, part, headers=[("recv_ns", stamp)])
            if rate:  # offered: the next chunk does not wait for this one's acks (the ingest does not)
                pending = [f for f in pending if not f.done()] + futures
            else:
                await asyncio.gather(*futures)
        await asyncio.gather(*pending)
    finally:
        await writer.stop()


async def read_deltas(settings: Settings, expect: int, committed: bool, timeout: float = 300,
                      progress: Callable[[int], None] | None = None,
                      ready: tuple[int, asyncio.Event] | None = None, unique: bool = False) -> list[dict[str, int]]:
    """``expect`` deltas from the beginning (emit, receive and read times, checksum state); ``progress``
    is called with the count read so far after every fetch; ``ready`` (n, event): the event is set once
    the first n are read (the reader is caught up: a load offered now meets a reader that is reading);
    ``unique``: a repeat of a ``(symbol, epoch, seq)`` (a ``read_uncommitted`` reader sees an aborted
    transaction's delta and its redo) is dropped, as ``krakenflow.client`` drops it."""
    consumer = AIOKafkaConsumer(settings.topic("book.deltas"), bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=APACHE_KAFKA_FETCH_MAX_WAIT_MS,
                                isolation_level="read_committed" if committed else "read_uncommitted")
    await consumer.start()
    seen: list[dict[str, int]] = []
    keys: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                now = time.time_ns()
                for m in batch:
                    d = orjson.loads(m.value)
                    if unique:
                        key = (d["symbol"], d["epoch"], d["seq"])
                        if key in keys:
                            continue
                        keys.add(key)
                    seen.append({"emit": d["ts_emit_ns"], "recv": d["ts_recv_ns"], "ok": d["checksum_ok"], "read": now,
                                 "exchange": d["ts_exchange_ns"],
                                 # the broker's append time where the topic stamps it (stage_by_append_time)
                                 "appended": m.timestamp * 1_000_000 if m.timestamp_type == 1 else 0})
            if progress is not None:
                progress(len(seen))
            if ready is not None and len(seen) >= ready[0]:
                ready[1].set()
    finally:
        await consumer.stop()
    if len(seen) < expect:
        raise SystemExit(f"only {len(seen)} of {expect} deltas within {timeout:.0f} s")
    return seen


async def stage_by_append_time(settings: Settings, topic: str) -> None:
    """Make the broker stamp ``topic``'s records with their append time (LogAppendTime), so a reader can
    split emit -> read into emit -> appended and appended -> readable (the transaction's commit). The
    topic's other configs stay (``align_configs``: AlterConfigs replaces a topic's whole set)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await align_configs(admin, {settings.topic(topic): {"message.timestamp.type": "LogAppendTime"}})
    finally:
        await admin.close()


def sim_and_ingest(env: dict[str, str], tmp: Path, name: str, capture: Path) -> tuple[list[subprocess.Popen[bytes]], int]:
    """The simulator replaying ``capture`` at its own pace (speed 1) and a ``krakenflow ingest`` fed by
    it, as processes; returns them (ingest last) and the simulator's port (its control API)."""
    port = free_port()
    procs = [subprocess.Popen([str(BIN / "krakenflow"), "sim", "--port", str(port), "--replay", str(capture),
                               "--speed", "1"], cwd=ROOT, env=env, stdout=open(tmp / f"{name}-sim.log", "ab"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)]
    ingest_env = dict(env, KRAKENFLOW_KRAKEN_URL=f"ws://127.0.0.1:{port}/v2", KRAKENFLOW_CHANNELS="book",
                      KRAKENFLOW_INGEST="auto", KRAKENFLOW_INGEST_METRICS_PORT=str(free_port()))
    procs.append(subprocess.Popen([str(BIN / "krakenflow"), "ingest"], cwd=ROOT, env=ingest_env,
                                  stdout=open(tmp / f"{name}-ingest.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
    return procs, port


def replay_origin(port: int, timeout: float = 60) -> tuple[int, int]:
    """(the capture's first stamp, the wall time it went out at) of the simulator's one replay."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/control/state", timeout=5) as answer:
                origins = orjson.loads(answer.read())["replay_origins"]
        except OSError:  # the simulator is not listening yet
            origins = {}
        if origins:
            if len(origins) > 1:
                raise SystemExit(f"the ingest opened {len(origins)} connections: each got the whole replay")
            stamp, sent = next(iter(origins.values()))
            return int(stamp), int(sent)
        if time.monotonic() > deadline:
            raise SystemExit("the ingest did not subscribe to the simulator")
        time.sleep(0.1)  # polling the simulator's control API


class Broker:
    """The bench's broker for one phase: a fresh Apache Kafka node or embedded broker."""

    def __init__(self, kind: str, tmp: Path, name: str) -> None:
        self.kind = kind
        if kind == "kafka":
            self.kafka = start_kafka(tmp / f"kafka-{name}", nodes=1, log=tmp)
            self.bootstrap, self.profile = self.kafka.bootstrap, "apache-kafka"
        else:
            port = free_port()
            self.proc = start_broker("127.0.0.1", port, tmp / f"broker-{name}.log")
            self.bootstrap, self.profile = f"127.0.0.1:{port}", "embedded"

    def terminate(self) -> None:
        if self.kind == "kafka":
            self.kafka.close()
        else:
            self.proc.terminate()


def cluster(kind: str, tmp: Path, name: str, guarantee: str, symbols: list[str], depth: int,
            partitions: int = 8, sensor: bool = False) -> tuple[Broker, dict[str, str], Settings]:
    """A fresh broker with krakenflow's topics, and the environment for workers on it (subscribed to
    the bench's pairs at its depth: a worker refuses frames of pairs its cluster does not subscribe)."""
    broker = Broker(kind, tmp, f"{name}-{guarantee}")
    env = dict(os.environ, KRAKENFLOW_BROKER=f"kafka://{broker.bootstrap}", KRAKENFLOW_INGEST="off",
               KRAKENFLOW_APP_ID=f"bench-{uuid.uuid4().hex[:6]}", KRAKENFLOW_DATA_DIR=str(tmp / f"data-{name}"),
               KRAKENFLOW_RAW_PARTITIONS=str(partitions), KRAKENFLOW_BROKER_PROFILE=broker.profile,
               KRAKENFLOW_PROCESSING_GUARANTEE=guarantee, KRAKENFLOW_PAIRS=",".join(symbols),
               KRAKENFLOW_DEPTH=str(depth),
               # like the no-op agent, no Faust sensor (it costs ~25 % per event; --faust-sensor measures it)
               KRAKENFLOW_FAUST_SENSOR="1" if sensor else "0")
    os.environ.update(env)
    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings))
    return broker, env, settings


class Worker(subprocess.Popen[bytes]):
    """A ``faust -A app worker`` process and the port of its web views and ``/metrics``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.web_port = free_port()
        super().__init__([str(BIN / "faust"), "-A", "app", "worker", "-l", "info"], cwd=ROOT,
                         env=dict(env, KRAKENFLOW_WEB_PORT=str(self.web_port)), stdout=open(log, "ab"),  # noqa: SIM115
                         stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the worker's ``/readyz`` answers 200 (tables recovered, partitions assigned)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/readyz", timeout=5):
                    return
            except OSError:  # not listening yet, or 503: not ready
                if self.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the worker did not get ready") from None
            time.sleep(0.2)  # polling the worker's readiness

    def metric(self, name: str) -> float:
        """A sample's value from the worker's ``/metrics`` (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0


def worker(env: dict[str, str], log: Path) -> Worker:
    return Worker(env, log)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for_result(path: Path, timeout: float = 300) -> dict[str, int]:
    """A child's JSON result file (written to a temporary name, then renamed)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path.name} did not appear within {timeout:.0f} s")
        time.sleep(0.2)  # polling for a child's result file
    result: dict[str, int] = orjson.loads(path.read_bytes())
    return result


def write_result(path: Path, result: dict[str, int]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(orjson.dumps(result))
    partial.replace(path)


#: the load is offered this long before the measured stretch: the records due then are left out of the
#: latency figures (the clients' first metadata and connections, and above all the broker's JIT: not the
#: steady state). Sampled per broker thread at 1k frames/s (issue 20): a fresh broker's C2 compiler
#: threads take ~40 % of a core for the first ~5 s of load, when p50 was 2x its later value, and again
#: with the books changelog's first log-cleaner pass, cold, ~28 s into the load (p99 2-3x for a second).
#: A broker in service compiled all that long ago; the later, warm cleaner passes stay in the figures.
WARMUP_SECONDS = 40.0


def steady(stamped: list[tuple[int, float]]) -> list[float]:
    """The values of (due ns, value) pairs due ``WARMUP_SECONDS`` or more after the first one due."""
    if not stamped:
        return []
    start = min(due for due, _ in stamped) + int(WARMUP_SECONDS * 1e9)
    return [value for due, value in stamped if due >= start]


def percentiles(values: list[float], points: Iterator[float] | tuple[float, ...]) -> dict[float, float]:
    ordered = sorted(values)
    return {p: ordered[min(len(ordered) - 1, int(len(ordered) * p))] for p in points}


async def assigned(consumer: AIOKafkaConsumer, timeout: float = 30) -> list[TopicPartition]:
    """The partitions a group-less consumer subscribed to one topic was given (once its metadata is in)."""
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise SystemExit("the consumer was given no partitions")
        await asyncio.sleep(0.1)  # polling aiokafka's assignment, made from the first metadata
    return sorted(consumer.assignment())
