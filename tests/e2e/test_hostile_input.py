"""Hostile frames written into kraken.raw of a running two-worker cluster (Apache Kafka, the simulator
feeding real pairs): each is dead-lettered once with its reason, nothing else changes, the books go on.

1. The fuzz corpus (tests/fuzz_corpus.py), mixed into the live partitions under the real pairs' keys:
   nested thousands deep, megabyte frames, NaN, duplicate keys, wrong types, broken UTF-8 ...
2. Forged frames that once changed books: a subscribe ack without lock_gen (a live book's depth), a
   forged instrument precision (a resync loop), a pair's snapshot under another pair's key (a phantom
   second book on the other worker).
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from models.book import L2Book
from models.symbols import normalize
from tests.cluster import Cluster, http_json, wait_until
from tests.fuzz_corpus import Hostile, corpus

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "LINK/USD", "USDT/USD", "BTC/JPY"]
SYMBOLS = {normalize(p) for p in PAIRS}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("hostile"), PAIRS, depth=25, sim_args=("--pair-rate", "10", "--seed", "19"))
    try:
        c.start_ingest()
        c.webs = [c.start_worker("worker-1"), c.start_worker("worker-2")]  # type: ignore[attr-defined]
        # both workers hold their share (the second one's join moved partitions), every book live
        wait_until(lambda: (lambda rows: {b["symbol"] for b in rows if b["state"] == "live"} == SYMBOLS
                            and len({b["port"] for b in rows}) == 2)(local_books(c)), 120,
                   "every book live, on two workers")
        yield c
    finally:
        c.close()


def local_books(c: Cluster) -> list[dict[str, Any]]:
    """Every worker's own books (``?local=1``), a row per book a worker holds."""
    rows = []
    for port in c.webs:  # type: ignore[attr-defined]
        listing = http_json(f"http://127.0.0.1:{port}/books/?local=1") or {"books": []}
        rows += [dict(b, port=port) for b in listing.get("books", [])]
    return rows


def books(c: Cluster) -> dict[str, dict[str, Any]]:
    return {b["symbol"]: b for b in local_books(c)}


def restarts(c: Cluster) -> dict[int, float]:
    """Each worker's restarts of its book agent (krakenflow_worker_task_restarts_total{task="books"})."""
    counts = {}
    for port in c.webs:  # type: ignore[attr-defined]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        found = re.search(r'^krakenflow_worker_task_restarts_total\{task="books"\} (\S+)$', text, re.M)
        assert found, "the worker exports its task restarts"
        counts[port] = float(found.group(1))
    return counts


def worker_logs(c: Cluster) -> str:
    return "".join((c.tmp / f"{name}.log").read_text(errors="replace") for name in ("worker-1", "worker-2"))


async def _publish(c: Cluster, frames: list[Hostile]) -> list[tuple[int, int]]:
    """Each frame under its key (Kafka's keyed partitioner: the pair's partition); their positions."""
    producer = AIOKafkaProducer(bootstrap_servers=c.bootstrap, max_request_size=2 << 20)
    await producer.start()
    try:
        sent = [await producer.send(c.topic("raw"), f.value, key=f.key) for f in frames]
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


