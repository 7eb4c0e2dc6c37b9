"""Trades, tickers, whale alerts and summaries from the pure processor."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.marketdata import WhaleThresholds, summary
from models.processor import BookProcessor, ProcessorSettings, RawRecord
from models.records import as_dict

pytestmark = pytest.mark.unit

TRADES = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":62806.2,'
          '"qty":0.20777800,"ord_type":"market","trade_id":7,"timestamp":"2026-11-21T06:25:38.389020Z"},'
          '{"symbol":"BTC/USD","side":"sell","price":62805.0,"qty":4.00000000,"ord_type":"limit","trade_id":8,'
          '"timestamp":"2026-11-21T06:25:38.389020Z"}]}')
TICKER = ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":62802.5,"bid_qty":0.02987767,'
          '"ask":62802.6,"ask_qty":1.09074394,"last":62802.6,"volume":1234.56789012,"vwap":62500.1,"low":61000.0,'
          '"high":63000.0,"change":802.6,"change_pct":1.29,"timestamp":"2026-11-21T06:25:39.000000Z"}]}')


def run(processor: BookProcessor, raw: str, offset: int) -> list[tuple[str, str, dict[str, object]]]:
    out: list = []
    processor.process_into(RawRecord(raw.encode(), b"BTC/USD", 2, offset, 1), out)
    return [(o.topic, o.key, as_dict(o.record)) for o in out]


def test_trades_have_deterministic_ids_and_are_emitted_once() -> None:
    processor = BookProcessor(ProcessorSettings(whales=WhaleThresholds(Decimal("200000"))))
    first = run(processor, TRADES, 10)
    trades = [v for t, _, v in first if t == "trades"]
    assert [t["event_id"] for t in trades] == ["kraken:BTC-USD:7", "kraken:BTC-USD:8"]
    assert trades[0]["price"] == "62806.2" and trades[0]["qty"] == "0.20777800" and trades[0]["side"] == "buy"
    assert trades[0]["ts_exchange_ns"] == 1795242338389020000 and trades[0]["raw_offset"] == 10
    whales = [v for t, _, v in first if t == "metrics"]
    assert [(w["event_id"], w["notional"]) for w in whales] == [("kraken:BTC-USD:8", "251220.000000000")]
    assert run(processor, TRADES, 10) == []  # the same raw record again (after a crash)
    assert run(processor, TRADES, 11) == []  # the same trades in another frame (a trade snapshot)


def test_a_fresh_processor_replaying_the_same_frames_gives_the_same_ids() -> None:
    ids = [[v["event_id"] for t, _, v in run(BookProcessor(ProcessorSettings()), TRADES, 3) if t == "trades"]
           for _ in range(2)]
    assert ids[0] == ids[1]


def test_tickers_are_normalized_and_feed_the_summary() -> None:
    processor = BookProcessor(ProcessorSettings())
    [(topic, key, ticker)] = run(processor, TICKER, 1)
    assert (topic, key) == ("tickers", "BTC-USD")
    assert ticker["bid"] == "62802.5" and ticker["volume"] == "1234.56789012" and ticker["change_pct"] == "1.29"
    run(processor, TRADES, 2)
    st = processor.pairs["BTC/USD"]
    s = summary(st.symbol, st.norm, st.market, (("62802.5", "1.0"), ("62802.6", "2.0")), st.state)
    assert s["last"] == "62805.0" and s["volume_24h"] == "1234.56789012" and s["high_24h"] == "63000.0"
    assert s["spread"] == "0.1" and s["last_trade_id"] == 8


def test_whale_thresholds_parse_per_pair() -> None:
    whales = WhaleThresholds.parse("100000", ("BTC/USD=250000", "ETH/USD = 50000"))
    assert whales.of("BTC/USD") == Decimal("250000") and whales.of("ETH/USD") == Decimal("50000")
    assert whales.of("SOL/USD") == Decimal("100000")


def trade_frame(kind: str, ids: list[int]) -> str:
    items = ",".join(f'{{"symbol":"BTC/USD","side":"buy","price":62806.2,"qty":0.1,"ord_type":"market",'
                     f'"trade_id":{i},"timestamp":"2026-11-21T06:25:38.389020Z"}}' for i in ids)
    return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'


def test_a_jump_in_trade_ids_is_announced_with_the_missing_range() -> None:
    processor = BookProcessor(ProcessorSettings())
    run(processor, TRADES, 1)  # ids 7, 8
    # a snapshot after a reconnect, newest first: 9 and 10 were never received
    out = run(processor, trade_frame("snapshot", [13, 12, 11, 8, 7]), 2)
    assert [v["trade_id"] for t, _, v in out if t == "trades"] == [11, 12, 13]
    [gap] = [v for t, _, v in out if t == "metrics"]
    assert (gap["metric"], gap["first_missing"], gap["last_missing"], gap["missing"]) == ("trade_gap", 9, 10, 2)
    assert gap["symbol"] == "BTC-USD" and gap["raw_offset"] == 2 and "never received" in str(gap["reason"])
    assert [t for t, _, _ in run(processor, trade_frame("update", [14]), 3)] == ["trades"]  # contiguous again
    assert processor.counters["trades_missing"] == 2
