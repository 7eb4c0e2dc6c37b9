"""Pipeline throughput, latency, cost and memory on Apache Kafka (``--broker kafka``, the default) or the
embedded broker, with stock Faust and quixstreams over the same frames as peers.

1. **Throughput, 1 worker.** Fresh broker, 8 raw partitions. A worker starts; the session start
   (instruments, acks, snapshots) is loaded and every book goes live; then N updates are loaded as fast
   as the broker takes them. frames/s = deltas emitted / (last emit - first emit); CPU-seconds of the
   worker over the updates, per 100k.
2. **Peers over the same topic**, each in its own consumer group: a stock no-op Faust agent
   (``bench/noop_app.py``), a no-op quixstreams app and a quixstreams app that keeps a book per pair in
   its RocksDB state (``bench/quix_app.py``).
3. **Throughput, 2 workers** on the same 8 partitions (fresh broker): frames/s and CPU per 100k frames.
4. **Latency.** Frames offered at ``--rate`` frames/s (stamped with their due time, as the ingest stamps
   receipt), ``--seconds`` after a warm-up of ``WARMUP_SECONDS`` whose frames are left out;
   receive -> delta emitted, and receive -> delta read ``read_committed``. The worker's CPU idle (books
   live, nothing offered) and under the offered rate, the broker's CPU, and on Apache Kafka the floors
   of ``bench/floors.py`` (one plain hop, a transactional group commit) on the same broker.
   ``--only-latency`` runs this phase alone, exactly-once then at least once, and ends with
   ``RESULT p50_read_ms_eos=.. p99_read_ms_eos=.. p50_read_ms_alo=.. p99_read_ms_alo=.. worker_cpu_pct=..
   worker_idle_cpu_pct=.. broker_cpu_ratio_eos_alo=.. floor_p99_ms=.. floor_txn_p99_ms=..``.
5. **Memory.** ``--memory-frames`` updates (1 M) streamed through one worker; its RSS after the first 10 %
   (warm-up) and at the end.
6. **Ingest** (``bench/ingest_load.py``): WebSocket -> ``kraken.raw`` frames/s of one ingest fed by the
   simulator's replay server at full speed, and its RSS growth.

On Apache Kafka steps 1 and 4 run twice: exactly-once (the default there) and at least once (``_alo``).

    python bench/pipeline.py [--broker kafka|embedded] [--frames 40000] [--pairs 20] [--rate 1000]
                             [--seconds 20] [--memory-frames 1000000] [--skip memory,ingest,peers,scaling]
                             [--only-latency]

Last line: ``RESULT frames_per_s=.. noop_frames_per_s=.. ratio=.. quix_noop_per_s=.. quix_book_per_s=..
p50_ms=.. p99_ms=.. cpu_s_per_100k=.. rss_growth_pct=.. ingest_frames_per_s=..`` and more figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

from app.profile import APACHE_KAFKA_FETCH_MAX_WAIT_MS  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench import bare_worker  # noqa: E402
from bench.floors import chained, floors, new_topic  # noqa: E402
from bench.harness import (  # noqa: E402
    BIN,
    WARMUP_SECONDS,
    Market,
    Worker,
    assigned,
    cluster,
    cpu_seconds,
    paced_updates,
    percentiles,
    preload,
    read_deltas,
    replay_origin,
    rss_mb,
    sim_and_ingest,
    stage_by_append_time,
    steady,
    wait_for_result,
    worker,
    write_session,
)
from bench.ingest_load import ingest_throughput  # noqa: E402
from models.timeutil import rfc3339_ns  # noqa: E402

#: a raw frame's exchange stamp (the bare worker's sink holds raw frames verbatim)
EXCHANGE_STAMP = re.compile(rb'"timestamp":"([0-9T:.\-]+Z)"')


def update_stamp(value: bytes) -> int | None:
    """The exchange stamp (ns) of a raw book update frame; None for any other record."""
    found = EXCHANGE_STAMP.search(value) if b'"type":"update"' in value else None
    return rfc3339_ns(found.group(1).decode()) if found else None

COMMITTED = {"kafka": True, "embedded": False}


def throughput(args: argparse.Namespace, tmp: Path, guarantee: str, workers: int = 1,
               peers: bool = False) -> dict[str, float]:
    market = Market(args.pairs, args.depth, 1)
    broker, env, settings = cluster(args.broker, tmp, f"throughput{workers}", guarantee, market.symbols, args.depth,
                                    sensor=args.faust_sensor)
    committed = COMMITTED[args.broker]
    result: dict[str, float] = {}
    procs: list[Worker] = []
    try:
        # everything in the topic first: the workers then run as fast as they can (catch-up)
        start, updates = market.start(), market.updates(args.frames)
        asyncio.run(preload(settings, start + updates))
        procs = [worker(env, tmp / f"worker-{guarantee}-{workers}-{i}.log") for i in range(workers)]
        marks: list[float] = []

        def progress(count: int) -> None:  # the workers' CPU when the first update's delta is read
            if not marks and count > args.pairs:
                marks.append(sum(cpu_seconds(p.pid) for p in procs))

        deltas = asyncio.run(read_deltas(settings, args.pairs + len(updates), committed, progress=progress))[args.pairs:]
        cpu0 = marks[0]
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        emits = sorted(d["emit"] for d in deltas)
        result["rate"] = (len(emits) - 1) / ((emits[-1] - emits[0]) / 1e9)
        result["cpu_per_100k"] = cpu / len(updates) * 100_000
        bad = sum(1 for d in deltas if not d["ok"])
        events = sum(p.metric("krakenflow_worker_events_total") for p in procs)
        batches = sum(p.metric("krakenflow_worker_batches_total") for p in procs)
        result["batch"] = events / batches if batches else 0.0
        print(f"book worker x{workers} ({guarantee}): {len(deltas)} deltas at {result['rate']:,.0f} frames/s, "
              f"{result['cpu_per_100k']:.2f} CPU-s per 100k frames, {result['batch']:.0f} records per batch, "
              f"{bad} checksum failures", flush=True)
        for p in procs:
            p.terminate()
            p.wait()
        if peers:
            total = len(start) + len(updates)
            result["noop"] = peer(tmp, env, "faust-noop", total, settings.raw_topic, broker.bootstrap)
            result["quix_noop"] = peer(tmp, env, "quix-noop", total, settings.raw_topic, broker.bootstrap)
            result["quix_book"] = peer(tmp, env, "quix-book", total, settings.raw_topic, broker.bootstrap)
        return result
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        broker.terminate()


def peer(tmp: Path, env: dict[str, str], kind: str, expect: int, topic: str, bootstrap: str) -> float:
    """Records/s of a peer app over the whole raw topic (first to last record it saw)."""
    out = tmp / f"{kind}.json"
    peer_env = dict(env, BENCH_APP_ID=f"{kind}-{uuid.uuid4().hex[:6]}", BENCH_EXPECT=str(expect), BENCH_OUT=str(out),
                    BENCH_PARTITIONS="8", BENCH_TOPIC=topic, BENCH_BOOTSTRAP=bootstrap,
                    BENCH_STATE_DIR=str(tmp / f"{kind}-state"), BENCH_MODE=kind.split("-")[1])
    if kind == "faust-noop":
        cmd = [str(BIN / "faust"), "-A", "bench.noop_app", "worker", "-l", "info", "--without-web"]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "quix_app.py")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=peer_env, stdout=open(tmp / f"{kind}.log", "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    try:
        seen = wait_for_result(out)
    except SystemExit as exc:  # a peer that cannot run on this broker: reported, the bench goes on
        log_tail = (tmp / f"{kind}.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        print(f"{kind}: no result ({exc}); its log ends: {log_tail[0][:300]}", flush=True)
        return float("nan")
    finally:
        proc.terminate()
        proc.wait()
    rate = (expect - 1) / ((seen["last"] - seen["first"]) / 1e9)
    print(f"{kind}: {rate:,.0f} records/s", flush=True)
    return rate


#: seconds of exactly-once load (bench/floors.py's chained hops) a fresh broker takes before anything is
#: measured on it. Sampled per broker thread at 1k frames/s, its C2 compiler still took 17 % of a core 12 s
#: into the measured stretch, after the run's own 40 s warm-up, and 6 % at 25 s; the floors run later, on
#: the broker the pipeline run had warmed. A broker in service compiled all that long ago.
BROKER_WARMUP_SECONDS = 60.0


def warm_broker(bootstrap: str, rate: float) -> None:
    """The transactional and plain produce and fetch paths of a fresh broker, compiled before the run: the
    chained floor's load, unmeasured, on topics of its own."""
    print(f"warming the broker: {BROKER_WARMUP_SECONDS:.0f} s of exactly-once load at {rate:.0f} records/s",
          flush=True)
    asyncio.run(chained(bootstrap, rate, max(1.0, BROKER_WARMUP_SECONDS - WARMUP_SECONDS), True, idle_seconds=0))