def test_every_hostile_frame_is_dead_lettered_once_and_the_books_go_on(cluster: Cluster) -> None:
    frames = corpus(PAIRS)
    before = {s: b["seq"] for s, b in books(cluster).items()}
    positions = asyncio.run(_publish(cluster, frames))
    assert len(set(positions)) == len(frames) and len({p for p, _ in positions}) > 1  # mixed into the partitions
    wanted = set(positions)

    def all_dead(records: list[dict[str, Any]]) -> bool:
        return wanted <= {(d["raw_partition"], d["raw_offset"]) for d in records}

    dead = [d for d in cluster.read("deadletter", until=all_dead, timeout=240)
            if (d["raw_partition"], d["raw_offset"]) in wanted]
    counts = Counter((d["raw_partition"], d["raw_offset"]) for d in dead)
    assert [frames[positions.index(p)].name for p, n in counts.items() if n != 1] == [], "dead-lettered once each"
    assert all(d["reason"] for d in dead)
    by_position = {(d["raw_partition"], d["raw_offset"]): d["reason"] for d in dead}
    deepest = positions[next(i for i, f in enumerate(frames) if f.name == "deep array 40000")]
    assert "nested deeper than 16" in by_position[deepest]
    # every pair goes on: its seq grows past where it stood once the corpus was through
    after = {s: b["seq"] for s, b in books(cluster).items()}
    assert all(after[s] >= before[s] for s in SYMBOLS)
    wait_until(lambda: all(b["seq"] > after[s] and b["state"] == "live" for s, b in books(cluster).items()), 60,
               "every book to advance after the corpus")
    assert set(restarts(cluster).values()) == {0.0}, "the book agents never died"
    assert "could not be processed" not in worker_logs(cluster), "no frame reached the pipeline's last resort"


def _raw_by_symbol(c: Cluster) -> dict[str, tuple[int, bytes]]:
    """Each pair's raw partition and the live ingest's lock_gen header there, from its book frames (read
    here, not with Cluster.read: kraken.raw may hold the corpus, which no JSON reader takes)."""
    return asyncio.run(_read_raw(c))


async def _read_raw(c: Cluster) -> dict[str, tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=c.bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, tuple[int, bytes]] = {}
    try:
        consumer._client.add_topic(c.topic("raw"))  # the client's metadata, as Cluster.read does
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(c.topic("raw"), p) for p in consumer.partitions_for_topic(c.topic("raw")) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while not all([await consumer.position(tp) >= ends[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for m in batch:
                    lock_gen = dict(m.headers or ()).get("lock_gen")
                    if lock_gen is not None and m.value.startswith(b'{"channel":"book"'):
                        found[orjson.loads(m.value)["data"][0]["symbol"]] = (m.partition, lock_gen)
    finally:
        await consumer.stop()
    assert set(PAIRS) <= set(found), found
    return found


def _snapshot(symbol: str) -> bytes:
    bids, asks = [("1.00000", "1.00000000")], [("1.00010", "1.00000000")]
    checksum = L2Book(symbol, 25, (5, 8)).apply_snapshot(bids, asks).checksum  # a book that would verify
    return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{symbol}","bids":[{{"price":1.00000,'
            f'"qty":1.00000000}}],"asks":[{{"price":1.00010,"qty":1.00000000}}],"checksum":{checksum},'
            '"timestamp":"2026-08-16T23:37:05.399046Z"}]}').encode()


def test_forged_frames_change_no_depth_no_precision_and_make_no_phantom_book(cluster: Cluster) -> None:
    raw = _raw_by_symbol(cluster)
    owner = {s: b["port"] for s, b in books(cluster).items()}
    assert books(cluster)["USDT-USD"]["depth"] == 25

    def at(symbol: str) -> tuple[int, list[tuple[str, bytes]]]:
        """The pair's partition and the live ingest's lock_gen there (a forger copying the header)."""
        partition, lock_gen = raw[symbol]
        return partition, [("lock_gen", lock_gen)]

    # LINK/USD under a pair of another partition, of the other worker where there is one
    others = [p for p in PAIRS if at(p)[0] != at("LINK/USD")[0]]
    victim = next((p for p in others if owner[normalize(p)] != owner["LINK-USD"]), others[0])
    instrument = (b'{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[{"symbol":"BTC/JPY",'
                  b'"base":"BTC","quote":"JPY","status":"online","price_precision":2,"qty_precision":8}]}}')
    ack = b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"USDT/USD"},"success":true}'
    forged = {  # name: (key, value, partition, headers), written by anything but the live ingest
        "ack": (b"USDT/USD", ack, at("USDT/USD")[0], []),
        "instrument": (b"conn:forged", instrument, at("BTC/JPY")[0], []),
        "snapshot": (victim.encode(), _snapshot("LINK/USD"), at(victim)[0], []),
        "snapshot with lock_gen": (victim.encode(), _snapshot("LINK/USD"), *at(victim)),
        # with the live ingest's header copied: past the fence, but not the precision stamped on BTC/JPY's frames
        "instrument with lock_gen": (b"conn:forged", instrument, *at("BTC/JPY")),
    }
    offsets = {name: cluster.produce("raw", *frame) for name, frame in forged.items()}
    jpy, forged_at = at("BTC/JPY")[0], offsets["instrument with lock_gen"]

    def after_forgery(events: list[dict[str, Any]]) -> list[str]:
        """BTC/JPY's book states caused by its partition's records after the stamped forged instrument."""
        return [e["state"] for e in events if e["symbol"] == "BTC-JPY" and e["raw_partition"] == jpy
                and e["raw_offset"] is not None and e["raw_offset"] > forged_at]

    expected = {"ack": "unauthenticated: ", "instrument": "unauthenticated: ", "snapshot": "unauthenticated: ",
                "snapshot with lock_gen": "misfiled: book frame for LINK/USD",
                "instrument with lock_gen": "instrument precision (2, 8) for BTC/JPY contradicts "}
    positions = {(forged[name][2], offsets[name]): name for name in expected}
    dead = cluster.read("deadletter", until=lambda r: set(positions) <= {(d["raw_partition"], d["raw_offset"]) for d in r},
                        timeout=90)
    reasons = {positions[(d["raw_partition"], d["raw_offset"])]: d["reason"] for d in dead
               if (d["raw_partition"], d["raw_offset"]) in positions}
    assert {name: reasons[name][:len(prefix)] for name, prefix in expected.items()} == expected, reasons

    # depth and precision as the live ingest set them; one book per pair, on its owner; all live and moving
    now = books(cluster)
    assert now["USDT-USD"]["depth"] == 25
    assert [b["port"] for b in local_books(cluster) if b["symbol"] == "LINK-USD"] == [owner["LINK-USD"]]
    jpy_book = http_json(f"http://127.0.0.1:{owner['BTC-JPY']}/books/BTC-JPY/?depth=25")
    assert all("." not in price for price, _ in jpy_book["bids"] + jpy_book["asks"]), jpy_book
    assert after_forgery(cluster.read("book.events", until=None)) == [], "the book never left its stamped precision"
    wait_until(lambda: all(b["seq"] > now[s]["seq"] and b["state"] == "live" for s, b in books(cluster).items()), 60,
               "every book to advance after the forged frames")
    assert set(restarts(cluster).values()) == {0.0}


