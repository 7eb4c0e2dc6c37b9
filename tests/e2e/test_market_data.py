"""Trades, tickers, candles and market summaries from the simulator through the broker; every output
topic's records against its JSON Schema."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from app.schemas import SCHEMAS
from models.kraken.frames import Candle, OhlcFrame
from models.timeutil import rfc3339_ns
from tests.cluster import BIN, Cluster, http_json, wait_until
from tests.processes import ROOT
from tests.simclient import SimClient

pytestmark = pytest.mark.e2e

PAIRS = ["BTC/USD", "ETH/USD"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("marketdata"), PAIRS, depth=10, sim_args=("--pair-rate", "30", "--seed", "9"))
    c.env.update({"KRAKENFLOW_CANDLE_GRACE": "2", "KRAKENFLOW_WHALE_NOTIONAL": "20000"})
    try:
        c.start_ingest()
        c.web = c.start_worker()  # type: ignore[attr-defined]
        yield c
    finally:
        c.close()


class OhlcWatcher:
    """The simulator's own ohlc channel (interval 1), last update per window, read in a thread."""

    def __init__(self, url: str) -> None:
        self.final: dict[tuple[str, int], Candle] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run(url)), daemon=True)
        self.thread.start()

    async def _run(self, url: str) -> None:
        client = await SimClient.open(url)
        await client.subscribe("ohlc", PAIRS, interval=1)
        while not self.stop.is_set():
            try:
                _, frame = await asyncio.wait_for(client.frame(), 1.0)
            except TimeoutError:
                continue
            if isinstance(frame, OhlcFrame):  # exact decimal strings, as on the wire
                for c in frame.candles:
                    self.final[(c.symbol, rfc3339_ns(c.interval_begin) or 0)] = c
        await client.close()


def test_trades_tickers_summaries_and_whales_flow(cluster: Cluster) -> None:
    trades = cluster.read("trades", until=lambda r: {t["symbol"] for t in r} == {"BTC-USD", "ETH-USD"} and len(r) > 20)
    for symbol in ("BTC-USD", "ETH-USD"):
        mine = [t for t in trades if t["symbol"] == symbol]
        assert all(t["event_id"] == f"kraken:{symbol}:{t['trade_id']}" for t in mine)
        assert [t["trade_id"] for t in mine] == sorted({t["trade_id"] for t in mine}), "no duplicate, in order"
        assert all(t["side"] in ("buy", "sell") and isinstance(t["price"], str) and t["ts_exchange_ns"] for t in mine)
    tickers = cluster.read("tickers", until=lambda r: len(r) > 5)
    assert {"bid", "ask", "last", "volume", "vwap", "high", "low", "change"} <= set(tickers[0])
    whales = cluster.read("metrics", until=lambda r: any(m["metric"] == "whale_trade" for m in r))
    whale = next(m for m in whales if m["metric"] == "whale_trade")
    assert float(whale["notional"]) >= 20000 and whale["event_id"].startswith("kraken:")
    market = http_json(f"http://127.0.0.1:{cluster.web}/markets/BTC-USD/")  # type: ignore[attr-defined]
    assert market["last"] and market["volume_24h"] and market["best_bid"] and market["best_ask"]
    assert float(market["spread"]) > 0 and market["book_state"] == "live"
    listing = http_json(f"http://127.0.0.1:{cluster.web}/markets/")  # type: ignore[attr-defined]
    assert {m["symbol"] for m in listing["markets"]} == {"BTC-USD", "ETH-USD"}
    assert http_json(f"http://127.0.0.1:{cluster.web}/markets/DOGE-USD/")["status"] == 404  # type: ignore[attr-defined]


