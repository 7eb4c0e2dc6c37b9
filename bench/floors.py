"""Latency floors on this machine, with the pipeline's own client settings: what no pipeline built on
these clients and this broker can beat.

1. **One plain hop** (the ingest's hop, receive -> ``kraken.raw`` -> a reader): an aiokafka producer as
   the ingest configures it (acks=all, idempotent, ``KRAKENFLOW_INGEST_LINGER_MS``) to a consumer with
   the worker's fetch wait (10 ms).
2. **A transactional group commit** (the worker's hop under exactly-once): records arrive at the offered
   rate; a transactional producer (``app/kafka_writer.py`` settings, aiokafka's back-off shortened by
   ``app/kafka_internals.py`` as in the worker) commits whatever arrived while its previous commit was
   in flight; a ``read_committed`` consumer reads them.

3. **The pipeline's two hops, chained, with a bare worker** (``bench/bare_worker.py``: aiokafka alone, no
   Faust, no books): records go to a source topic as the ingest sends them, 20 keys over 8 partitions;
   the bare worker copies them to a sink topic through its group commit (a transaction with the
   consumer's offsets in it under exactly-once; acks=all then an offset commit at least once); a reader
   reads the sink (``read_committed``). Its latency is the floor under the pipeline's receive -> read,
   and the bare worker's CPU (a process of its own) the floor under the worker's.
4. **Kafka's own ``EndToEndLatency``** (the ``kafka-tools`` artifact, ``bench/kafka-tools/pom.xml``): one
   100-byte record at a time, acks=all, produce -> consume, in a closed loop (its own tool, its own
   client; the number the broker's maintainers quote).

Every record of 1, 2 and 3 is stamped with its due time (``t0 + i / rate``) and its latency runs from there to its
read, so a stalled producer shows up in the figures (no coordinated omission). The load is offered
``WARMUP_SECONDS`` (``bench/harness.py``) longer than ``--seconds``, and the records due in that first
stretch are left out, as in ``bench/pipeline.py``: both measure the steady state at the offered rate.

    python bench/floors.py [--bootstrap host:port] [--rate 1000] [--seconds 10]

Without ``--bootstrap`` a fresh single-node Apache Kafka is started (and stopped). Last line:
``RESULT floor_p50_ms=.. floor_p99_ms=.. floor_txn_p50_ms=.. floor_txn_p99_ms=.. floor_chain_p50_ms_eos=..
floor_chain_p99_ms_eos=.. floor_worker_cpu_pct_eos=.. floor_worker_idle_cpu_pct_eos=.. (and the same for _alo)
floor_broker_cpu_ratio_eos_alo=.. floor_kafka_e2e_p50_ms=.. floor_kafka_e2e_p99_ms=..``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from app.kafka_internals import shorten_transaction_backoff  # noqa: E402
from app.kafka_writer import BatchWriter  # noqa: E402
from app.profile import APACHE_KAFKA_FETCH_MAX_WAIT_MS  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench import bare_worker  # noqa: E402
from bench.harness import WARMUP_SECONDS, assigned, cpu_seconds, percentiles, steady  # noqa: E402

STAMP = struct.Struct(">q")  # the record's due time, ns


async def new_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"floor-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def read(bootstrap: str, topic: str, count: int, committed: bool, started: asyncio.Event) -> list[float]:
    """ms from each record's due time to its read, for ``count`` records, those due in the first
    ``WARMUP_SECONDS`` left out (the pipeline's figures leave them out too)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=APACHE_KAFKA_FETCH_MAX_WAIT_MS,
                                isolation_level="read_committed" if committed else "read_uncommitted")
    await consumer.start()
    out: list[tuple[int, float]] = []
    try:
        await assigned(consumer)
        started.set()
        while len(out) < count:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time_ns()
                out.extend((due, (now - due) / 1e6) for m in batch if (due := STAMP.unpack(m.value)[0]))
    finally:
        await consumer.stop()
    return steady(out)


async def offer(rate: float, count: int, send: Callable[[int], Awaitable[None]]) -> None:
    """Call ``send(due_ns)`` for each record at its due time (late calls carry their due time)."""
    t0 = time.time_ns() + 50_000_000
    for i in range(count):
        due = t0 + int(i * 1e9 / rate)
        ahead = (due - time.time_ns()) / 1e9
        if ahead > 0:
            await asyncio.sleep(ahead)
        await send(due)