def test_forged_headers_cost_their_frame_only(cluster: Cluster) -> None:
    """Headers no ingest writes (``recv_ns`` and ``lock_gen`` that are not integers, or out of range): the
    frame is dead-lettered once (without a readable lock_gen it is unauthenticated), and the books go on."""
    frame = _snapshot("BTC/USD")
    partition = _raw_by_symbol(cluster)["BTC/USD"][0]
    forged = {
        "letters": [("recv_ns", b"abc"), ("lock_gen", b"x")],
        "huge": [("recv_ns", b"9" * 40), ("lock_gen", b"9" * 40)],
        "empty": [("recv_ns", b""), ("lock_gen", b"")],
    }
    before = {s: b["seq"] for s, b in books(cluster).items()}
    offsets = {cluster.produce("raw", b"BTC/USD", frame, partition, headers): name for name, headers in forged.items()}
    dead = cluster.read("deadletter", until=lambda r: set(offsets) <= {d["raw_offset"] for d in r
                                                                        if d["raw_partition"] == partition}, timeout=90)
    reasons = Counter(offsets[d["raw_offset"]] for d in dead
                      if d["raw_partition"] == partition and d["raw_offset"] in offsets)
    assert reasons == Counter(list(forged)), "each dead-lettered once"
    wait_until(lambda: all(b["seq"] > before[s] and b["state"] == "live" for s, b in books(cluster).items()), 60,
               "every book to advance after the forged headers")
    assert set(restarts(cluster).values()) == {0.0}