def latency(args: argparse.Namespace, tmp: Path, guarantee: str) -> dict[str, dict[Any, float]]:
    """Percentiles of offered -> delta emitted (the worker's stamp) and offered -> delta read by a
    consumer (``read_committed`` on Apache Kafka: after its transaction commits), by stage, and of the
    broker alone (receive -> the raw record read by a plain consumer).

    Offered through the simulator and the ingest (the default): the simulator replays a session whose
    updates are stamped ``1 / rate`` apart and sends each at its due time (``sim/replay.py``), so a
    frame's due time is known from its exchange stamp. ``--direct``: the bench writes the frames to
    ``kraken.raw`` itself at the rate, each stamped with its due time, as the ingest would."""
    market = Market(args.pairs, args.depth, 2)
    broker, env, settings = cluster(args.broker, tmp, "latency", guarantee, market.symbols, args.depth,
                                    sensor=args.faust_sensor)
    if broker.kind == "kafka":
        warm_broker(broker.bootstrap, args.rate)
    proc = worker(env, tmp / f"worker-latency-{guarantee}.log")
    committed = COMMITTED[args.broker]
    feeders: list[subprocess.Popen[bytes]] = []
    count = int(args.rate * (args.seconds + WARMUP_SECONDS))
    try:
        start = market.start()  # before the updates: the snapshots are of the market as it stands
        if args.direct:
            updates = market.updates(count)
            asyncio.run(preload(settings, start))
        else:
            # the updates begin once the books are live and the idle worker is measured
            first_ns, updates = paced_updates(market, count, args.rate, args.idle_seconds + 25)
            capture = tmp / f"latency-session-{guarantee}.jsonl"
            write_session(capture, start + updates)
            proc.wait_ready()  # the replay's clock starts when the ingest subscribes
            feeders, sim_port = sim_and_ingest(env, tmp, f"latency-{guarantee}", capture)
        asyncio.run(read_deltas(settings, args.pairs, committed))  # the worker is up and every book is live
        first_due = 0
        if not args.direct:
            stamp0, sent0 = replay_origin(sim_port)
            first_due = sent0 + (first_ns - stamp0)
            print(f"books live {(time.time_ns() - sent0) / 1e9:.1f} s after the replay began; the load begins "
                  f"{(first_due - time.time_ns()) / 1e9:.1f} s from now", flush=True)
            if time.time_ns() > first_due - int((args.idle_seconds + 2) * 1e9):
                raise SystemExit("the books went live too late for the idle measurement before the load")
        if broker.kind == "kafka":
            asyncio.run(stage_by_append_time(settings, "book.deltas"))
        broker_pid = broker.kafka.node(1).process.pid if broker.kind == "kafka" else broker.proc.pid  # type: ignore[union-attr]
        # idle: books live, nothing offered (the per-cycle cost alone)
        idle_started, idle_cpu = time.monotonic(), cpu_seconds(proc.pid)
        time.sleep(args.idle_seconds)  # the measured interval itself
        idle_pct = (cpu_seconds(proc.pid) - idle_cpu) / (time.monotonic() - idle_started) * 100
        expect = args.pairs + len(updates)

        async def offered() -> tuple[list[dict[str, int]], list[float], list[dict[str, int]], dict[str, float]]:
            ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
            reading = asyncio.ensure_future(read_deltas(settings, expect, committed, ready=(args.pairs, ready[0])))
            raw = asyncio.ensure_future(raw_latencies(settings, len(updates), ready[1]))
            # exactly-once: the low-latency path beside it (read_uncommitted, repeats dropped)
            fast = asyncio.ensure_future(read_deltas(settings, expect, False, ready=(args.pairs, ready[2]), unique=True)
                                         if committed else asyncio.sleep(0, []))
            if not committed:
                ready[2].set()
            for event in ready:  # the readers caught up: their start-up is not the pipeline's latency
                await asyncio.wait_for(event.wait(), 120)
            if first_due:  # the simulator's first update is due then
                await asyncio.sleep(max(0.0, (first_due - time.time_ns()) / 1e9))
            pids = {"worker": proc.pid, "broker": broker_pid} | {
                name: p.pid for name, p in zip(("sim", "ingest"), feeders, strict=False)} | {
                "bench readers": os.getpid()}  # on the same cores: part of what the others wait for
            busy_started, busy = time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}
            if args.direct:
                await preload(settings, updates, rate=args.rate)
            deltas = (await reading)[args.pairs:]
            wall = time.monotonic() - busy_started
            cpu = {name: (cpu_seconds(pid) - busy[name]) / wall * 100 for name, pid in pids.items()}
            return deltas, await raw, (await fast)[args.pairs:], cpu

        deltas, floor, fast, cpu = asyncio.run(offered())
        if not args.direct:  # the due time: when the simulator was to send the frame (its exchange stamp)
            for d in (*deltas, *fast):
                d["due"] = sent0 + (d["exchange"] - stamp0)
        else:
            for d in (*deltas, *fast):
                d["due"] = d["recv"]
        warm = min(d["due"] for d in deltas) + int(WARMUP_SECONDS * 1e9)
        deltas = [d for d in deltas if d["due"] >= warm]  # the steady state (bench.harness.WARMUP_SECONDS)
        fast = [d for d in fast if d["due"] >= warm]
        if args.dump:  # every delta's stamps, for a look at where a tail comes from
            (Path(args.dump) / f"deltas-{guarantee}.json").write_bytes(orjson.dumps(deltas))
        cpu["worker_idle"] = idle_pct
        print(f"cpu ({guarantee}): worker idle {idle_pct:.1f} %, at {args.rate:.0f} frames/s "
              + ", ".join(f"{name} {v:.1f} %" for name, v in cpu.items() if name != "worker_idle")
              + " of a core", flush=True)
        figures = {"emitted": [(d["emit"] - d["due"]) / 1e6 for d in deltas],
                   "read": [(d["read"] - d["due"]) / 1e6 for d in deltas], "broker": floor}
        if not args.direct:
            figures["offered -> received by the ingest"] = [(d["recv"] - d["due"]) / 1e6 for d in deltas]
            figures["received -> emitted"] = [(d["emit"] - d["recv"]) / 1e6 for d in deltas]
        if fast:
            figures["read (fast)"] = [(d["read"] - d["due"]) / 1e6 for d in fast]
        stamped = [d for d in deltas if d["appended"]]
        if stamped:  # the stages after the worker's stamp (ms clocks: the broker stamps in ms)
            figures["emitted -> appended"] = [(d["appended"] - d["emit"]) / 1e6 for d in stamped]
            figures["appended -> read"] = [(d["read"] - d["appended"]) / 1e6 for d in stamped]
        result: dict[str, dict[Any, float]] = {"cpu": cpu}
        for name, values in figures.items():
            points = result[name] = percentiles(values, (0.5, 0.9, 0.99, 0.999, 1.0))
            stage = name if "->" in name else f"offered -> {name}"
            if name == "read (fast)":
                stage = "offered -> read by the low-latency path (read_uncommitted, repeats dropped)"
            elif name == "broker":
                stage = "received -> raw record read (the broker alone)"
            print(f"latency ({guarantee}) at {args.rate:.0f} frames/s offered, {stage}: "
                  + ", ".join(f"p{p * 100:g} {v:.1f} ms" for p, v in points.items()), flush=True)
        for p in (proc, *reversed(feeders)):
            p.terminate()
            p.wait()
        if broker.kind == "kafka" and not args.direct:  # the same load with nothing but aiokafka in the worker's place
            result["bare in place"] = bare_in_place(args, tmp, guarantee, env, settings, market, broker_pid)
        if broker.kind == "kafka" and guarantee == "exactly_once":  # the floors on the same broker, same run
            found = floors(broker.bootstrap, args.rate, min(args.seconds, 10), broker_pid)
            result["floors"] = {k: float(v) for k, v in found.items()}
        return result
    finally:
        for p in (proc, *reversed(feeders)):
            if p.poll() is None:
                p.terminate()
                p.wait()
        broker.terminate()