async def one_hop(bootstrap: str, rate: float, seconds: float) -> list[float]:
    settings = Settings.from_env()
    topic = await new_topic(bootstrap)
    count = int(rate * (seconds + WARMUP_SECONDS))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=settings.ingest_linger_ms,
                                **settings.profile.producer_config())
    await producer.start()
    started = asyncio.Event()
    reading = asyncio.ensure_future(read(bootstrap, topic, count, False, started))
    await started.wait()
    try:
        async def send(due: int) -> None:
            await producer.send(topic, STAMP.pack(due), key=b"BTC/USD")

        await offer(rate, count, send)
        return await reading
    finally:
        await producer.stop()


async def group_commit(bootstrap: str, rate: float, seconds: float) -> list[float]:
    settings = Settings(broker=f"kafka://{bootstrap}")
    topic = await new_topic(bootstrap)
    count = int(rate * (seconds + WARMUP_SECONDS))
    shorten_transaction_backoff()
    template = BatchWriter(bootstrap, "floor-txn", settings.profile.writer_config())
    producer = template.new_producer(transactional_id=f"floor-{uuid.uuid4().hex[:8]}")
    await producer.start()
    writer = BatchWriter(bootstrap, "floor-txn", template.config, producer=producer)
    started = asyncio.Event()
    reading = asyncio.ensure_future(read(bootstrap, topic, count, True, started))
    await started.wait()
    pending: list[tuple[bytes, bytes]] = []
    arrived = asyncio.Event()
    offered = False

    async def committer() -> None:
        while not (offered and not pending):
            if not pending:
                arrived.clear()
                await arrived.wait()
                continue
            batch = pending[:]
            del pending[:]
            await producer.begin_transaction()
            futures = await writer.send_partition(topic, 0, batch)
            await producer.commit_transaction()
            await asyncio.gather(*futures)

    committing = asyncio.ensure_future(committer())
    try:
        async def send(due: int) -> None:
            pending.append((b"BTC/USD", STAMP.pack(due)))
            arrived.set()

        await offer(rate, count, send)
        offered = True
        arrived.set()
        await committing
        return await reading
    finally:
        await producer.stop()


async def chained(bootstrap: str, rate: float, seconds: float, exactly_once: bool, partitions: int = 8,
                  keys: int = 20, broker_pid: int | None = None, idle_seconds: float = 5.0) -> dict[str, Any]:
    """Latencies of the two hops chained through a bare worker (``latency``), that worker's CPU (% of a
    core) idle for ``idle_seconds`` (``idle``) and while the records were offered (``cpu``), and the
    broker's then (``broker``, with ``broker_pid``)."""
    settings = Settings.from_env()
    source, sink = await new_topic(bootstrap, partitions), await new_topic(bootstrap, partitions)
    count = int(rate * (seconds + WARMUP_SECONDS))
    bare = await asyncio.create_subprocess_exec(*bare_worker.command(bootstrap, source, sink, exactly_once),
                                                stdout=asyncio.subprocess.PIPE)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=settings.ingest_linger_ms,
                                **settings.profile.producer_config())
    await producer.start()
    try:
        assert bare.stdout is not None
        if await asyncio.wait_for(bare.stdout.readline(), 60) != b"ready\n":
            raise SystemExit("the bare worker did not start")
        started = asyncio.Event()
        reading = asyncio.ensure_future(read(bootstrap, sink, count, True, started))
        await started.wait()
        names = [f"PAIR{i}/USD".encode() for i in range(keys)]
        # a first record per key (stamp 0: not counted) once the source takes writes: a fresh topic
        # refuses them for a moment, and the retries would be counted as latency
        await asyncio.gather(*[producer.send_and_wait(source, STAMP.pack(0), key=name) for name in names])
        idle_started, idle_cpu = time.monotonic(), cpu_seconds(bare.pid)
        await asyncio.sleep(idle_seconds)  # the measured interval itself
        idle = (cpu_seconds(bare.pid) - idle_cpu) / (time.monotonic() - idle_started) * 100
        busy_started, busy_cpu = time.monotonic(), cpu_seconds(bare.pid)
        busy_broker = cpu_seconds(broker_pid) if broker_pid else 0.0
        sent = 0

        async def send(due: int) -> None:
            nonlocal sent
            await producer.send(source, STAMP.pack(due), key=names[sent % keys])
            sent += 1

        await offer(rate, count, send)
        values = await reading
        wall = time.monotonic() - busy_started
        return {"latency": values, "idle": idle, "cpu": (cpu_seconds(bare.pid) - busy_cpu) / wall * 100,
                "broker": (cpu_seconds(broker_pid) - busy_broker) / wall * 100 if broker_pid else None}
    finally:
        await producer.stop()
        if bare.returncode is None:
            bare.terminate()
            await bare.wait()


def report(name: str, values: list[float]) -> dict[float, float]:
    points = percentiles(values, (0.5, 0.9, 0.99, 0.999))
    print(f"{name}: " + ", ".join(f"p{p * 100:g} {v:.1f} ms" for p, v in points.items()), flush=True)
    return points


