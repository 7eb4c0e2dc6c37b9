"""Pipeline throughput and latency on Apache Kafka (``--broker kafka``, the default) or the embedded broker.

1. Pre-load N simulator book frames (many pairs) into ``kraken.raw``.
2. Start one real worker; measure frames/s into ``kraken.book.deltas`` (first to last emit).
3. Start a no-op Faust agent over the same frames; measure its events/s: Faust's own ceiling.
4. Offer frames at a fixed rate to a fresh topic generation and measure receive -> delta emitted
   (the deltas are read ``read_committed``; the time until a transaction commits is not in it).

On Apache Kafka steps 2 and 4 run twice in the same run: exactly-once (the default there) and at
least once, so the price of the guarantee is measured on the same machine state.

    python bench/pipeline.py [--broker kafka|embedded] [--frames 40000] [--pairs 20] [--rate 1000] [--seconds 20]

Last line: ``RESULT frames_per_s=<n> noop_frames_per_s=<n> ratio=<x> p50_ms=<x> p99_ms=<x>`` and, on
Apache Kafka, the same figures of the at-least-once run with an ``_alo`` suffix.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.kafka_writer import BatchWriter  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.topics import ensure_topics  # noqa: E402
from broker.embedded import start_broker  # noqa: E402
from broker.kafka import start_kafka  # noqa: E402
from sim import render  # noqa: E402
from sim.exchange import PairMarket  # noqa: E402
from sim.pairs import catalogue  # noqa: E402
from tests.processes import free_port  # noqa: E402

BIN = Path(sys.executable).parent
FAUST_SENSOR = "--faust-sensor" in sys.argv
BROKER = sys.argv[sys.argv.index("--broker") + 1] if "--broker" in sys.argv else "kafka"


def frames(n: int, pairs: int, depth: int, seed: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(session start, updates): acks and snapshots, then ``n`` updates round-robin over pairs, as
    (key, frame) keyed like the ingest keys them."""
    specs = catalogue(pairs)
    markets = [PairMarket(spec, seed) for spec in specs]
    start = [(b"conn:bench", render.instrument(specs).encode())]
    now = time.time_ns()
    for m in markets:
        symbol = m.spec.symbol
        start.append((symbol.encode(), render.response(
            "subscribe", result={"channel": "book", "depth": depth, "snapshot": True, "symbol": symbol},
            time_in_ns=now).encode()))
        bids, asks, checksum = m.snapshot(depth)
        start.append((symbol.encode(), render.book(symbol, True, bids, asks, checksum, now).encode()))
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while len(out) < n:
        m = markets[i % len(markets)]
        i += 1
        event = m.step((depth,), now + i * 1000)
        b, a = event.views[depth]
        if b or a:
            out.append((m.spec.symbol.encode(), render.book(m.spec.symbol, False, b, a, event.checksum,
                                                             event.ts_ns).encode()))
    return start, out


async def preload(settings: Settings, records: list[tuple[bytes, bytes]], rate: float = 0) -> None:
    writer = BatchWriter(settings.kafka_bootstrap, "bench-preload")
    await writer.start()
    try:
        chunk = 500 if rate == 0 else max(1, int(rate / 100))
        started = time.monotonic()
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            if rate:
                ahead = start / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # the offered rate
            stamp = str(time.time_ns()).encode()
            futures = await writer.send_keyed(settings.raw_topic, [(k, v) for k, v in part], headers=[("recv_ns", stamp)])
            await asyncio.gather(*futures)
    finally:
        await writer.stop()


async def read_deltas(settings: Settings, expect: int, timeout: float = 300) -> list[dict[str, int]]:
    # subscribed without a group: every partition, once the metadata names them (a fresh consumer's
    # first metadata may not list a topic another process just created)
    consumer = AIOKafkaConsumer(settings.topic("book.deltas"), bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed" if BROKER == "kafka" else "read_uncommitted")
    await consumer.start()
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for m in batch:
                    d = orjson.loads(m.value)
                    seen.append({"emit": d["ts_emit_ns"], "recv": d["ts_recv_ns"], "ok": d["checksum_ok"]})
    finally:
        await consumer.stop()
    return seen


def worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "faust"), "-A", "app", "worker", "-l", "info"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


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


def cluster(tmp: Path, name: str, guarantee: str, pairs: int, depth: int) -> tuple[Broker, dict[str, str], Settings]:
    """A fresh broker with krakenflow's topics, and the environment for a worker on it (subscribed to
    the bench's pairs at its depth: a worker refuses frames of pairs its cluster does not subscribe)."""
    broker = Broker(BROKER, tmp, f"{name}-{guarantee}")
    env = dict(os.environ, KRAKENFLOW_BROKER=f"kafka://{broker.bootstrap}", KRAKENFLOW_INGEST="off",
               KRAKENFLOW_APP_ID=f"bench-{uuid.uuid4().hex[:6]}", KRAKENFLOW_DATA_DIR=str(tmp / f"data-{name}"),
               KRAKENFLOW_WEB_PORT=str(free_port()), KRAKENFLOW_RAW_PARTITIONS="4",
               KRAKENFLOW_BROKER_PROFILE=broker.profile, KRAKENFLOW_PROCESSING_GUARANTEE=guarantee,
               KRAKENFLOW_PAIRS=",".join(spec.symbol for spec in catalogue(pairs)), KRAKENFLOW_DEPTH=str(depth),
               # like the no-op agent, no Faust sensor (it costs ~25 % per event; --faust-sensor measures it)
               KRAKENFLOW_FAUST_SENSOR="1" if FAUST_SENSOR else "0")
    os.environ.update(env)
    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings))
    return broker, env, settings