async def observer(bootstrap: str, topic: str, isolation: str, stop: asyncio.Event, ready: asyncio.Event,
                   kept: list[tuple[int, list[bytes]]] | None = None) -> int:
    """A reader of ``topic`` from its end until ``stop``: the floor run carries the pipeline run's other
    readers, which share the two cores with what they measure. It only looks into each record (as
    ``raw_latencies`` does): parsing the sink's raw frames cost more than the deltas reader parsing deltas
    (bench readers 43 % of a core in the floor run, 31 % in the pipeline's), and a floor must not be
    inflated. ``kept``: each batch's read time and values, appended, to be parsed once the run is over."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="latest", fetch_max_wait_ms=APACHE_KAFKA_FETCH_MAX_WAIT_MS,
                                isolation_level=isolation)
    await consumer.start()
    seen = 0
    try:
        for tp in await assigned(consumer):
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=200, max_records=10000)).values():
                if kept is not None:
                    kept.append((time.time_ns(), [m.value for m in batch]))
                for m in batch:
                    seen += b'"type":"update"' in m.value
    finally:
        await consumer.stop()
    return seen


def bare_in_place(args: argparse.Namespace, tmp: Path, guarantee: str, env: dict[str, str], settings: Settings,
                  market: Market, broker_pid: int) -> dict[Any, float]:
    """The floor under the same load: the simulator and a fresh ingest offer the same rate, and
    ``bench/bare_worker.py`` (aiokafka alone: the worker's consumer, writer and commit pattern) copies
    ``kraken.raw`` to a sink topic in the book worker's place; offered -> read from the sink
    (``read_committed``), with the pipeline run's other readers beside it (:func:`observer`), and the CPU
    of each process. Percentiles, plus ``cpu`` and ``broker_cpu``."""
    sink = asyncio.run(new_topic(settings.kafka_bootstrap, 8))
    bare = subprocess.Popen(bare_worker.command(settings.kafka_bootstrap, settings.raw_topic, sink,
                                                guarantee == "exactly_once"), stdout=subprocess.PIPE, cwd=ROOT)
    feeders: list[subprocess.Popen[bytes]] = []
    try:
        assert bare.stdout is not None
        if bare.stdout.readline() != b"ready\n":
            raise SystemExit("the bare worker did not start")
        count = int(args.rate * (args.seconds + WARMUP_SECONDS))
        start = market.start()  # before the updates, as in latency()
        first_ns, updates = paced_updates(market, count, args.rate, 10)
        capture = tmp / f"bare-session-{guarantee}.jsonl"
        write_session(capture, start + updates)
        feeders, port = sim_and_ingest(env, tmp, f"bare-{guarantee}", capture)
        stamp0, sent0 = replay_origin(port)
        first_due = sent0 + (first_ns - stamp0)

        async def offered() -> tuple[list[tuple[int, float]], dict[str, float]]:
            consumer = AIOKafkaConsumer(sink, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                        auto_offset_reset="earliest", fetch_max_wait_ms=APACHE_KAFKA_FETCH_MAX_WAIT_MS,
                                        isolation_level="read_committed")
            await consumer.start()
            # the pipeline run's other readers: kraken.raw, and the low-latency path under exactly-once
            stop = asyncio.Event()
            watching = [(settings.raw_topic, "read_uncommitted")] + (
                [(sink, "read_uncommitted")] if guarantee == "exactly_once" else [])
            readies = [asyncio.Event() for _ in watching]
            # the sink read_uncommitted: the floor under the low-latency path (its reads kept, parsed after)
            observers = [asyncio.ensure_future(observer(settings.kafka_bootstrap, topic, isolation, stop, ready,
                                                        fast if topic == sink else None))
                         for (topic, isolation), ready in zip(watching, readies, strict=True)]
            try:
                await assigned(consumer)
                for ready in readies:
                    await asyncio.wait_for(ready.wait(), 60)
                await asyncio.sleep(max(0.0, (first_due - time.time_ns()) / 1e9))  # until the load begins
                pids = {"bare worker": bare.pid, "broker": broker_pid, "sim": feeders[0].pid, "ingest": feeders[1].pid,
                        "bench readers": os.getpid()}
                started, busy = time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}
                out: list[tuple[int, float]] = []
                deadline = time.monotonic() + args.seconds * 10 + 60
                while len(out) < count and time.monotonic() < deadline:
                    for batch in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                        now = time.time_ns()
                        for m in batch:
                            stamp = update_stamp(m.value)
                            if stamp is not None and stamp >= first_ns:
                                due = sent0 + (stamp - stamp0)
                                out.append((due, (now - due) / 1e6))
                wall = time.monotonic() - started
                return out, {name: (cpu_seconds(pid) - busy[name]) / wall * 100 for name, pid in pids.items()}
            finally:
                stop.set()
                await asyncio.gather(*observers, return_exceptions=True)
                await consumer.stop()

        fast: list[tuple[int, list[bytes]]] = []
        stamped, cpu = asyncio.run(offered())
        if len(stamped) < count:
            raise SystemExit(f"the bare worker's sink had {len(stamped)} of {count} updates")
        points = percentiles(steady(stamped), (0.5, 0.9, 0.99, 0.999, 1.0))
        print(f"floor ({guarantee}), the same load with the bare worker in the book worker's place, offered -> read: "
              + ", ".join(f"p{p * 100:g} {v:.1f} ms" for p, v in points.items()), flush=True)
        result: dict[Any, Any] = {**points, "cpu": cpu["bare worker"], "broker_cpu": cpu["broker"]}
        if fast:  # exactly-once: the same sink read_uncommitted, first sight of each update (aborts redo)
            first: dict[int, tuple[int, float]] = {}
            for now, values in fast:
                for value in values:
                    stamp = update_stamp(value)
                    if stamp is not None and stamp >= first_ns and stamp not in first:
                        due = sent0 + (stamp - stamp0)
                        first[stamp] = (due, (now - due) / 1e6)
            result["fast"] = percentiles(steady(list(first.values())), (0.5, 0.9, 0.99, 0.999, 1.0))
            print(f"floor ({guarantee}), the same, read_uncommitted (the floor under the low-latency path): "
                  + ", ".join(f"p{p * 100:g} {v:.1f} ms" for p, v in result["fast"].items()), flush=True)
        print(f"floor cpu ({guarantee}): " + ", ".join(f"{name} {v:.1f} %" for name, v in cpu.items()) + " of a core",
              flush=True)
        return result
    finally:
        for p in (bare, *reversed(feeders)):
            if p.poll() is None:
                p.terminate()
                p.wait()


async def raw_latencies(settings: Settings, count: int, ready: asyncio.Event) -> list[float]:
    """ms from each book update's receive stamp in ``kraken.raw`` to a plain consumer reading it (the
    broker's share), for ``count`` updates; ``ready`` is set once the reader is through the records there
    before them."""
    consumer = AIOKafkaConsumer(settings.raw_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, float]] = []
    try:
        partitions = await assigned(consumer)
        ends = await consumer.end_offsets(partitions)
        while len(out) < count:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                now = time.time_ns()
                for m in batch:
                    if b'"type":"update"' in m.value:
                        due = int(dict(m.headers)["recv_ns"])
                        out.append((due, (now - due) / 1e6))
            if not ready.is_set() and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                ready.set()
    finally:
        await consumer.stop()
    return steady(out)


def memory(args: argparse.Namespace, tmp: Path, guarantee: str) -> float:
    """RSS growth (%) of one worker from 10 % to 100 % of ``--memory-frames`` streamed updates."""
    market = Market(args.pairs, args.depth, 3)
    broker, env, settings = cluster(args.broker, tmp, "memory", guarantee, market.symbols, args.depth)
    proc = worker(env, tmp / f"worker-memory-{guarantee}.log")
    committed = COMMITTED[args.broker]
    chunk = 50_000
    try:
        asyncio.run(preload(settings, market.start()))
        asyncio.run(read_deltas(settings, args.pairs, committed))
        done, warm, samples = 0, 0.0, []
        started = time.monotonic()
        while done < args.memory_frames:
            asyncio.run(preload(settings, market.updates(chunk)))
            done += chunk
            asyncio.run(wait_processed(settings, args.pairs + done, committed))
            samples.append(rss_mb(proc.pid))
            if done <= args.memory_frames // 10:
                warm = samples[-1]
        end = samples[-1]
        growth = (end - warm) / warm * 100
        print(f"memory ({guarantee}): worker RSS {warm:.0f} MB after {args.memory_frames // 10:,} frames, "
              f"{end:.0f} MB after {done:,} ({growth:+.1f} %), {time.monotonic() - started:.0f} s; samples "
              + " ".join(f"{s:.0f}" for s in samples), flush=True)
        return growth
    finally:
        proc.terminate()
        proc.wait()
        broker.terminate()


async def wait_processed(settings: Settings, count: int, committed: bool) -> None:
    """Until the deltas topic holds ``count`` records (end offsets summed)."""
    consumer = AIOKafkaConsumer(settings.topic("book.deltas"), bootstrap_servers=settings.kafka_bootstrap,
                                isolation_level="read_committed" if committed else "read_uncommitted")
    await consumer.start()
    try:
        tps = await assigned(consumer)
        deadline = time.monotonic() + 600
        while sum((await consumer.end_offsets(tps)).values()) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not reach {count} deltas")
            await asyncio.sleep(0.2)  # polling the broker's end offsets
    finally:
        await consumer.stop()


def latency_only(args: argparse.Namespace) -> None:
    """Exactly-once and at least once latency and CPU at ``--rate``, with the floors of the same run."""
    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
    eos = latency(args, tmp, "exactly_once")
    alo = latency(args, tmp, "at_least_once")
    fig = {"rate": f"{args.rate:.0f}", "p50_read_ms_eos": f"{eos['read'][0.5]:.1f}",
           "p99_read_ms_eos": f"{eos['read'][0.99]:.1f}", "p50_read_ms_fast": f"{eos['read (fast)'][0.5]:.1f}",
           "p99_read_ms_fast": f"{eos['read (fast)'][0.99]:.1f}", "p50_read_ms_alo": f"{alo['read'][0.5]:.1f}",
           "p99_read_ms_alo": f"{alo['read'][0.99]:.1f}", "p50_emit_ms_eos": f"{eos['emitted'][0.5]:.1f}",
           "p99_emit_ms_eos": f"{eos['emitted'][0.99]:.1f}",
           "worker_cpu_pct": f"{eos['cpu']['worker']:.1f}", "worker_cpu_pct_alo": f"{alo['cpu']['worker']:.1f}",
           "worker_idle_cpu_pct": f"{eos['cpu']['worker_idle']:.1f}",
           "broker_cpu_ratio_eos_alo": f"{eos['cpu']['broker'] / max(alo['cpu']['broker'], 1e-9):.2f}",
           "p99_raw_ms": f"{eos['broker'][0.99]:.1f}"}
    for label, figures in (("eos", eos), ("alo", alo)):
        for stage, key in (("emitted -> appended", "emit_append"), ("appended -> read", "append_read")):
            if stage in figures:
                fig[f"p50_{key}_ms_{label}"] = f"{figures[stage][0.5]:.1f}"
                fig[f"p99_{key}_ms_{label}"] = f"{figures[stage][0.99]:.1f}"
    for label, figures in (("eos", eos), ("alo", alo)):
        place = figures.get("bare in place")
        if place:
            fig.update({f"floor_inplace_p50_ms_{label}": f"{place[0.5]:.1f}",
                        f"floor_inplace_p99_ms_{label}": f"{place[0.99]:.1f}",
                        f"floor_inplace_worker_cpu_pct_{label}": f"{place['cpu']:.1f}"})
            if "fast" in place:  # the floor under the low-latency path
                fig.update({"floor_inplace_p50_ms_fast": f"{place['fast'][0.5]:.1f}",
                            "floor_inplace_p99_ms_fast": f"{place['fast'][0.99]:.1f}"})
    if "bare in place" in eos and "bare in place" in alo:
        ratio = eos["bare in place"]["broker_cpu"] / max(alo["bare in place"]["broker_cpu"], 1e-9)
        fig["floor_inplace_broker_cpu_ratio_eos_alo"] = f"{ratio:.2f}"
    if args.rate == 1000:  # the name for the figure at 1k frames/s
        fig["worker_cpu_pct_1k"] = fig["worker_cpu_pct"]
    fig.update({k: f"{v:.1f}" for k, v in eos.get("floors", {}).items()})
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fig.items()))


def run(args: argparse.Namespace) -> None:
    if args.only_latency:
        latency_only(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="kf-bench-"))
    skip = set(args.skip.split(",")) if args.skip else set()
    first = "exactly_once" if args.broker == "kafka" else "at_least_once"
    one = throughput(args, tmp, first, peers="peers" not in skip)
    fig: dict[str, str] = {"broker": args.broker, "guarantee": first, "frames_per_s": f"{one['rate']:.0f}"}
    if "peers" not in skip:
        fig.update(noop_frames_per_s=f"{one['noop']:.0f}", ratio=f"{one['rate'] / one['noop']:.2f}",
                   quix_noop_per_s=f"{one['quix_noop']:.0f}", quix_book_per_s=f"{one['quix_book']:.0f}",
                   ratio_vs_quix_book=f"{one['rate'] / one['quix_book']:.2f}",
                   ratio_vs_quix_noop=f"{one['rate'] / one['quix_noop']:.2f}")
    lat = latency(args, tmp, first)
    emitted, read, floor = lat["emitted"], lat["read"], lat["broker"]
    fig.update(p50_ms=f"{emitted[0.5]:.1f}", p99_ms=f"{emitted[0.99]:.1f}", p999_ms=f"{emitted[0.999]:.1f}",
               max_ms=f"{emitted[1.0]:.1f}", p50_ms_read=f"{read[0.5]:.1f}", p99_ms_read=f"{read[0.99]:.1f}",
               p50_ms_broker=f"{floor[0.5]:.1f}", p99_ms_broker=f"{floor[0.99]:.1f}",
               cpu_s_per_100k=f"{one['cpu_per_100k']:.2f}", records_per_batch=f"{one['batch']:.0f}")
    if "scaling" not in skip:
        two = throughput(args, tmp, first, workers=2)
        fig.update(frames_per_s_2w=f"{two['rate']:.0f}", cpu_s_per_100k_2w=f"{two['cpu_per_100k']:.2f}")
    if "memory" not in skip:
        fig["rss_growth_pct"] = f"{memory(args, tmp, first):.1f}"
    if "ingest" not in skip:
        ingest = ingest_throughput(args.broker, tmp, args.pairs, args.depth, args.ingest_frames)
        fig.update(ingest_frames_per_s=f"{ingest['rate']:.0f}", ingest_rss_growth_pct=f"{ingest['rss_growth']:.1f}")
    if args.broker == "kafka":  # the price of exactly-once, same run
        alo = throughput(args, tmp, "at_least_once")
        alo_lat = latency(args, tmp, "at_least_once")
        fig.update(frames_per_s_alo=f"{alo['rate']:.0f}", exactly_once_cost=f"{1 - one['rate'] / alo['rate']:.2f}",
                   p50_ms_alo=f"{alo_lat['emitted'][0.5]:.1f}", p99_ms_alo=f"{alo_lat['emitted'][0.99]:.1f}",
                   p50_ms_read_alo=f"{alo_lat['read'][0.5]:.1f}", p99_ms_read_alo=f"{alo_lat['read'][0.99]:.1f}")
        if "peers" not in skip:
            fig["ratio_alo"] = f"{alo['rate'] / one['noop']:.2f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fig.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40_000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--depth", type=int, default=25)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered frames/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="the idle worker's CPU is measured this long")
    parser.add_argument("--direct", action="store_true",
                        help="latency: the bench writes the frames to kraken.raw itself (no simulator, no ingest)")
    parser.add_argument("--dump", help="a directory: the latency runs write each delta's stamps there as JSON")
    parser.add_argument("--only-latency", action="store_true",
                        help="only the latency phases (exactly-once, at least once), their CPU and the floors")
    parser.add_argument("--memory-frames", type=int, default=1_000_000, help="updates streamed for the RSS figure")
    parser.add_argument("--ingest-frames", type=int, default=300_000, help="frames the ingest bench replays")
    parser.add_argument("--skip", default="", help="comma-separated phases to leave out: peers,scaling,memory,ingest")
    parser.add_argument("--faust-sensor", action="store_true", help="run the worker with Faust's Prometheus sensor")
    parser.add_argument("--broker", choices=("kafka", "embedded"), default="kafka",
                        help="Apache Kafka (native, the reference) or the embedded broker")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
