"""The L2 book against Kraken's documented vectors and a simple reference book (property tests)."""

from __future__ import annotations

import random
from bisect import bisect_left
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from krakenflow.client import LocalBook
from models.book import DEPTHS, L2Book
from models.numbers import format_ticks
from tests.conftest import ReferenceBook

pytestmark = pytest.mark.unit

Levels = list[tuple[str, str]]


def test_docs_btcusd_worked_example_checksum() -> None:
    """Kraken's book v2 guide: this snapshot hashes to 3310070434 (pinned in Kraken's Rust SDK too)."""
    asks = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
            ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
            ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
            ("45299.5", "0.18772827")]
    bids = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
            ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
            ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
            ("45276.6", "0.15445238")]
    for precision in ((1, 8), None):
        book = L2Book("BTC/USD", 10, precision)
        delta = book.apply_snapshot(bids, asks, 3310070434)
        assert delta.checksum == 3310070434 and delta.checksum_ok
        assert book.checksum_text().startswith("4528521000004528641545719534528661545711094528961545609114")


def test_float_rendering_breaks_checksum_but_precision_restores_it() -> None:
    # python-kraken-sdk's recorder wrote 0.8 for 0.80000000: only the instrument precision fixes it
    exact = L2Book("X/Y", 10, (1, 8))
    wire = L2Book("X/Y", 10, None)
    exact.apply_snapshot([("100.0", "0.8")], [("100.1", "4.0")])
    wire.apply_snapshot([("100.0", "0.8")], [("100.1", "4.0")])
    assert exact.checksum_text() == "1001" "400000000" "1000" "80000000"
    assert wire.checksum_text() == "10014010008"


def test_update_applies_in_order_and_deletes_and_truncates_after_every_level() -> None:
    book = L2Book("BTC/USD", 3, (1, 8))
    book.apply_snapshot([("10.0", "1"), ("9.0", "1"), ("8.0", "1")], [("11.0", "1"), ("12.0", "1"), ("13.0", "1")])
    # same level twice in one message: the last one wins; 9.5 pushes 8.0 out at once (Kraken sends no
    # delete), so deleting 10.0 afterwards leaves two bids, not 8.0 back at the edge
    delta = book.apply_update([("9.5", "2"), ("9.5", "3"), ("10.0", "0")], [])
    assert book.levels("bids") == [("9.5", "3.00000000"), ("9.0", "1.00000000")]
    # the truncation delete is explicit, right after the insert that caused it
    assert delta.bids == [("9.5", "2.00000000"), ("8.0", "0.00000000"), ("9.5", "3.00000000"),
                          ("10.0", "0.00000000")]
    delta = book.apply_update([("9.7", "1"), ("9.6", "1"), ("8.0", "4")], [])
    assert book.levels("bids") == [("9.7", "1.00000000"), ("9.6", "1.00000000"), ("9.5", "3.00000000")]
    assert delta.bids == [("9.7", "1.00000000"), ("9.6", "1.00000000"), ("9.0", "0.00000000"),
                          ("8.0", "4.00000000"), ("8.0", "0.00000000")]


def test_crossed_book_is_reported() -> None:
    book = L2Book("BTC/USD", 10, (1, 8))
    assert not book.apply_snapshot([("10.0", "1")], [("10.1", "1")]).crossed
    assert book.apply_update([("10.1", "1")], []).crossed
    assert book.apply_update([("10.1", "0")], []).crossed is False


def test_precision_update_rekeys_book_exactly() -> None:
    book = L2Book("MINA/GBP", 10, (4, 8))
    book.apply_snapshot([("0.0280", "10.5")], [("0.0290", "1")])
    before = book.checksum()
    book.set_precision((5, 8))
    assert book.levels("bids") == [("0.02800", "10.50000000")]
    assert book.checksum() != before  # Kraken hashes the new rendering
    book.set_precision((4, 8))
    assert book.checksum() == before
    with pytest.raises(ValueError):
        book.set_precision((2, 8))  # 0.0280 cannot be written with 2 decimals: book kept as it was
    assert book.precision == (4, 8) and book.checksum() == before


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        L2Book("X/Y", 0)


# -- property tests against the reference book ----------------------------------------------------


def _token(ticks: int, precision: int, rng: random.Random) -> str:
    """Kraken's rendering, sometimes re-serialised the way recorders do (zeros lost, exponents)."""
    text = format_ticks(ticks, precision)
    style = rng.random()
    if style < 0.1 and "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    elif style < 0.15 and ticks:
        text = f"{Decimal(text):.6e}"
    return text


