"""Fault campaign: a real local pipeline on Apache Kafka, faults injected, the damage counted. On demand only.

Each scenario gets a fresh pipeline (:class:`tests.cluster.Cluster`: simulator, ``krakenflow ingest``, Faust
workers, own app id and topic prefix) on one single-node Apache Kafka of the campaign's own; logs stay in
the ``/tmp/faults-*`` it prints. Scenarios: ``kills`` (SIGKILL one of two workers and restart it, every
third time with its data dir deleted), ``drops`` (the simulator aborts the Kraken connections), ``malformed``
(hostile frames written straight into ``raw``: garbage bytes, bad JSON, wrong types, unsubscribed pairs,
400-digit prices, negative quantities), ``outage`` (SIGSTOP the broker for S s), ``corrupt`` (the simulator
sends a wrong checksum), ``failover`` (SIGKILL the live of two ingest candidates), ``nesting`` (frames nested
``--nesting`` deep under key BTC/USD: a list, an object, a book frame's data), ``forged`` (a subscribe ack
at depth 10 without ``lock_gen`` for a depth-25 pair, a forged instrument update changing its
price_precision), ``zombie`` (one of two workers SIGSTOPped past the session timeout, then SIGCONT, several
cycles) and ``restore`` (an hour's books changelog, compacted, restored by a worker with an empty data dir).

    .venv/bin/python -m bench.faults --scenario all [--kills 20] [--drops 5] [--malformed 1000] [--outage 15]
        [--corrupt 3] [--failover 1] [--nesting 2000] [--zombie 3] [--zombie-pause 20] [--zombie-hold-ms 300]
        [--restore-pairs 12]
        [--restore-rate 20] [--restore-hours 1] [--pairs BTC/USD,...] [--depth 25] [--rate 10] [--seed 1]
        [--spacing 15 25]

After its faults a scenario pauses the market and is audited: a table each, then one JSON line of all
figures (no pass/fail).

- ``wrong_books_served``: pairs whose ``/books/<symbol>/?depth=N`` did not equal the paused simulator's
  book within 60 s; ``wrong_books_rebuilt``: the same for books rebuilt from ``book.deltas`` alone
- ``lost_deltas``: (symbol, epoch, seq) missing within an epoch's seq range, between epochs or before the
  first (seq counts on across epochs from 1); ``seq_resets``: epochs whose seq went back
- ``duplicated_deltas``: (symbol, epoch, seq) read twice or more (``read_committed``), and how many of
  them differ in levels, checksum or raw lineage
- ``checksum_ok_false``: deltas the worker flagged; ``checksum_vs_rebuilt``: deltas whose checksum is not
  the one of the book the stream rebuilds; ``invalidations``: ``invalidated`` book events
- ``dead_letters`` in ``deadletter``; for ``malformed`` also those naming an injected record, and injected
  records with none, with two or more, or that reached a book
- ``stuck_partitions`` / ``stuck_symbols``: raw partitions / pairs with no delta emitted after the last
  fault; ``consumer_lag``: the workers' ``krakenflow_consumer_lag`` per raw partition at the end
- ``recovery_s``: per fault, seconds from the fault (the outage: from SIGCONT) until every book is live
  and fed by a frame received after it; None after 120 s
- ``processes_exited``: processes that exited without being stopped; ``log_errors``: ERROR lines and
  tracebacks per process log
- ``nesting``: ``nested_dead_lettered`` (dead letters per injected frame: 1 is right), ``nested_reaching_books``
- ``forged``: ``forged_dead_lettered`` per frame, ``forged_depth_after`` (the pair's depth; the cluster's is
  right), ``forged_price_decimals_after`` (of its best bid; ``..._before`` is right)
- ``zombie``: ``takeover_s`` per pause (the other worker serving every book fresh while the zombie sleeps),
  ``transactions_fenced``, ``fenced_log_lines``; duplicates and wrong books are the audit's
- ``restore``: the changelog's write rate measured on the live market (``changelog_records_per_s``,
  ``changelog_transactions_per_s``), an hour of records written into the books changelog (the pairs' current
  records over and over, in transactions, as the worker writes them), the wait for the log cleaner, then
  ``restore_empty_datadir_s``: a worker started with an empty data dir after the owner's SIGKILL, until
  every book is live and fed by a frame received after its start (its parts from the worker's log:
  ``restore_join_s`` includes the dead owner's session timeout, ``restore_changelog_read_s``), with
  ``changelog_records_written`` (the history) and ``changelog_records_restored`` (what the restore read)

After each scenario a line ``RESULT scenario=<name> key=value ...`` (values as JSON) repeats its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

# run as a script (`python bench/faults.py`, as the README says) the repository is not on the path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import cpu_seconds
from broker.kafka import KafkaCluster, start_kafka
from models.symbols import normalize
from sim import render
from sim.pairs import catalogue
from tests.cluster import Cluster, http_json, if_levels_equal, wait_until
from tests.exactly_once import rebuild

RECOVERY_TIMEOUT = 120.0
CONTENT = ("is_snapshot", "bids", "asks", "checksum", "raw_partition", "raw_offset")


class Run:
    """One scenario's pipeline and what happened to it."""

    def __init__(self, args: argparse.Namespace, kafka: KafkaCluster, tmp: Path, name: str,
                 pairs: list[str] | None = None, rate: float | None = None, raw_partitions: int = 4) -> None:
        self.args, self.kafka = args, kafka
        self.pairs: list[str] = pairs or args.pairs.split(",")
        self.symbols = {normalize(p) for p in self.pairs}
        self.rng = random.Random(f"{args.seed}-{name}")
        (tmp / name).mkdir(parents=True)
        self.c = Cluster(tmp / name, self.pairs, depth=args.depth, kafka=kafka, raw_partitions=raw_partitions,
                         sim_args=("--pair-rate", str(rate or args.rate), "--seed", str(args.seed)))
        self.ports: dict[str, int] = {}
        self.faults: list[dict[str, Any]] = []
        self.last_fault_ns = time.time_ns()
        self.figures: dict[str, Any] = {}

    def start(self, workers: tuple[str, ...], ingests: tuple[str, ...] = ("ingest",)) -> None:
        for name in ingests:
            self.c.start_ingest(name)
        for name in workers:
            self.ports[name] = self.c.start_worker(name)
        port = next(iter(self.ports.values()))
        wait_until(lambda: self.fresh(port, 0), 120, "every book live")
        self.last_fault_ns = time.time_ns()

    def fresh(self, port: int, since_ns: int) -> bool:
        """Every book live on ``port``'s listing and fed by a frame the ingest received after ``since_ns``."""
        rows = (http_json(f"http://127.0.0.1:{port}/books/") or {}).get("books", [])
        ok = {r["symbol"] for r in rows if r["state"] == "live" and (r["last_recv_ns"] or 0) > since_ns}
        return ok == self.symbols

    def recover(self, what: str, port: int, since_ns: int) -> None:
        """Wait until the books flow again after the fault at ``since_ns``; note the seconds it took."""
        self.last_fault_ns = since_ns
        done = within(lambda: self.fresh(port, since_ns), RECOVERY_TIMEOUT)
        seconds = round((time.time_ns() - since_ns) / 1e9, 2) if done else None
        self.faults.append({"fault": what, "at_ns": since_ns, "recovery_s": seconds})
        print(f"  {what}: recovered in {seconds if seconds is not None else '(timed out)'} s", flush=True)

    def pace(self, since_ns: int) -> None:
        """The campaign's schedule: the next fault ``--spacing`` seconds after the last one started."""
        lo, hi = self.args.spacing
        time.sleep(max(0.0, since_ns / 1e9 + self.rng.uniform(lo, hi) - time.time()))

    def read(self, topic: str, until: Callable[[list[dict[str, Any]]], bool] | None = None,
             timeout: float = 60) -> list[dict[str, Any]]:
        """Records of ``topic``; on a timeout, what is there."""
        for attempt in (until, None) if until is not None else (None,):
            try:
                return self.c.read(topic, attempt, timeout)
            except AssertionError:
                pass  # timed out (then read what is there), or no such topic: nothing was written to it
        return []

    # -- the audit ---------------------------------------------------------------------------------

    def audit(self) -> dict[str, Any]:
        """Pause the market, compare books, and count what the deltas and dead letters say."""
        c, depth = self.c, self.args.depth
        c.sim("pause", on=1)
        exchange = {normalize(p): c.sim("book", symbol=p, depth=depth) for p in self.pairs}
        port = (self.running() or list(self.ports.values()))[0]
        pending = set(self.symbols)

        def served() -> bool:
            for s in list(pending):
                if if_levels_equal(http_json(f"http://127.0.0.1:{port}/books/{s}/?depth={depth}"), exchange[s]):
                    pending.discard(s)  # the paused market no longer moves: equal stays equal
            return not pending

        within(served, 60)
        got: dict[str, Any] = {}

        def rebuilt() -> bool:
            got["deltas"] = self.read("book.deltas")
            # the first read of each (symbol, epoch, seq): duplicates are counted below, not applied twice
            first = {(d["symbol"], d["epoch"], d["seq"]): d for d in reversed(got["deltas"])}
            got["books"], got["wrong"] = rebuild(list(first.values()))
            got["unequal"] = sorted(s for s in self.symbols if s not in got["books"] or (
                [list(x) for x in got["books"][s].levels("bids")], [list(x) for x in got["books"][s].levels("asks")])
                != (exchange[s]["bids"], exchange[s]["asks"]))
            return not got["unequal"]

        within(rebuilt, 60, interval=2)
        deltas: list[dict[str, Any]] = got["deltas"]
        groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        for d in deltas:
            groups.setdefault((d["symbol"], d["epoch"], d["seq"]), []).append(d)
        twice = [g for g in groups.values() if len(g) > 1]
        lost, resets = gaps(groups)
        after = [d for d in deltas if d["ts_emit_ns"] > self.last_fault_ns]
        partition_of = {d["symbol"]: d["raw_partition"] for d in deltas}
        events = self.read("book.events")
        dead = self.read("deadletter")
        return {
            "deltas": len(deltas),
            "wrong_books_served": sorted(pending), "wrong_books_rebuilt": got["unequal"],
            "lost_deltas": lost, "seq_resets": resets,
            "duplicated_deltas": len(twice),
            "duplicated_with_other_content": sum(len({orjson.dumps([d[k] for k in CONTENT]) for d in g}) > 1
                                                 for g in twice),
            "checksum_ok_false": sum(d["checksum_ok"] is False for d in deltas),
            "checksum_vs_rebuilt": len(got["wrong"]),
            "invalidations": sum(e.get("state") == "invalidated" for e in events),
            "dead_letters": len(dead),
            # reasons cut before their particulars (offsets, generations), most frequent first
            "dead_letter_reasons": dict(Counter(re.split(r"[:;(\d]", d["reason"], maxsplit=1)[0].strip()
                                                for d in dead).most_common(8)),
            "stuck_partitions": sorted(set(partition_of.values()) - {d["raw_partition"] for d in after}),
            "stuck_symbols": sorted(self.symbols - {d["symbol"] for d in after}),
            "consumer_lag": self.lag(),
            "processes_exited": {n: p.returncode for n, p in c.procs.items() if p.poll() is not None},
            "log_errors": {log.stem: n for log in sorted(c.tmp.glob("*.log")) if (n := sum(
                " ERROR" in line or "Traceback" in line for line in log.read_text(errors="replace").splitlines()))},
        }

    def running(self) -> list[int]:
        """Web ports of the workers still running."""
        return [p for n, p in self.ports.items() if n in self.c.procs and self.c.procs[n].poll() is None]

    def lag(self) -> dict[str, int]:
        """Highest ``krakenflow_consumer_lag`` per raw partition over the running workers."""
        lag: dict[str, int] = {}
        for port in self.running():
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            except OSError:
                continue
            for line in (x for x in text.splitlines() if x.startswith("krakenflow_consumer_lag{")):
                partition = line.split('partition="')[1].split('"')[0]
                lag[partition] = max(lag.get(partition, 0), int(float(line.split()[-1])))
        return dict(sorted(lag.items()))


