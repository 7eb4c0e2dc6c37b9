import pytest

from models.candles import finalize, fold

pytestmark = pytest.mark.unit


def trade(trade_id: int, price: str, qty: str, side: str, ts: int) -> dict[str, object]:
    return {"exchange": "kraken", "symbol": "BTC-USD", "exchange_symbol": "BTC/USD", "trade_id": trade_id,
            "price": price, "qty": qty, "side": side, "ts_exchange_ns": ts}


def test_fold_builds_ohlcv_and_skips_trades_already_counted() -> None:
    t0 = 1_795_242_360_000_000_000 + 5_000_000_000  # 5 s into a minute
    c = fold(None, trade(1, "100.0", "1.00000000", "buy", t0), "1m")
    c = fold(c, trade(2, "101.5", "0.50000000", "sell", t0 + 1), "1m")
    c = fold(c, trade(3, "99.9", "2.00000000", "buy", t0 + 2), "1m")
    assert fold(c, trade(2, "150.0", "9.00000000", "buy", t0 + 3), "1m") is None  # replayed
    out = finalize(c)
    assert (out["open"], out["high"], out["low"], out["close"]) == ("100.0", "101.5", "99.9", "99.9")
    assert out["volume"] == "3.50000000" and out["trades"] == 3
    assert out["buy_volume"] == "3.00000000" and out["sell_volume"] == "0.50000000"
    assert out["vwap"] == "100.2"  # (100 + 50.75 + 199.8) / 3.5 = 100.1571... -> 1 decimal, half-even
    assert out["interval_begin"].endswith(":00.000000000Z") and out["interval_begin_ns"] == t0 - 5_000_000_000
    assert out["interval_end_ns"] - out["interval_begin_ns"] == 60_000_000_000


def _trade(trade_id: int, second: float, price: str = "100.0", symbol: str = "BTC-USD") -> dict[str, object]:
    return {"exchange": "kraken", "symbol": symbol, "exchange_symbol": symbol.replace("-", "/"),
            "trade_id": trade_id, "side": "buy", "price": price, "qty": "1.0",
            "ts_exchange_ns": 1_796_000_000_000_000_000 - 1_796_000_000_000_000_000 % 3_600_000_000_000
            + int(second * 1e9)}


def test_windows_close_on_the_partitions_exchange_time_not_the_clock() -> None:
    from models.candles import CandleClock

    clock = CandleClock(grace_ns=2_000_000_000)
    assert clock.fold(_trade(1, 10.0), 0)[0] == []
    assert clock.fold(_trade(2, 61.0), 0)[0] == []  # the first minute is open for 2 s of grace
    assert clock.fold(_trade(3, 59.5), 0)[0] == []  # late, within the grace: still counted in minute 0
    closed, _ = clock.fold(_trade(1, 62.5, symbol="ETH-USD"), 0)  # another pair moves the partition's time
    assert [(c["symbol"], c["interval"], c["trades"], c["last_trade_id"]) for c in closed] == [
        ("BTC-USD", "1m", 2, 3)]
    assert clock.fold(_trade(4, 59.9), 0)[0] == [] and clock.late == 1  # its minute has closed
    assert clock.fold(_trade(2, 70.0), 1)[0] == []  # another partition has its own watermark
    assert clock.open_candle("BTC-USD", "1m")["trades"] == 1  # type: ignore[index]


def test_the_same_trades_give_the_same_candles_whatever_the_arrival_pace() -> None:
    from models.candles import CandleClock

    trades = [_trade(i, i * 7.3, price=f"{100 + i % 5}.0") for i in range(1, 400)]
    runs = []
    for chunk in (1, 50):  # one by one, or in bursts (a backlog, a fast replay): no clock is read
        clock = CandleClock(grace_ns=10_000_000_000)
        closed = []
        for start in range(0, len(trades), chunk):
            for t in trades[start:start + chunk]:
                closed += clock.fold(t, 3)[0]
        runs.append(closed)
    assert runs[0] == runs[1] and len(runs[0]) > 40
    assert all(c["trades"] > 0 for c in runs[0])