def tools_jars() -> Path:
    """Kafka's tools jars (``bench/kafka-tools/pom.xml``), fetched from Maven Central on first use into a
    directory beside the broker's jars."""
    from broker.kafka import kafka_home, maven_binary

    libs = kafka_home() / "tools-libs"
    marker = libs / ".complete"
    if not marker.exists():
        print(f"fetching Kafka's tools jars from Maven Central (once) into {libs} ...", flush=True)
        done = subprocess.run([maven_binary(), "-q", "-B", "-f", str(ROOT / "bench" / "kafka-tools" / "pom.xml"),
                               "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"fetching Kafka's tools failed (mvn exit {done.returncode}): {done.stdout[-2000:]}")
        marker.touch()
    return libs


def kafka_end_to_end(bootstrap: str, messages: int = 5000) -> dict[float, float]:
    """Kafka's ``EndToEndLatency`` against ``bootstrap`` (a topic of its own): its p50, p99 and p99.9 in
    ms (it reports whole ms)."""
    from broker.kafka import ensure_jars, java_binary

    topic = f"floor-e2e-{uuid.uuid4().hex[:8]}"  # the tool creates it, with the one partition it needs
    classpath = f"{ensure_jars()}/*:{tools_jars()}/*"
    done = subprocess.run([java_binary(), "-Xmx256m", "-cp", classpath, "org.apache.kafka.tools.EndToEndLatency",
                           bootstrap, topic, str(messages), "all", "100"], capture_output=True, text=True, timeout=600)
    found = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"Kafka's EndToEndLatency failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}")
    points = {0.5: float(found.group(1)), 0.99: float(found.group(2)), 0.999: float(found.group(3))}
    print(f"floor, Kafka's EndToEndLatency ({messages} records one at a time, acks=all): "
          + ", ".join(f"p{p * 100:g} {v:.0f} ms" for p, v in points.items()), flush=True)
    return points


def floors(bootstrap: str, rate: float, seconds: float, broker_pid: int | None = None) -> dict[str, str]:
    hop = report(f"floor, one plain hop at {rate:.0f} records/s", asyncio.run(one_hop(bootstrap, rate, seconds)))
    txn = report(f"floor, transactional group commit at {rate:.0f} records/s, read_committed",
                 asyncio.run(group_commit(bootstrap, rate, seconds)))
    fig = {"floor_p50_ms": f"{hop[0.5]:.1f}", "floor_p99_ms": f"{hop[0.99]:.1f}",
           "floor_txn_p50_ms": f"{txn[0.5]:.1f}", "floor_txn_p99_ms": f"{txn[0.99]:.1f}"}
    broker: dict[str, float] = {}
    for label, exactly_once in (("eos", True), ("alo", False)):
        got = asyncio.run(chained(bootstrap, rate, seconds, exactly_once, broker_pid=broker_pid))
        chain = report(f"floor, ingest hop + bare worker ({label}) at {rate:.0f} records/s, read_committed",
                       got["latency"])
        print(f"floor, bare worker ({label}) CPU idle {got['idle']:.1f} %, at {rate:.0f} records/s {got['cpu']:.1f} % "
              "of a core" + (f", broker {got['broker']:.1f} %" if got["broker"] is not None else ""), flush=True)
        fig.update({f"floor_chain_p50_ms_{label}": f"{chain[0.5]:.1f}", f"floor_chain_p99_ms_{label}": f"{chain[0.99]:.1f}",
                    f"floor_worker_cpu_pct_{label}": f"{got['cpu']:.1f}",
                    f"floor_worker_idle_cpu_pct_{label}": f"{got['idle']:.1f}"})
        if got["broker"] is not None:
            broker[label] = got["broker"]
    if len(broker) == 2:  # what exactly-once costs the broker with no pipeline around it
        fig["floor_broker_cpu_ratio_eos_alo"] = f"{broker['eos'] / max(broker['alo'], 1e-9):.2f}"
    tool = kafka_end_to_end(bootstrap)
    return {**fig, "floor_kafka_e2e_p50_ms": f"{tool[0.5]:.0f}", "floor_kafka_e2e_p99_ms": f"{tool[0.99]:.0f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an Apache Kafka to measure (default: a fresh one)")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.bootstrap:
        fig = floors(args.bootstrap, args.rate, args.seconds)
    else:
        from broker.kafka import start_kafka

        with start_kafka(Path(tempfile.mkdtemp(prefix="kf-floors-")), nodes=1) as kafka:
            node = kafka.node(1).process
            fig = floors(kafka.bootstrap, args.rate, args.seconds, node.pid if node else None)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fig.items()))


if __name__ == "__main__":
    main()
