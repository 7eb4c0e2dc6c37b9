"""Truncation after every level (Kraken's rule), with both engines and the client rebuilding from deltas.

Kraken publishes each level change inside the subscriber's top N at that instant and never deletes a
level pushed out of scope. A level pushed out by an insert and cancelled later in the same message is
therefore never deleted on the wire: a book truncated once per message keeps it and fails every checksum
from then on. No stored real capture has that shape; the simulator's seed-11 DOGE/USD session does.
"""

from __future__ import annotations

from typing import Any

import pytest

from cli.verify import verify_file
from krakenflow.client import LocalBook
from models import native
from models.book import L2Book
from models.checksum import checksum
from tests.unit.domain.test_native import SIM_RECORDING, Engine, requires_native, run_session

pytestmark = pytest.mark.unit

#: ``krakenflow sim --seed 11`` recorded by ``krakenflow record --symbols DOGE/USD --depth 10`` (README).
RECORDING = SIM_RECORDING
#: The recording's first message of the edge shape (line 802).
EDGE_CHECKSUM = 3324163276

engines = pytest.mark.parametrize("on", [False, pytest.param(True, marks=requires_native)], ids=["python", "native"])


def _book(on: bool, depth: int) -> Any:
    return native.Book("X/USD", depth, (1, 8)) if on else L2Book("X/USD", depth, (1, 8))


def _levels(*prices: str, qty: str = "1.00000000") -> list[tuple[str, str]]:
    return [(p, qty) for p in prices]


ASKS = _levels("101.0", "102.0")
#: The exchange's bids: the subscriber sees the top 10 (100.0 to 91.0); 90.0 is the 11th.
BIDS = _levels(*(f"{p}.0" for p in range(100, 90, -1)))


@engines
def test_a_pushed_out_level_cancelled_in_the_same_message_is_gone(on: bool) -> None:
    """At the exchange, in one event: 95.5 is inserted (91.0 leaves the top 10: no delete sent), 91.0 is
    cancelled (out of scope: not sent), 100.0 is cancelled (sent) and 90.0 refills the 10th place (sent)."""
    book, client = _book(on, 10), LocalBook("X-USD")
    snapshot = book.apply_snapshot(BIDS, ASKS)
    client.replace(snapshot.bids, snapshot.asks)
    true_bids = [("99.0", "1.00000000"), ("98.0", "1.00000000"), ("97.0", "1.00000000"), ("96.0", "1.00000000"),
                 ("95.5", "2.00000000"), ("95.0", "1.00000000"), ("94.0", "1.00000000"), ("93.0", "1.00000000"),
                 ("92.0", "1.00000000"), ("90.0", "3.00000000")]
    message = [("95.5", "2.00000000"), ("100.0", "0.00000000"), ("90.0", "3.00000000")]
    delta = book.apply_update(message, [], checksum(ASKS, true_bids))
    assert book.levels("bids") == true_bids  # truncated once per message, 91.0 would stay and 90.0 go
    assert delta.checksum_ok
    assert list(delta.bids) == [message[0], ("91.0", "0.00000000"), *message[1:]]
    client.apply(delta.bids, delta.asks)
    assert client.bids == true_bids and client.verify(delta.checksum)


@engines
def test_a_pushed_out_level_set_again_in_the_same_message_stays(on: bool) -> None:
    """95.5 pushes 91.0 out, then 100.0 is cancelled and 91.0 is the 10th again (sent): the delta deletes
    91.0 right after the insert, not at the end, so a client applying it in order keeps 91.0."""
    book, client = _book(on, 10), LocalBook("X-USD")
    snapshot = book.apply_snapshot(BIDS, ASKS)
    client.replace(snapshot.bids, snapshot.asks)
    message = [("95.5", "2.00000000"), ("100.0", "0.00000000"), ("91.0", "1.00000000")]
    delta = book.apply_update(message, [])
    assert [p for p, _ in book.levels("bids")] == ["99.0", "98.0", "97.0", "96.0", "95.5", "95.0", "94.0", "93.0",
                                                    "92.0", "91.0"]
    assert list(delta.bids) == [message[0], ("91.0", "0.00000000"), *message[1:]]
    client.apply(delta.bids, delta.asks)
    assert client.bids == book.levels("bids") and client.verify(delta.checksum)


def test_the_recording_holds_the_edge() -> None:
    lines = RECORDING.read_bytes().splitlines()
    assert len(RECORDING.read_bytes()) < 300_000
    edge = next(n for n, line in enumerate(lines) if b'"checksum":%d' % EDGE_CHECKSUM in line)
    assert 0 < edge < len(lines) - 20, "the fixture must hold the edge message and updates after it"


@engines
def test_every_checksum_of_the_simulator_recording_verifies(on: bool) -> None:
    lines = [ln for ln in RECORDING.read_bytes().splitlines() if ln.strip()]
    trace, books = run_session(lines, on)
    assert books["DOGE/USD"][3] == ("krakenflow_native" if on else "models.book")
    deltas = [t for t in trace if t[1] != "reject"]
    assert len(deltas) == len(trace) > 800
    assert [t for t in deltas if not t[7]] == [], "checksums failed"
    assert any(t[6] == EDGE_CHECKSUM for t in deltas)
    client = LocalBook("DOGE-USD")  # the consumers' book, rebuilt from the deltas alone
    for _, _, is_snapshot, bids, asks, computed, _, _, _ in deltas:
        (client.replace if is_snapshot else client.apply)(bids, asks)
        assert client.verify(computed)
    assert (client.bids, client.asks) == books["DOGE/USD"][:2]


@engines
def test_krakenflow_verify_passes_the_simulator_recording(on: bool) -> None:
    with Engine(on):
        report = verify_file(str(RECORDING))
    pair = report.pairs["DOGE/USD"]
    assert (pair.checked, pair.ok, pair.failed, report.malformed) == (808, 808, 0, [])

