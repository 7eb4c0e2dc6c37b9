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
