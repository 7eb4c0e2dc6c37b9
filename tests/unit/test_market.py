"""Market routing: the single-update fast path and the general path give the same results."""

from __future__ import annotations

import pytest

from models.book import BookDelta
from models.frames import BookData, BookFrame, InstrumentFrame, PairInfo
from models.market import BookError, Market

pytestmark = pytest.mark.unit


def _market() -> Market:
    market = Market()
    market.on_frame(InstrumentFrame(True, [PairInfo("BTC/USD", "BTC", "USD", "online", 1, 8)]))
    return market


def _frame(is_snapshot: bool, *books: BookData) -> BookFrame:
    return BookFrame(is_snapshot, list(books))


def test_update_before_snapshot_is_an_error() -> None:
    [result] = _market().on_frame(_frame(False, BookData("BTC/USD", [("1.0", "1")], [], None, None)))
    assert isinstance(result, BookError) and "before any snapshot" in result.reason


def test_bad_token_in_update_is_an_error_and_keeps_the_market_going() -> None:
    market = _market()
    market.on_frame(_frame(True, BookData("BTC/USD", [("10.0", "1")], [("10.1", "1")], None, None)))
    [bad] = market.on_frame(_frame(False, BookData("BTC/USD", [("10.05", "1")], [], None, None)))
    assert isinstance(bad, BookError) and "precision is stale" in bad.reason
    [good] = market.on_frame(_frame(False, BookData("BTC/USD", [("9.9", "2")], [], None, None)))
    assert isinstance(good, BookDelta) and good.bids == [("9.9", "2.00000000")]


def test_single_and_multi_pair_updates_agree() -> None:
    snap = BookData("BTC/USD", [("10.0", "1")], [("10.1", "1")], None, None)
    other = BookData("ETH/USD", [("5.0", "1")], [("5.1", "1")], None, None)
    update = BookData("BTC/USD", [("10.0", "0"), ("9.8", "3")], [("10.2", "1")], None, None)
    one, two = _market(), _market()
    one.on_frame(_frame(True, snap))
    two.on_frame(_frame(True, snap, other))
    [fast] = one.on_frame(_frame(False, update))
    general = two.on_frame(_frame(False, update, other))
    assert isinstance(fast, BookDelta) and fast == general[0]
    assert fast.bids == [("10.0", "0.00000000"), ("9.8", "3.00000000")] and not fast.crossed
    assert len(general) == 2 and isinstance(general[1], BookDelta)


def test_instrument_update_mid_stream_rekeys_live_book_and_acks_set_depth() -> None:
    from models.frames import parse_frame

    market = Market()
    frames = [
        '{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"MINA/GBP"},"success":true}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"MINA/GBP","bids":[{"price":0.0280,"qty":10.5}],'
        '"asks":[{"price":0.0290,"qty":1}],"checksum":0}]}',
        '{"channel":"instrument","type":"update","data":{"assets":[],"pairs":[{"symbol":"MINA/GBP","base":"MINA",'
        '"quote":"GBP","status":"online","price_precision":5,"qty_precision":8}]}}',
    ]
    for raw in frames:
        market.on_frame(parse_frame(raw))  # type: ignore[arg-type]
    book = market.books["MINA/GBP"]
    assert book.depth == 25
    assert book.precision == (5, 8)
    assert book.levels("bids") == [("0.02800", "10.50000000")]