def test_closed_candles_match_the_exchange_ohlc_channel(cluster: Cluster) -> None:
    watcher = OhlcWatcher(f"ws://127.0.0.1:{cluster.sim_port}/v2")
    try:
        # the first window of a pair also holds trades made before the ingest subscribed to trades:
        # compare from the second window on
        def two_closed(records: list[dict[str, Any]]) -> bool:
            return all(sum(c["interval"] == "1m" and c["symbol"] == s for c in records) >= 2
                       for s in ("BTC-USD", "ETH-USD"))

        candles = cluster.read("candles", until=two_closed, timeout=200)
    finally:
        watcher.stop.set()
        watcher.thread.join(timeout=10)
    compared = 0
    first = {s: min(c["interval_begin_ns"] for c in candles if c["symbol"] == s and c["interval"] == "1m")
             for s in ("BTC-USD", "ETH-USD")}
    for c in candles:
        if c["interval"] != "1m" or c["interval_begin_ns"] == first[c["symbol"]]:
            continue
        exchange = watcher.final.get((c["exchange_symbol"], c["interval_begin_ns"]))
        if exchange is None:
            continue  # a window that closed before the watcher subscribed
        assert (c["open"], c["high"], c["low"], c["close"]) == (exchange.open, exchange.high, exchange.low,
                                                                exchange.close), c
        assert (c["volume"], c["trades"], c["vwap"]) == (exchange.volume, exchange.trades, exchange.vwap), c
        assert c["buy_volume"] and c["sell_volume"] and c["first_trade_id"] <= c["last_trade_id"]
        compared += 1
    assert compared >= 2
    view = http_json(f"http://127.0.0.1:{cluster.web}/candles/BTC-USD/?interval=1m")  # type: ignore[attr-defined]
    assert view["interval"] == "1m" and view["closed"] and view["closed"][-1]["volume"]
    assert http_json(f"http://127.0.0.1:{cluster.web}/candles/BTC-USD/?interval=2m")["status"] == 400  # type: ignore[attr-defined]


def test_records_sampled_from_every_topic_validate_against_the_schemas(cluster: Cluster) -> None:
    """Every output topic of this running pipeline, read back from Kafka, against schemas/<topic>.json."""
    cluster.sim("corrupt", symbol="ETH/USD")  # a checksum failure: book events and a control record
    asyncio.run(_publish(cluster, b"{not json"))  # a dead letter
    wanted = {"book.deltas": 50, "book.snapshots": 5, "book.events": 2, "metrics": 5, "deadletter": 1,
              "trades": 20, "tickers": 5, "candles": 1, "control": 1}
    for topic, count in wanted.items():
        records = cluster.read(topic, until=lambda r, n=count: len(r) >= n, timeout=120)  # type: ignore[misc]
        check = jsonschema.Draft202012Validator(orjson.loads((SCHEMAS / f"{topic}.json").read_bytes()))
        for record in records[:500]:
            value = {k: v for k, v in record.items() if not k.startswith("_")}  # the reader's own keys
            errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in check.iter_errors(value)]
            assert errors == [], (topic, value)
            assert value["schema_version"] == 1
    metrics = {m["metric"] for m in cluster.read("metrics", until=lambda r: len(r) >= 5)}
    assert {"book", "whale_trade"} <= metrics


