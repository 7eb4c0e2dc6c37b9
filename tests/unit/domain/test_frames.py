"""Frame parsing: every Kraken v2 message type, exact numbers, and bad input that never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.kraken.frames import (
    Ack,
    BookFrame,
    Heartbeat,
    InstrumentFrame,
    OhlcFrame,
    ParseError,
    Pong,
    StatusFrame,
    TickerFrame,
    TradeFrame,
    parse_frame,
)
from tests.conftest import capture_files

pytestmark = pytest.mark.unit


def test_book_update_keeps_exact_tokens() -> None:
    raw = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":62802.5,'
           b'"qty":0.00005100}],"asks":[],"checksum":441069893,"timestamp":"2026-08-16T23:37:05.399046Z"}]}')
    frame = parse_frame(raw)
    assert isinstance(frame, BookFrame) and not frame.is_snapshot
    book = frame.books[0]
    assert book.bids == [("62802.5", "0.00005100")] and book.asks == []
    assert book.checksum == 441069893 and book.timestamp == "2026-08-16T23:37:05.399046Z"


def test_status_connection_id_beyond_2_53_is_exact() -> None:
    frame = parse_frame('{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"online",'
                        '"api_version":"v2","connection_id":15113583034416118705}]}')
    assert frame == StatusFrame("online", "v2", "2.0.10", 15113583034416118705)


def test_instrument_with_exponent_increments() -> None:
    frame = parse_frame('{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":'
                        '"BTC/USD","base":"BTC","quote":"USD","status":"online","qty_precision":8,'
                        '"qty_increment":1e-08,"price_precision":1,"price_increment":0.1,"cost_precision":5,'
                        '"qty_min":0.0001}]}}')
    assert isinstance(frame, InstrumentFrame)
    pair = frame.pairs[0]
    assert (pair.price_precision, pair.qty_precision) == (1, 8)
    assert pair.qty_increment == "0.00000001" and pair.price_increment == "0.1"


def test_trade_ticker_ohlc() -> None:
    trade = parse_frame('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",'
                        '"price":62803.8,"qty":0.00100000,"ord_type":"market","trade_id":84432123,'
                        '"timestamp":"2026-08-16T23:37:05.399046Z"}]}')
    assert isinstance(trade, TradeFrame) and trade.trades[0].qty == "0.00100000"
    assert trade.trades[0].trade_id == 84432123
    ticker = parse_frame('{"channel":"ticker","type":"snapshot","data":[{"symbol":"BTC/USD","bid":62802.5,'
                         '"bid_qty":0.02987767,"ask":62802.6,"ask_qty":1.09074394,"last":62802.6,'
                         '"volume":1234.56789012,"vwap":62500.1,"low":61000.0,"high":63000.0,"change":802.6,'
                         '"change_pct":1.29}]}')
    assert isinstance(ticker, TickerFrame) and ticker.tickers[0].low == "61000.0"
    ohlc = parse_frame('{"channel":"ohlc","type":"update","data":[{"symbol":"BTC/USD","open":62800.0,'
                       '"high":62810.0,"low":62790.0,"close":62805.0,"vwap":62801.2,"trades":42,'
                       '"volume":1.50000000,"interval_begin":"2026-08-16T23:37:00.000000000Z","interval":1,'
                       '"timestamp":"2026-08-16T23:38:00.000000Z"}],"timestamp":"2026-08-16T23:37:05Z"}')
    assert isinstance(ohlc, OhlcFrame) and ohlc.candles[0].volume == "1.50000000"
    assert ohlc.candles[0].trades == 42


def test_acks_errors_heartbeat_pong() -> None:
    ack = parse_frame('{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,'
                      '"symbol":"BTC/USD"},"success":true,"time_in":"2026-08-16T23:37:03.374788Z",'
                      '"time_out":"2026-08-16T23:37:03.374824Z"}')
    assert isinstance(ack, Ack) and ack.success and ack.depth == 25 and ack.symbol == "BTC/USD"
    err = parse_frame('{"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,'
                      '"symbol":"XBT/USD","time_in":"x","time_out":"y"}')
    assert isinstance(err, Ack) and not err.success and err.symbol == "XBT/USD"
    assert err.error == "Currency pair not supported XBT/USD"
    rate = parse_frame('{"Error": "Exceeded msg rate"}')
    assert isinstance(rate, Ack) and rate.error == "Exceeded msg rate"
    assert isinstance(parse_frame('{"channel":"heartbeat"}'), Heartbeat)
    assert parse_frame('{"method":"pong","req_id":101,"time_in":"a","time_out":"b"}') == Pong(101, "a", "b")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":6', "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1,2]", "expected an object"),
        (b'{"channel":"orders"}', "unknown channel 'orders'"),
        (b'{"channel":"book","type":"delta","data":[]}', "expected 'snapshot' or 'update'"),
        (b'{"channel":"book","type":"update","data":{}}', "'data' must be a list"),
        (b'{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":"abc","qty":1}]}]}',
         "expected a decimal number"),
        (b'{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":1.5}]}]}', "KeyError"),
        (b'{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[],"checksum":"12"}]}',
         "expected an integer"),
        (b'{"method":"subscribe","success":"yes"}', "expected true or false"),
        (b'{"hello":"world"}', "neither 'channel' nor a known 'method'"),
    ],
)
def test_malformed_frames_give_a_reason(raw: bytes, reason: str) -> None:
    result = parse_frame(raw)
    assert isinstance(result, ParseError)
    assert reason in result.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parse_frame(raw)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_truncated_capture_frames_never_raise(data: st.DataObject) -> None:
    lines = [line for path in capture_files()[:3] for line in path.read_bytes().splitlines()[:20]]
    line = data.draw(st.sampled_from(lines))
    cut = data.draw(st.integers(0, len(line) - 1))
    assert isinstance(parse_frame(line[:cut]), ParseError)


def test_every_capture_line_parses() -> None:
    for path in capture_files():
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            result = parse_frame(line)
            assert not isinstance(result, ParseError), (path.name, number, result)


def test_fast_book_path_equals_general_parser() -> None:
    """Every book line of every capture parses identically through the fast path and the general one."""
    from models.kraken.frames import _DECODER, parse_object

    checked = 0
    for path in capture_files():
        for line in path.read_text().splitlines():
            if line.startswith('{"channel":"book"'):
                assert parse_frame(line) == parse_object(_DECODER.decode(line))
                checked += 1
    assert checked == 767


@pytest.mark.parametrize(
    "raw",
    [
        # keys reordered, whitespace, two pairs in one frame, exponent tokens, asks before bids
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"qty":1.50,"price":2.0}],"asks":[]}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price": 2.0, "qty": 1.50}]}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":2.0,"qty":1.5}]},'
        '{"symbol":"Z/Y","asks":[{"price":3.0,"qty":0.5}]}]}',
        '{"channel":"book","type":"snapshot","data":[{"asks":[{"price":3.0,"qty":5.325e-05}],'
        '"bids":[{"price":2.0,"qty":1E+2}],"checksum":1,"symbol":"X/Y"}]}',
        # fast-path layouts: asks first with both sides, one side only, side missing, no checksum
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","asks":[{"price":3.0,"qty":0.5},'
        '{"price":3.1,"qty":0.6}],"bids":[{"price":2.0,"qty":1.5}],"checksum":7}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[],"asks":[{"price":3.0,"qty":0.5}],'
        '"checksum":7,"timestamp":"t"}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":2.0,"qty":1.5}]}]}',
        '{"channel":"book","type":"snapshot","data":[{"symbol":"X/Y","bids":[{"price":2,"qty":0}],'
        '"asks":[{"price":3.0,"qty":0.5}],"timestamp":5}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":02.0,"qty":1.5}]}]}',
    ],
)
def test_fast_book_path_falls_back_on_unusual_layouts(raw: str) -> None:
    from models.kraken.frames import _DECODER, parse_object

    try:
        expected = parse_object(_DECODER.decode(raw))
    except Exception as exc:  # a shape the general parser refuses (the last: a timestamp that is no string)
        expected = exc
    result = parse_frame(raw)
    if isinstance(expected, Exception):
        assert isinstance(result, ParseError)
    else:
        assert result == expected


@pytest.mark.parametrize(
    "raw",
    [
        '{"channel":"book","type":"update","data":{"symbol":"X/Y","bids":[{"price":2.0,"qty":1.5}]}}',
        '{"channel":"book","type":"update","data":["X/Y"]}',
        '{"channel":"book","type":"refresh","data":[{"symbol":"X/Y","bids":[{"price":2.0,"qty":1.5}]}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":{"price":2.0,"qty":1.5}}]}',
    ],
)
def test_fast_book_path_leaves_bad_shapes_to_the_general_parser(raw: str) -> None:
    assert isinstance(parse_frame(raw), ParseError)


def test_level_shaped_object_outside_the_book_cannot_fool_the_fast_path() -> None:
    raw = ('{"channel":"book","type":"update","x":{"price":1.0,"qty":2.0},'
           '"data":[{"symbol":"S","bids":[{"qty":4.0,"price":3.0}],"asks":[]}]}')
    frame = parse_frame(raw)
    assert isinstance(frame, BookFrame) and frame.books[0].bids == [("3.0", "4.0")]


def test_memoryview_input_parses() -> None:
    assert isinstance(parse_frame(memoryview(b'{"channel":"heartbeat"}')), Heartbeat)
    assert isinstance(parse_frame(memoryview(b"\xff")), ParseError)