def throughput(args: argparse.Namespace, tmp: Path, guarantee: str, noop: bool) -> tuple[float, float | None]:
    broker, env, settings = cluster(tmp, "throughput", guarantee, args.pairs, args.depth)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        start, updates = frames(args.frames, args.pairs, args.depth, 1)
        asyncio.run(preload(settings, start + updates))
        book_frames = args.pairs + len(updates)
        print(f"pre-loaded {len(start) + len(updates)} frames ({args.pairs} pairs, depth {args.depth}, "
              f"{book_frames} book messages)", flush=True)
        procs.append(worker(env, tmp / f"worker-{guarantee}.log"))
        deltas = asyncio.run(read_deltas(settings, book_frames))
        emits = sorted(d["emit"] for d in deltas)
        rate = (len(emits) - 1) / ((emits[-1] - emits[0]) / 1e9)
        bad = sum(1 for d in deltas if not d["ok"])
        print(f"book worker ({guarantee}): {len(deltas)} deltas at {rate:,.0f} frames/s, {bad} checksum failures",
              flush=True)
        procs.pop().terminate()
        if not noop:
            return rate, None

        out = tmp / "noop.json"
        noop_env = dict(env, BENCH_APP_ID=f"noop-{uuid.uuid4().hex[:6]}", BENCH_EXPECT=str(len(start) + len(updates)),
                        BENCH_OUT=str(out), BENCH_PARTITIONS="4")
        procs.append(subprocess.Popen([str(BIN / "faust"), "-A", "bench.noop_app", "worker", "-l", "info",
                                       "--without-web"], cwd=ROOT, env=noop_env,
                                      stdout=open(tmp / "noop.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
        deadline = time.monotonic() + 300
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.5)  # polling for the no-op agent's result file
        seen = orjson.loads(out.read_bytes())
        rate_noop = (seen["events"] - 1) / ((seen["last"] - seen["first"]) / 1e9)
        print(f"no-op Faust agent: {rate_noop:,.0f} events/s", flush=True)
        return rate, rate_noop
    finally:
        for p in procs:
            p.terminate()
        broker.terminate()


def latency(args: argparse.Namespace, tmp: Path, guarantee: str) -> tuple[float, float]:
    broker, env, settings = cluster(tmp, "latency", guarantee, args.pairs, args.depth)
    proc = worker(env, tmp / f"worker-latency-{guarantee}.log")
    try:
        count = int(args.rate * args.seconds)
        start, updates = frames(count, args.pairs, args.depth, 2)
        asyncio.run(preload(settings, start))
        asyncio.run(read_deltas(settings, args.pairs))  # the worker is up and every book is live
        asyncio.run(preload(settings, updates, rate=args.rate))
        deltas = asyncio.run(read_deltas(settings, args.pairs + len(updates)))
        # emit time: the reader starts after the offered load, so its own receive time says nothing
        lat = sorted((d["emit"] - d["recv"]) / 1e6 for d in deltas[args.pairs:])
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
        print(f"latency ({guarantee}) at {args.rate:.0f} frames/s offered, receive -> delta emitted: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} deltas)", flush=True)
        return p50, p99
    finally:
        proc.terminate()
        broker.terminate()


def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
    first = "exactly_once" if BROKER == "kafka" else "at_least_once"
    rate, noop = throughput(args, tmp, first, noop=True)
    assert noop is not None
    p50, p99 = latency(args, tmp, first)
    line = (f"RESULT broker={BROKER} guarantee={first} frames_per_s={rate:.0f} noop_frames_per_s={noop:.0f} "
            f"ratio={rate / noop:.2f} p50_ms={p50:.1f} p99_ms={p99:.1f}")
    if BROKER == "kafka":  # the price of exactly-once, same run
        alo, _ = throughput(args, tmp, "at_least_once", noop=False)
        alo50, alo99 = latency(args, tmp, "at_least_once")
        line += (f" frames_per_s_alo={alo:.0f} ratio_alo={alo / noop:.2f} exactly_once_cost={1 - rate / alo:.2f}"
                 f" p50_ms_alo={alo50:.1f} p99_ms_alo={alo99:.1f}")
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40_000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--depth", type=int, default=25)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered frames/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument("--faust-sensor", action="store_true", help="run the worker with Faust's Prometheus sensor")
    parser.add_argument("--broker", choices=("kafka", "embedded"), default="kafka",
                        help="Apache Kafka (native, the reference) or the embedded broker")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