async def _publish(cluster: Cluster, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        await (await producer.send(cluster.topic("raw"), value, key=b"BTC/USD"))
    finally:
        await producer.stop()


def test_replaying_the_same_frames_twice_yields_the_same_trade_ids(tmp_path: Path) -> None:
    capture = tmp_path / "trades.jsonl"
    cluster = Cluster(tmp_path, PAIRS, sim_args=("--pair-rate", "30", "--seed", "4"))
    try:
        subprocess.run([str(BIN / "krakenflow"), "record", str(capture), "--url", f"ws://127.0.0.1:{cluster.sim_port}/v2",
                        "--symbols", ",".join(PAIRS), "--channels", "book,trade", "--seconds", "3"],
                       cwd=ROOT, env=cluster.env, check=True, capture_output=True, timeout=60)
        expected = sorted(
            f"kraken:{t['symbol'].replace('/', '-')}:{t['trade_id']}"
            for line in capture.read_text().splitlines() if line.startswith('{"channel":"trade"')
            for t in orjson.loads(line)["data"]
        )
        assert expected
        cluster.start_worker()
        for _ in range(2):
            subprocess.run([str(BIN / "krakenflow"), "replay", str(capture)], cwd=ROOT, env=cluster.env, check=True,
                           capture_output=True, timeout=120)
        deltas = cluster.read("book.deltas", until=lambda r: len(r) >= 2 * sum(
            1 for line in capture.read_text().splitlines() if line.startswith('{"channel":"book"')) - 2)
        assert deltas
        trades = cluster.read("trades", until=lambda r: len(r) >= len(expected))
        assert sorted(t["event_id"] for t in trades) == expected, "the second replay adds no trade, ids are stable"
    finally:
        cluster.close()


def test_trades_missed_in_a_reconnect_are_recovered_and_a_longer_break_is_announced(tmp_path: Path) -> None:
    """Trades the ingest misses while a connection is down come back with Kraken's trade snapshot (the
    last 50); a break longer than that is announced as a ``trade_gap`` naming exactly the missing ids."""
    c = Cluster(tmp_path, ["BTC/USD"], depth=10, sim_args=("--pair-rate", "5", "--seed", "4"))
    c.env["KRAKENFLOW_CHANNELS"] = "book,trade"

    def trade_id() -> int:
        return int(c.sim("book", symbol="BTC/USD")["trade_id"])

    def missed_while_away(trades: int) -> int:
        """Trades made with the pair silent, then a reconnect: returns the last trade id made. The market
        is paused meanwhile (bursts still trade): a trade made after the reconnect's snapshot but while
        the pair is still silent would be a real, announced gap the test did not intend."""
        c.sim("pause", on=1)
        c.sim("silence", symbol="BTC/USD", on=1)
        start = trade_id()
        while trade_id() < start + trades:
            c.sim("burst", symbol="BTC/USD", events=10)
        last = trade_id()
        before = set(state_ids())
        assert c.sim("drop")["dropped"] >= 1
        wait_until(lambda: set(state_ids()) - before, 60, "the ingest to reconnect")
        c.sim("silence", symbol="BTC/USD", on=0)
        c.sim("pause", on=0)
        return last

    def state_ids() -> list[str]:
        return [cid for cid, symbols in (c.sim("state") or {}).get("subscriptions", {}).items() if symbols]

    def ids_of(records: list[dict[str, Any]]) -> set[int]:
        return {r["trade_id"] for r in records if r["symbol"] == "BTC-USD"}

    try:
        c.start_ingest()
        c.start_worker()
        first = c.read("trades", until=lambda r: len(ids_of(r)) >= 3, timeout=60)
        assert ids_of(first)
        short = missed_while_away(5)  # fewer than the snapshot's 50
        c.read("trades", until=lambda r: short in ids_of(r), timeout=60)
        long_ = missed_while_away(80)  # more than 50: some are gone for good
        c.read("trades", until=lambda r: max(ids_of(r), default=0) >= long_, timeout=60)
        ids = ids_of(c.read("trades"))
        gaps = [m for m in c.read("metrics") if m.get("metric") == "trade_gap"]
        assert gaps and all(g["symbol"] == "BTC-USD" and g["reason"] for g in gaps), gaps
        missing = {i for g in gaps for i in range(g["first_missing"], g["last_missing"] + 1)}
        assert sum(g["missing"] for g in gaps) == len(missing), "announced once each"
        assert not ids & missing, "a trade announced missing was also published"
        assert ids | missing == set(range(min(ids), max(ids) + 1)), "every other trade id was published"
        assert min(missing) > short, "the short break left nothing missing"
        assert len(missing) >= 80 - 50, "the snapshot brought back only the last 50"
    finally:
        c.close()
