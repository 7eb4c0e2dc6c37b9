"""The book client library against a running pipeline: clients that join mid-stream, lose records, or
replay from the start all end with the worker's books, verified by the checksums the records carry."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from krakenflow.client import BlockingBookClient, BookClient
from models.symbols import normalize
from tests.cluster import BIN, Cluster, http_json, if_levels_equal, wait_until
from tests.debian import debian_binary
from tests.processes import ROOT

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "DOGE/USD"]
SYMBOLS = [normalize(p) for p in PAIRS]


class LossyClient(BookClient):
    """A client whose every ``every``-th record is lost on the way (while ``losing``)."""

    def __init__(self, *args: Any, every: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every, self.losing, self.seen, self.lost = every, True, 0, 0

    async def _receive(self, record: Mapping[str, Any]) -> None:
        self.seen += 1
        if self.losing and self.seen % self.every == 0:
            self.lost += 1
            return
        await super()._receive(record)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int]]:
    cluster = Cluster(tmp_path_factory.mktemp("client"), PAIRS, depth=25, sim_args=("--pair-rate", "20"))
    try:
        cluster.start_ingest()
        web = cluster.start_worker()
        wait_until(lambda: len([b for b in (http_json(f"http://127.0.0.1:{web}/books/") or {"books": []})["books"]
                                if b["state"] == "live"]) == len(PAIRS), 90, "live books")
        yield cluster, web
    finally:
        cluster.close()


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``wait_until`` off the event loop, so the clients keep consuming while the test waits."""
    return await asyncio.to_thread(wait_until, condition, timeout, what)