def within(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    """Whether ``condition`` came true within ``timeout`` s (a figure, where a test would fail)."""
    try:
        wait_until(condition, timeout, "a condition", interval)
        return True
    except AssertionError:
        return False


def gaps(keys: dict[tuple[str, int, int], Any]) -> tuple[int, int]:
    """(missing seqs, seq resets): seq counts on across a pair's epochs, from 1."""
    by_symbol: dict[str, dict[int, list[int]]] = {}
    for symbol, epoch, seq in keys:
        by_symbol.setdefault(symbol, {}).setdefault(epoch, []).append(seq)
    lost = resets = 0
    for epochs in by_symbol.values():
        expected = 1
        for epoch in sorted(epochs):  # an epoch is the snapshot's exchange ms: sorted is in time order
            seqs = sorted(epochs[epoch])
            if seqs[0] < expected:
                resets += 1
            else:
                lost += seqs[0] - expected
            lost += seqs[-1] - seqs[0] + 1 - len(seqs)
            expected = seqs[-1] + 1
    return lost, resets


# -- hostile frames --------------------------------------------------------------------------------


def book_frame(symbol: str, price: str, qty: str, checksum: str = "1") -> bytes:
    return (f'{{"channel":"book","type":"update","data":[{{"symbol":{symbol},"bids":[{{"price":{price},'
            f'"qty":{qty}}}],"asks":[],"checksum":{checksum},"timestamp":"2025-01-01T00:00:00.000000Z"}}]}}'
            ).encode()


def hostile(rng: random.Random, pairs: list[str]) -> tuple[str, bytes, bytes]:
    """(kind, key, value): one frame a worker must dead-letter exactly once."""
    pair = rng.choice(pairs)
    sym = json.dumps(pair)
    kind = rng.choice(("garbage", "bad_json", "wrong_types", "unsubscribed", "long_price", "negative_qty"))
    if kind == "garbage":
        value = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "bad_json":
        whole = book_frame(sym, "62800.1", "0.5")
        value = whole[:rng.randrange(1, len(whole) - 1)]
    elif kind == "wrong_types":
        value = rng.choice((book_frame(sym, '"abc"', "1.0"), book_frame(sym, "{}", "1.0"),
                            book_frame(sym, "1.5", "[1]"), book_frame(sym, "1.5", "1.0", '"12"'),
                            book_frame("42", "1.5", "1.0"), b'{"channel":"book","type":"update","data":"x"}',
                            b'{"channel":"book","type":7,"data":[]}', b"[1,2,3]", b"null",
                            f'{{"channel":"book","type":"update","data":[{{"symbol":{sym},"bids":{{}}}}]}}'.encode()))
    elif kind == "unsubscribed":
        pair = rng.choice(["NOPE/USD", "FAKE/EUR", *(p for p in ("LTC/USD", "DOT/USD", "BCH/USD") if p not in pairs)])
        value = book_frame(json.dumps(pair), "80.01", "1.5")
    elif kind == "long_price":
        value = book_frame(sym, "9" * 400 + rng.choice(("", ".5")), "1.0")
    else:
        value = book_frame(sym, "62800.1", rng.choice(("-0.5", "-1", "-0.00000001")))
    return kind, pair.encode(), value


async def inject(bootstrap: str, topic: str, frames: list[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
    """Write ``frames`` (key, value) as one burst; their (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        headers = [("recv_ns", str(time.time_ns()).encode())]
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value in frames]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


def injected_dead_letters(run: Run, where: list[tuple[int, int]], timeout: float = 60
                          ) -> tuple[Counter[tuple[int, int]], dict[tuple[int, int], str]]:
    """Dead letters naming each injected (partition, offset), and a reason given for each; waits until each
    is named once, or ``timeout``."""
    injected = set(where)

    def named(records: list[dict[str, Any]]) -> set[tuple[int, int]]:
        return {(d["raw_partition"], d["raw_offset"]) for d in records} & injected

    dead = [d for d in run.read("deadletter", until=lambda r: len(named(r)) >= len(injected), timeout=timeout)
            if (d["raw_partition"], d["raw_offset"]) in injected]
    return (Counter((d["raw_partition"], d["raw_offset"]) for d in dead),
            {(d["raw_partition"], d["raw_offset"]): d["reason"][:80] for d in dead})


def reaching_books(run: Run, where: list[tuple[int, int]]) -> int:
    """Deltas whose raw lineage is one of the injected records."""
    injected = set(where)
    return sum((d["raw_partition"], d["raw_offset"]) in injected for d in run.read("book.deltas"))


def processed_past(run: Run, where: list[tuple[int, int]], timeout: float = 60) -> bool:
    """Whether deltas from later raw records of each injected record's partition appeared (the worker went past)."""
    def past(records: list[dict[str, Any]]) -> bool:
        newest: dict[int, int] = {}
        for d in records:
            newest[d["raw_partition"]] = max(newest.get(d["raw_partition"], -1), d["raw_offset"])
        return all(newest.get(p, -1) > o for p, o in where)

    return past(run.read("book.deltas", until=past, timeout=timeout))


def metric(port: int, name: str) -> float:
    """A worker's ``/metrics`` sample (a counter with or without ``_total``); 0 when absent or unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.split(" ")[0] in (name, f"{name}_total"):
            return float(line.split()[-1])
    return 0.0


def book_row(port: int, symbol: str) -> dict[str, Any]:
    rows = (http_json(f"http://127.0.0.1:{port}/books/") or {}).get("books", [])
    return next((r for r in rows if r["symbol"] == symbol), {})


def decimals(price: str | None) -> int | None:
    return None if price is None else len(price.partition(".")[2])


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the ingest's producer) gives ``key``."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def log_times(path: Path, marks: dict[str, str]) -> dict[str, float]:
    """Epoch seconds of the first log line containing each of ``marks``' texts (``first``: the first line)."""
    found: dict[str, float] = {}
    stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
    for line in path.read_text(errors="replace").splitlines():
        match = stamp.match(line)
        if not match:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the worker's local time
        found.setdefault("first", at)
        for name, text in marks.items():
            if name not in found and text in line:
                found[name] = at
    return found


# -- scenarios -------------------------------------------------------------------------------------


def kills(run: Run) -> None:
    run.start(("a", "b"))
    for kill in range(run.args.kills):
        victim = run.rng.choice(sorted(run.ports))
        survivor = next(n for n in run.ports if n != victim)
        fresh, since = kill % 3 == 2, time.time_ns()
        run.c.stop(victim, signal.SIGKILL)
        try:
            run.c.start_worker(victim, web_port=run.ports[victim], fresh=fresh)
        except AssertionError as exc:
            print(f"  worker {victim} did not come back: {exc}", flush=True)
        run.recover(f"kill {kill + 1}: worker {victim}{' (data dir deleted)' if fresh else ''}",
                    run.ports[survivor], since)
        run.pace(since)


def drops(run: Run) -> None:
    run.start(("w",))
    for drop in range(run.args.drops):
        since = time.time_ns()
        dropped = (run.c.sim("drop") or {}).get("dropped")
        run.recover(f"drop {drop + 1}: {dropped} connection(s)", run.ports["w"], since)
        run.pace(since)


def malformed(run: Run) -> None:
    run.start(("w",))
    made = [hostile(run.rng, run.pairs) for _ in range(run.args.malformed)]
    since = time.time_ns()
    where = asyncio.run(inject(run.c.bootstrap, run.c.topic("raw"), [(k, v) for _, k, v in made]))
    run.recover(f"{len(made)} malformed frames", run.ports["w"], since)
    injected = set(where)

    def named(records: list[dict[str, Any]]) -> set[tuple[int, int]]:
        return {(d["raw_partition"], d["raw_offset"]) for d in records} & injected

    dead = run.read("deadletter", until=lambda r: len(named(r)) >= len(injected), timeout=60 + len(made) / 20)
    per = Counter((d["raw_partition"], d["raw_offset"]) for d in dead)
    missing = Counter(kind for (kind, _, _), at in zip(made, where) if at not in per)
    run.figures.update({
        "malformed_injected": len(made), "malformed_by_kind": dict(sorted(Counter(k for k, _, _ in made).items())),
        "dead_letters_for_injected": len(named(dead)), "injected_without_dead_letter": dict(sorted(missing.items())),
        "injected_dead_lettered_twice": sum(per[at] > 1 for at in injected),
        "injected_reaching_books": len(named(run.read("book.deltas"))),
    })


def outage(run: Run) -> None:
    run.start(("w",))
    broker = run.kafka.node(1).process
    assert broker is not None
    broker.send_signal(signal.SIGSTOP)
    try:
        time.sleep(run.args.outage)  # the outage itself
    finally:
        broker.send_signal(signal.SIGCONT)
    run.recover(f"broker stopped {run.args.outage:.0f} s", run.ports["w"], time.time_ns())


def corrupt(run: Run) -> None:
    run.start(("w",))
    for n in range(run.args.corrupt):
        pair, since = run.pairs[n % len(run.pairs)], time.time_ns()
        run.c.sim("corrupt", symbol=pair)
        run.recover(f"corrupt {n + 1}: {pair}", run.ports["w"], since)
        run.pace(since)


def failover(run: Run) -> None:
    candidates = ["ingest-1", "ingest-2"]
    run.start(("w",), tuple(candidates))

    def live() -> str | None:  # the whole log: a long-lived ingest's claim scrolls out of Cluster.log's tail
        return next((n for n in candidates if "this process is the live ingest" in (
            run.c.tmp / f"{n}.log").read_text(errors="replace")), None)

    for n in range(run.args.failover):
        victim, since = wait_until(live, 60, "a live ingest"), time.time_ns()
        run.c.stop(victim, signal.SIGKILL)
        candidates.remove(victim)
        run.recover(f"failover {n + 1}: {victim} killed", run.ports["w"], since)
        candidates.append(f"ingest-{n + 3}")
        run.c.start_ingest(candidates[-1])  # the next standby, once the first took over
        run.pace(since)


def nesting(run: Run) -> None:
    run.start(("w",))
    n = run.args.nesting
    frames = {
        "list": b"[" * n + b"]" * n,
        "object": b'{"a":' * n + b"1" + b"}" * n,
        "book_data": b'{"channel":"book","type":"update","data":' + b"[" * n + b"]" * n + b"}",
    }
    since = time.time_ns()
    where = asyncio.run(inject(run.c.bootstrap, run.c.topic("raw"), [(b"BTC/USD", v) for v in frames.values()]))
    run.recover(f"{len(frames)} frames nested {n} deep", run.ports["w"], since)
    dead, reasons = injected_dead_letters(run, where)
    run.figures.update({
        "nested_depth": n, "nested_injected": len(frames),
        "nested_dead_lettered": {kind: dead[at] for kind, at in zip(frames, where, strict=True)},
        "nested_reasons": {kind: reasons.get(at) for kind, at in zip(frames, where, strict=True)},
        "nested_reaching_books": reaching_books(run, where),
    })


def forged(run: Run) -> None:
    run.start(("w",))
    pair, port = run.pairs[0], run.ports["w"]
    symbol = normalize(pair)
    spec = next(s for s in catalogue() if s.symbol == pair)
    before = book_row(port, symbol)
    # the instrument frame keyed as the ingest keys connection frames, on the pair's partition so that the
    # pair's later deltas show the worker went past it
    partitions = int(run.c.env["KRAKENFLOW_RAW_PARTITIONS"])
    home = partition_of(pair.encode(), partitions)
    conn = next(k for i in range(10_000) if partition_of(k := f"conn:forged-{i}".encode(), partitions) == home)
    ack = render.response("subscribe", result={"channel": "book", "depth": 10, "snapshot": True, "symbol": pair},
                          time_in_ns=time.time_ns())
    finer = dataclasses.replace(spec, price_precision=spec.price_precision + 2)
    instrument = render.instrument([finer]).replace('"type":"snapshot"', '"type":"update"', 1)
    frames = {"ack_depth_10_no_lock_gen": (pair.encode(), ack.encode()),
              f"instrument_price_precision_{finer.price_precision}": (conn, instrument.encode())}
    since = time.time_ns()
    where = asyncio.run(inject(run.c.bootstrap, run.c.topic("raw"), list(frames.values())))
    went_past = processed_past(run, where)
    after = book_row(port, symbol)
    run.recover("forged ack and instrument update", port, since)
    dead, reasons = injected_dead_letters(run, where, timeout=30)
    run.figures.update({
        "forged_pair": pair, "forged_processed_past": went_past,
        "forged_dead_lettered": {kind: dead[at] for kind, at in zip(frames, where, strict=True)},
        "forged_reasons": {kind: reasons.get(at) for kind, at in zip(frames, where, strict=True)},
        "forged_depth_before": before.get("depth"), "forged_depth_after": after.get("depth"),
        "forged_price_decimals_before": decimals((before.get("best_bid") or [None])[0]),
        "forged_price_decimals_after": decimals((after.get("best_bid") or [None])[0]),
        "forged_state_after": after.get("state"),
    })


def zombie(run: Run) -> None:
    if run.args.zombie_hold_ms:  # a commit in flight when a worker stops, more queued behind it
        run.c.env["KRAKENFLOW_FAULT_COMMIT_HOLD_MS"] = str(run.args.zombie_hold_ms)
    run.start(("a", "b"))
    takeovers: list[float | None] = []
    for n in range(run.args.zombie):
        victim, other = ("a", "b") if n % 2 == 0 else ("b", "a")
        proc, pause = run.c.procs[victim], run.args.zombie_pause
        since = time.time_ns()
        proc.send_signal(signal.SIGSTOP)
        try:
            # the other worker serving every book while the zombie sleeps (its partitions move after the
            # session timeout), then the rest of the pause: the fault's length
            took = within(lambda: run.fresh(run.ports[other], since), pause)  # noqa: B023 - called at once
            takeovers.append(round((time.time_ns() - since) / 1e9, 2) if took else None)
            time.sleep(max(0.0, since / 1e9 + pause - time.time()))
        finally:
            proc.send_signal(signal.SIGCONT)
        run.recover(f"zombie {n + 1}: worker {victim} stopped {pause:.0f} s", run.ports[other], time.time_ns())
        run.pace(since)
    run.figures.update({
        "takeover_s": takeovers,
        "transactions_fenced": sum(metric(port, "krakenflow_transactions_fenced") for port in run.running()),
        "fenced_log_lines": {n: sum("fenced" in line.lower() for line in (run.c.tmp / f"{n}.log").read_text(
            errors="replace").splitlines()) for n in ("a", "b")},
    })


# -- restore after an hour -------------------------------------------------------------------------


async def changelog_state(bootstrap: str, topic: str, partitions: int
                          ) -> tuple[dict[int, dict[bytes, bytes | None]], int, int]:
    """Each partition's latest record per key in the order last written, the records a ``read_committed``
    restore reads from the beginning, and the sum of the end offsets (records and markers ever written)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(partitions)}
        read = 0
        deadline = time.monotonic() + 600
        while not all([await consumer.position(tp) >= ends[tp] for tp in tps]) and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).items():
                for m in batch:
                    if m.offset < ends[tp]:
                        read += 1
                        records = latest[tp.partition]
                        records.pop(m.key, None)  # re-inserted: the dict keeps the order of last writes
                        records[m.key] = m.value
        return latest, read, sum(ends.values())
    finally:
        await consumer.stop()


async def write_history(bootstrap: str, topic: str, latest: dict[int, dict[bytes, bytes | None]],
                        records: int) -> tuple[int, int, dict[int, int]]:
    """At least ``records`` changelog records: the partitions' current records again and again, one
    transaction per round (zstd, as the book agent's writer), ending on whole rounds so the table's
    state is unchanged. Returns (records, transactions, the end offset of each partition written)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"bench-history-{uuid.uuid4()}",
                                compression_type="zstd", acks="all")
    rounds = [(p, list(items.items())) for p, items in latest.items() if items]
    written = transactions = 0
    ends: dict[int, int] = {}
    await producer.start()
    try:
        while written < records:
            await producer.begin_transaction()
            futures = [await producer.send(topic, value, key=key, partition=p) for p, items in rounds
                       for key, value in items]
            for sent in await asyncio.gather(*futures):
                ends[sent.partition] = max(ends.get(sent.partition, 0), sent.offset + 1)
            await producer.commit_transaction()
            written, transactions = written + len(futures), transactions + 1
            if transactions % 100 == 0:
                print(f"    history: {written} of {records} records", flush=True)
    finally:
        await producer.stop()
    return written, transactions, ends


async def touch(bootstrap: str, topic: str, latest: dict[int, dict[bytes, bytes | None]]) -> None:
    """Write each partition's last record again (its raw watermark, unchanged): a live worker's appends,
    which roll the segments the history left active."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"bench-touch-{uuid.uuid4()}",
                                compression_type="zstd", acks="all")
    await producer.start()
    try:
        await producer.begin_transaction()
        for p, items in latest.items():
            if items:
                key, value = next(reversed(items.items()))
                await producer.send(topic, value, key=key, partition=p)
        await producer.commit_transaction()
    finally:
        await producer.stop()


def cleaned_up_to(kafka: KafkaCluster, topic: str) -> dict[int, int]:
    """The offset up to which the broker's log cleaner has cleaned each partition of ``topic`` (its
    ``cleaner-offset-checkpoint``: a version line, a count line, then ``topic partition offset`` lines)."""
    path = kafka.nodes[0].data_dir / "logs" / "cleaner-offset-checkpoint"
    lines = path.read_text().splitlines()[2:] if path.exists() else []
    return {int(p): int(o) for t, p, o in (line.split() for line in lines) if t == topic}


def log_bytes(kafka: KafkaCluster, topic: str) -> int:
    """Bytes of the topic's live segment files on the bench's broker (cleaned ones are renamed away)."""
    logs = kafka.nodes[0].data_dir / "logs"
    return sum(f.stat().st_size for d in logs.glob(f"{topic}-*") for f in d.glob("*.log"))


def restore(run: Run) -> None:
    args, c = run.args, run.c
    partitions = int(c.env["KRAKENFLOW_RAW_PARTITIONS"])
    topic = f"{c.env['KRAKENFLOW_APP_ID']}-books-changelog"
    run.start(("a",))
    port = run.ports["a"]

    # the changelog's write rate on the live market
    t0, r0, x0 = time.monotonic(), metric(port, "krakenflow_table_records_written"), metric(
        port, "krakenflow_transactions_committed")
    time.sleep(args.restore_calibrate)  # the measuring window
    seconds = time.monotonic() - t0
    r1, x1 = metric(port, "krakenflow_table_records_written"), metric(port, "krakenflow_transactions_committed")
    rate, txn_rate = (r1 - r0) / seconds, (x1 - x0) / seconds
    steady_bytes = log_bytes(run.kafka, topic)
    print(f"  changelog: {rate:.0f} records/s in {txn_rate:.0f} transactions/s; {steady_bytes} bytes on disk",
          flush=True)

    # an hour of history: the worker stopped (its state unchanged by the history), the market running on
    c.stop("a")
    latest, _, _ = asyncio.run(changelog_state(c.bootstrap, topic, partitions))
    target = int(rate * 3600 * args.restore_hours)
    started = time.monotonic()
    history, transactions, history_ends = asyncio.run(write_history(c.bootstrap, topic, latest,
                                                                    max(0, target - int(r1))))
    history_s = time.monotonic() - started
    peak_bytes = log_bytes(run.kafka, topic)
    print(f"  history: {history} records in {transactions} transactions, {history_s:.0f} s; {peak_bytes} bytes",
          flush=True)

    # the log cleaner at work, with appends as a live worker's (they roll the history's last segments)
    started = time.monotonic()

    def cleaned() -> bool:
        asyncio.run(touch(c.bootstrap, topic, latest))
        done = cleaned_up_to(run.kafka, topic)
        return all(done.get(p, -1) >= end for p, end in history_ends.items())

    compacted = within(cleaned, 600, interval=1.0)
    compaction_s = round(time.monotonic() - started, 1) if compacted else None
    print(f"  compaction: {compaction_s} s; {log_bytes(run.kafka, topic)} bytes", flush=True)

    # the worker back on its own data dir (it reads the changelog after its local offset), then live a while
    since = time.time_ns()
    c.start_worker("a", web_port=port)
    back = within(lambda: run.fresh(port, since), RECOVERY_TIMEOUT * 2)
    restart_s = round((time.time_ns() - since) / 1e9, 2) if back else None
    time.sleep(args.restore_settle)  # steady state: the changelog's tail is live writes again
    live_written = metric(port, "krakenflow_table_records_written")
    _, restored_from, offsets = asyncio.run(changelog_state(c.bootstrap, topic, partitions))

    # the owner's disk is lost: SIGKILL, and a worker with an empty data dir takes over
    c.stop("a", signal.SIGKILL)
    since, t0 = time.time_ns(), time.monotonic()
    fresh_port = run.ports["b"] = c.start_worker("b", fresh=True)
    done = within(lambda: run.fresh(fresh_port, since), RECOVERY_TIMEOUT, interval=0.1)
    restore_s = round(time.monotonic() - t0, 2) if done else None
    cpu = cpu_seconds(c.procs["b"].pid)
    run.faults.append({"fault": "owner SIGKILLed, empty data dir", "at_ns": since, "recovery_s": restore_s})
    run.last_fault_ns = since
    marks = log_times(c.tmp / "b.log", {"assigned": "Setting newly assigned partitions",
                                        "reading": "Restoring state from changelog topics",
                                        "read": "Done reading from changelog topics", "ready": "Worker ready"})
    read_s = round(marks["read"] - marks["reading"], 2) if {"read", "reading"} <= marks.keys() else None
    print(f"  restore with an empty data dir: {restore_s} s ({restored_from} records read)", flush=True)
    run.figures.update({
        "pairs": len(run.pairs), "frames_per_s_per_pair": args.restore_rate,
        "changelog_records_per_s": round(rate), "changelog_transactions_per_s": round(txn_rate),
        "history_hours": args.restore_hours, "history_records": history, "history_transactions": transactions,
        "changelog_records_written": int(r1 + history + live_written), "changelog_offsets": offsets,
        "changelog_bytes_before_history": steady_bytes, "changelog_bytes_after_history": peak_bytes,
        "compaction_s": compaction_s, "changelog_bytes_compacted": log_bytes(run.kafka, topic),
        "restart_with_datadir_s": restart_s,
        "changelog_records_restored": restored_from,
        "restore_empty_datadir_s": restore_s,
        "restore_join_s": round(marks["assigned"] - marks["first"], 2) if "assigned" in marks else None,
        "restore_changelog_read_s": read_s,
        "restore_ready_to_fresh_s": round(since / 1e9 + restore_s - marks["ready"], 2)
        if restore_s is not None and "ready" in marks else None,
        "restore_worker_cpu_s": round(cpu, 1),
        # a standby replica applies every changelog record as the restore does: its share of a core, if the
        # restore's read is CPU-bound on the worker's one thread
        "standby_core_share_est": round(rate / (restored_from / read_s), 2) if read_s and restored_from else None,
    })


RUNNERS: dict[str, Callable[[Run], None]] = {
    "kills": kills, "drops": drops, "malformed": malformed, "outage": outage, "corrupt": corrupt,
    "failover": failover, "nesting": nesting, "forged": forged, "zombie": zombie, "restore": restore,
}

#: pipelines other than the campaign's default one
SETUP: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "restore": lambda args: {"pairs": [s.symbol for s in catalogue(args.restore_pairs)], "rate": args.restore_rate,
                             "raw_partitions": 8},
}


def campaign(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    print(f"fault campaign in {tmp}", flush=True)
    kafka = start_kafka(tmp / "kafka", nodes=1, log=tmp)
    chosen = [s for s in RUNNERS if args.scenario in ("all", s)]
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in chosen:
            print(f"== {name}", flush=True)
            run = Run(args, kafka, tmp, name, **SETUP.get(name, lambda _: {})(args))
            try:
                RUNNERS[name](run)
                run.figures.update(run.audit())
            except Exception as exc:  # one scenario's failure must not cost the others their figures
                print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
                run.figures["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                run.c.close()
            results[name] = {"faults": len(run.faults), **run.figures,
                             "recovery_s": [f["recovery_s"] for f in run.faults], "fault_log": run.faults}
            table(name, results[name])
            result_line(name, results[name])
    finally:
        kafka.close()
    return results


def table(name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}")
    print("-" * 72)
    for key, value in figures.items():
        if key == "fault_log":
            continue
        if key == "recovery_s":
            done = [v for v in value if v is not None]
            value = (f"n={len(value)} median={statistics.median(done):.1f} max={max(done):.1f} "
                     f"timeouts={len(value) - len(done)}") if done else f"n={len(value)} timeouts={len(value)}"
        print(f"  {key:<32} {value}")
    print(flush=True)


def result_line(name: str, figures: dict[str, Any]) -> None:
    """``RESULT scenario=<name> key=value ...``, values as compact JSON (the fault log left out)."""
    fields = {k: v for k, v in figures.items() if k != "fault_log"}
    print("RESULT " + " ".join([f"scenario={name}", *(f"{k}={orjson.dumps(v, default=str).decode()}"
                                                      for k, v in fields.items())]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", choices=("all", *RUNNERS), default="all")
    parser.add_argument("--kills", type=int, default=20, help="worker SIGKILLs")
    parser.add_argument("--drops", type=int, default=5, help="forced disconnects of the Kraken connections")
    parser.add_argument("--malformed", type=int, default=1000, help="hostile frames written into raw")
    parser.add_argument("--outage", type=float, default=15.0, help="seconds the broker is SIGSTOPped")
    parser.add_argument("--corrupt", type=int, default=3, help="checksum corruptions by the simulator")
    parser.add_argument("--failover", type=int, default=1, help="SIGKILLs of the live ingest")
    parser.add_argument("--nesting", type=int, default=2000, help="depth of the nested frames")
    parser.add_argument("--zombie", type=int, default=3, help="SIGSTOP/SIGCONT cycles of a worker")
    parser.add_argument("--zombie-pause", type=float, default=20.0, help="seconds a zombie stays stopped")
    parser.add_argument("--zombie-hold-ms", type=int, default=300,
                        help="each book transaction held open this long (KRAKENFLOW_FAULT_COMMIT_HOLD_MS), so a "
                             "commit is in flight when a zombie stops; 0: none")
    parser.add_argument("--restore-pairs", type=int, default=12, help="pairs of the restore scenario's market")
    parser.add_argument("--restore-rate", type=float, default=20.0, help="its frames/s per pair")
    parser.add_argument("--restore-hours", type=float, default=1.0, help="hours of changelog history to restore")
    parser.add_argument("--restore-calibrate", type=float, default=60.0,
                        help="seconds the changelog's write rate is measured")
    parser.add_argument("--restore-settle", type=float, default=30.0,
                        help="seconds the worker runs live after the history, before its disk is lost")
    parser.add_argument("--pairs", default="BTC/USD,ETH/USD,SOL/USD,XRP/USD,DOGE/USD,ADA/USD")
    parser.add_argument("--depth", type=int, default=25)
    parser.add_argument("--rate", type=float, default=10.0, help="simulator frames/s per pair")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spacing", type=float, nargs=2, default=(15.0, 25.0), metavar=("MIN", "MAX"),
                        help="seconds between the starts of successive faults of a scenario")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: every process started stops
    results = campaign(args)
    print(json.dumps({"args": vars(args), "results": results}, default=str))


if __name__ == "__main__":
    main()