def _messages(rng: random.Random, depth: int, pp: int, qp: int, n_updates: int,
              edge_rate: float = 0.3) -> list[tuple[bool, Levels, Levels]]:
    """A snapshot, then random updates of which about ``edge_rate`` take Kraken's edge shape on a full
    side: an insert pushes the edge level out, then later levels of the same message cancel levels
    inside, set or delete the pushed-out price, or refill beyond it (what truncation per level is for)."""
    mid = rng.randint(depth + 50, 10 ** min(pp + 6, 12))  # in ticks: tiny prices when pp is large
    spread = rng.randint(1, 5)
    bounds = ((max(1, mid - 3 * depth), mid), (mid + spread, mid + spread + 3 * depth))  # ticks, per side
    live: tuple[set[int], set[int]] = (set(), set())  # every level set and not deleted (untruncated)
    held: tuple[list[int], list[int]] = ([], [])  # the book truncated per level: keys, best first

    def key(i: int, ticks: int) -> int:
        return ticks if i else -ticks

    def put(i: int, ticks: int, present: bool = True) -> tuple[str, str]:
        keys, k = held[i], key(i, ticks)
        j = bisect_left(keys, k)
        there = j < len(keys) and keys[j] == k
        if present:
            live[i].add(ticks)
            if not there:
                keys.insert(j, k)
                del keys[depth:]
            return _token(ticks, pp, rng), _token(rng.randint(1, 10 ** min(qp + 3, 12)), qp, rng)
        live[i].discard(ticks)
        if there:
            del keys[j]
        return _token(ticks, pp, rng), _token(0, qp, rng)

    def level(i: int) -> tuple[str, str]:
        if live[i] and rng.random() < 0.3:
            return put(i, rng.choice(sorted(live[i])), False)
        return put(i, rng.randint(*bounds[i]))

    def edge(i: int) -> Levels | None:
        keys = held[i]
        first, last = sorted((key(i, bounds[i][0]), key(i, bounds[i][1])))
        if len(keys) < depth or first >= keys[-1]:
            return None
        inserted = rng.randrange(first, keys[-1])
        if inserted in keys:
            return None
        pushed = keys[-1]
        out = [put(i, abs(inserted))]
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.4 and keys:  # a level inside cancelled: the exchange refills, never with `pushed`
                out.append(put(i, abs(rng.choice(keys)), False))
            elif roll < 0.7:  # the pushed-out price again: set or deleted
                out.append(put(i, abs(pushed), rng.random() < 0.5))
            elif keys and keys[-1] + 3 <= last:  # a refill beyond the edge
                out.append(put(i, abs(keys[-1] + rng.randint(1, 3))))
        return out

    snap_b = [level(0) for _ in range(rng.randint(0, depth + 20))]
    snap_a = [level(1) for _ in range(rng.randint(0, depth + 20))]
    for i in (0, 1):  # a snapshot is truncated once, after all its levels
        held[i][:] = sorted(key(i, t) for t in live[i])[:depth]
    messages = [(True, snap_b, snap_a)]
    for _ in range(n_updates):
        b = a = None
        if rng.random() < edge_rate:
            if rng.random() < 0.5:
                b = edge(0)
            else:
                a = edge(1)
        b = b if b is not None else [level(0) for _ in range(rng.randint(0, 4))]
        a = a if a is not None else [level(1) for _ in range(rng.randint(0, 4))]
        messages.append((False, b, a))
    return messages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    depth=st.sampled_from(DEPTHS),
    pp=st.integers(0, 10),
    qp=st.integers(0, 10),
    n_updates=st.integers(1, 60),
)
def test_book_matches_reference_and_deltas_rebuild_it(seed: int, depth: int, pp: int, qp: int, n_updates: int) -> None:
    rng = random.Random(seed)
    book = L2Book("T/USD", depth, (pp, qp))
    ref = ReferenceBook(depth, pp, qp)
    consumer = LocalBook("T-USD")  # the client library's book
    for is_snapshot, bids, asks in _messages(rng, depth, pp, qp, n_updates):
        if is_snapshot:
            ref.snapshot(bids, asks)
            delta = book.apply_snapshot(bids, asks, ref.checksum())
        else:
            ref.update(bids, asks)
            delta = book.apply_update(bids, asks, ref.checksum())
        assert book.levels("bids") == ref.text(ref.sorted_bids())
        assert book.levels("asks") == ref.text(ref.sorted_asks())
        assert delta.checksum_ok, (delta.checksum, delta.expected_checksum)
        (consumer.replace if delta.is_snapshot else consumer.apply)(delta.bids, delta.asks)
        assert consumer.bids == book.levels("bids")
        assert consumer.asks == book.levels("asks")
        assert consumer.verify(delta.checksum)  # the client's checksum of its own book is the engine's


def test_wrong_checksum_is_detected() -> None:
    book = L2Book("BTC/USD", 10, (1, 8))
    good = book.apply_snapshot([("10.0", "1")], [("10.1", "1")])
    bad = book.apply_update([("10.0", "2")], [], checksum=good.checksum)
    assert bad.checksum_ok is False and bad.checksum != good.checksum
    assert book.apply_update([], [], checksum=None).checksum_ok is None
