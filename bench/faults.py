"""Fault campaign: a real local pipeline on Apache Kafka, faults injected, the damage counted. On demand only.

Each scenario gets a fresh pipeline (:class:`tests.cluster.Cluster`: simulator, ``krakenflow ingest``, Faust
workers, own app id and topic prefix) on one single-node Apache Kafka of the campaign's own; logs stay in
the ``/tmp/faults-*`` it prints. Scenarios: ``kills`` (SIGKILL one of two workers and restart it, every
third time with its data dir deleted), ``drops`` (the simulator aborts the Kraken connections), ``malformed``
(hostile frames written straight into ``raw``: garbage bytes, bad JSON, wrong types, unsubscribed pairs,
400-digit prices, negative quantities), ``outage`` (SIGSTOP the broker for S s), ``corrupt`` (the simulator
sends a wrong checksum), ``failover`` (SIGKILL the live of two ingest candidates).

    .venv/bin/python -m bench.faults --scenario all [--kills 20] [--drops 5] [--malformed 1000] [--outage 15]
        [--corrupt 3] [--failover 1] [--pairs BTC/USD,...] [--depth 25] [--rate 10] [--seed 1] [--spacing 15 25]

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from broker.kafka import KafkaCluster, start_kafka
from models.symbols import normalize
from tests.cluster import Cluster, http_json, if_levels_equal, wait_until
from tests.e2e.test_exactly_once import rebuild

RECOVERY_TIMEOUT = 120.0
CONTENT = ("is_snapshot", "bids", "asks", "checksum", "raw_partition", "raw_offset")


class Run:
    """One scenario's pipeline and what happened to it."""

    def __init__(self, args: argparse.Namespace, kafka: KafkaCluster, tmp: Path, name: str) -> None:
        self.args, self.kafka = args, kafka
        self.pairs: list[str] = args.pairs.split(",")
        self.symbols = {normalize(p) for p in self.pairs}
        self.rng = random.Random(f"{args.seed}-{name}")
        (tmp / name).mkdir(parents=True)
        self.c = Cluster(tmp / name, self.pairs, depth=args.depth, kafka=kafka,
                         sim_args=("--pair-rate", str(args.rate), "--seed", str(args.seed)))
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
            "dead_letters": len(self.read("deadletter")),
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


RUNNERS: dict[str, Callable[[Run], None]] = {
    "kills": kills, "drops": drops, "malformed": malformed, "outage": outage, "corrupt": corrupt,
    "failover": failover,
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
            run = Run(args, kafka, tmp, name)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", choices=("all", *RUNNERS), default="all")
    parser.add_argument("--kills", type=int, default=20, help="worker SIGKILLs")
    parser.add_argument("--drops", type=int, default=5, help="forced disconnects of the Kraken connections")
    parser.add_argument("--malformed", type=int, default=1000, help="hostile frames written into raw")
    parser.add_argument("--outage", type=float, default=15.0, help="seconds the broker is SIGSTOPped")
    parser.add_argument("--corrupt", type=int, default=3, help="checksum corruptions by the simulator")
    parser.add_argument("--failover", type=int, default=1, help="SIGKILLs of the live ingest")
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