async def publish(cluster: Cluster, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        await (await producer.send(topic, value, key=b"BTC-USD"))
    finally:
        await producer.stop()


def equals_worker(client: Any, symbol: str, view: dict[str, Any]) -> bool:
    book = client.book(symbol)
    return bool(client.state(symbol) == "live" and book.checksum_ok and (book.epoch, book.seq) ==
                (view["epoch"], view["seq"]) and book.bids == [tuple(x) for x in view["bids"]]
                and book.asks == [tuple(x) for x in view["asks"]])


async def test_joining_and_lossy_clients_end_with_the_workers_books(pipeline: tuple[Cluster, int]) -> None:
    cluster, web = pipeline
    url = f"http://127.0.0.1:{web}"
    topic = cluster.topic("book.deltas")
    joined = BookClient(cluster.bootstrap, SYMBOLS, topic=topic, books_url=url)
    lossy = LossyClient(cluster.bootstrap, SYMBOLS, topic=topic, books_url=url, every=25)
    updates: list[Any] = []
    joined.on_update(updates.append)
    await joined.start()
    await lossy.start()
    try:
        await until(lambda: all(joined.state(s) == "live" for s in SYMBOLS), 60, "the joined client's books")
        await publish(cluster, topic, b"{not a delta")  # bad input on the topic: skipped and counted
        assert all(joined.stats(s).recoveries >= 1 for s in SYMBOLS), "joined mid-stream: books from the view"
        await until(lambda: sum(lossy.stats(s).gaps for s in SYMBOLS) >= 4 and lossy.lost >= 4, 90,
                    "the lossy client to find gaps")
        lossy.losing = False
        # every symbol moves on after the last loss, so each gap shows itself before the market pauses
        seqs = {s: lossy.book(s).seq for s in SYMBOLS}
        await until(lambda: all(lossy.book(s).seq > seqs[s] + 1 for s in SYMBOLS), 60, "traffic after the losses")
        assert cluster.sim("pause", on=1)["ok"]
        try:
            for pair, symbol in zip(PAIRS, SYMBOLS, strict=True):
                exchange = cluster.sim("book", symbol=pair, depth=25)
                view = await until(lambda s=symbol, e=exchange: if_levels_equal(  # type: ignore[misc]
                    http_json(f"{url}/books/{s}/?depth=25"), e), 60, f"the worker's {symbol} to equal the exchange")
                for client in (joined, lossy):
                    await until(lambda c=client, s=symbol, v=view: equals_worker(c, s, v),  # type: ignore[misc]
                                60, f"{type(client).__name__}'s {symbol} to equal the worker's")
        finally:
            cluster.sim("pause", on=0)
        assert sum(lossy.stats(s).recoveries for s in SYMBOLS) >= 4
        assert all(u.book.checksum_ok for u in updates), "every update of the joined client verified"
        assert sum(joined.stats(s).checksum_failures for s in SYMBOLS) == 0
        assert joined.bad_records == lossy.bad_records == 1
    finally:
        await joined.stop()
        await lossy.stop()


def test_a_blocking_client_from_the_start_needs_no_web_view(pipeline: tuple[Cluster, int]) -> None:
    cluster, web = pipeline
    with BlockingBookClient(cluster.bootstrap, SYMBOLS, topic=cluster.topic("book.deltas"),
                            start="earliest") as client:
        first = next(client.updates(timeout=30))
        assert first.record is not None and first.record["is_snapshot"], "the topic starts with each snapshot"
        assert cluster.sim("pause", on=1)["ok"]
        try:
            for pair, symbol in zip(PAIRS, SYMBOLS, strict=True):
                exchange = cluster.sim("book", symbol=pair, depth=25)
                wait_until(lambda s=symbol, e=exchange: if_levels_equal(client.book(s), e),  # type: ignore[misc]
                           60, f"the blocking client's {symbol} to equal the exchange")
                book = client.book(symbol)
                assert book["state"] == "live" and book["checksum_ok"]
                view = http_json(f"http://127.0.0.1:{web}/books/{symbol}/?depth=25")
                assert (book["epoch"], book["seq"]) == (view["epoch"], view["seq"])
        finally:
            cluster.sim("pause", on=0)
        assert client.client is not None and all(client.client.stats(s).recoveries == 0 for s in SYMBOLS)


def test_the_terminal_ladder_as_a_person_sees_it_in_tmux(pipeline: tuple[Cluster, int], tmp_path: Any) -> None:
    """``krakenflow books --fast`` (the low-latency path: read_uncommitted, repeats dropped) in a real
    terminal (tmux, 120x60): each pair's panel shows the worker's book."""
    cluster, web = pipeline
    socket = f"kf-{uuid.uuid4().hex[:8]}"
    env = [f"{k}={v}" for k, v in cluster.env.items() if k.startswith("KRAKENFLOW_")] + [f"KRAKENFLOW_WEB_PORT={web}"]
    command = f"{BIN / 'krakenflow'} books BTC-USD ETH/USD --depth 5 --fast"
    tmux = [debian_binary("tmux", "tmux"), "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "60", *[a for e in env for a in ("-e", e)],
                    command], check=True, cwd=ROOT, timeout=30)
    screen = tmp_path / "ladder.txt"

    def pane() -> str:
        text = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, timeout=10).stdout
        screen.write_text(text)
        return text

    try:
        wait_until(lambda: pane().count("live  spread") == 2, 60, "both ladders live on the screen")
        assert cluster.sim("pause", on=1)["ok"]
        try:
            def shows(symbol: str) -> bool:
                # asked again each time: frames in flight when the market paused still move the book
                view = http_json(f"http://127.0.0.1:{web}/books/{symbol}/?depth=5")
                (bid, bid_qty), (ask, ask_qty) = view["bids"][0], view["asks"][0]
                row = re.compile(rf"{re.escape(bid_qty)}\s+{re.escape(bid)}\s+{re.escape(ask)}\s+{re.escape(ask_qty)}")
                text = pane()
                return bool(row.search(text)) and f"seq {view['epoch']}/{view['seq']}" in text

            for symbol in ("BTC-USD", "ETH-USD"):
                wait_until(lambda s=symbol: shows(s), 30, f"{symbol}'s best levels and seq on the screen")  # type: ignore[misc]
            text = pane()
            assert "checksum ok" in text and "latency" in text and "FAILED" not in text
            print(f"\nkrakenflow books, as the terminal showed it ({screen}):\n{text}")
        finally:
            cluster.sim("pause", on=0)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
