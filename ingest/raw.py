"""The ``kraken.raw`` record of one frame, as the ingest writes it (and ``krakenflow replay``)."""

from __future__ import annotations

from typing import Any

from models.kraken.frames import InstrumentFrame, parse_frame
from models.session import PRECISION_HEADER, RawRecord, precision_stamp


def raw_record(text: str, recv_ns: int, connection_id: str, seq: int, key: str | None,
               lock_gen: int | None = None, stamp: bytes | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``kraken.raw`` record for one frame: (key, value, headers); shared by the ingest and replay.

    ``lock_gen`` is the generation of the ingest election in which the live ingest won the lock: the
    book agent refuses frames of an older generation than one it has seen on that partition, so an
    ingest that lost the lock (paused, partitioned away) cannot write into the books any more.
    ``stamp`` is the ``prec`` header (:class:`PrecisionStamps`).
    """
    headers = [("recv_ns", str(recv_ns).encode()), ("conn_id", connection_id.encode()), ("seq", str(seq).encode())]
    if lock_gen is not None:
        headers.append(("lock_gen", str(lock_gen).encode()))
    if stamp is not None:
        headers.append((PRECISION_HEADER, stamp))
    return (key if key is not None else f"conn:{connection_id}").encode(), text.encode(), headers


class PrecisionStamps:
    """The instrument precisions a writer has seen, stamped on each frame it writes (``models.session``'s
    ``PRECISION_HEADER``): a book is then formatted by its own partition's records alone."""

    def __init__(self) -> None:
        self.known: dict[str, bytes] = {}

    def stamp(self, text: str, key: str | None) -> bytes:
        """The ``prec`` header of a frame: its pair's precision (``b""``: none known yet, and on frames of no
        pair, which says the writer stamps). An instrument frame is taken in first: it precedes the book
        frames of its connection, and of the others, as Kraken sent them."""
        if key is not None:
            return self.known.get(key, b"")
        if text.startswith('{"channel":"instrument"'):
            frame = parse_frame(text)  # rare (a snapshot per connection, then changes); a bad one informs nothing
            if isinstance(frame, InstrumentFrame):
                for pair in frame.pairs:
                    self.known[pair.symbol] = precision_stamp((pair.price_precision, pair.qty_precision))
        return b""


def read_raw(value: bytes | None, key: bytes | None, partition: int, offset: int, headers: Any) -> RawRecord:
    """A ``kraken.raw`` record as the book session takes it, with its lineage from the headers."""
    recv = generation = stamp = None
    if isinstance(headers, dict):
        recv, generation, stamp = headers.get("recv_ns"), headers.get("lock_gen"), headers.get(PRECISION_HEADER)
    elif headers:
        for name, header in headers:  # one pass: this runs for every frame
            if name == "recv_ns":
                recv = header
            elif name == "lock_gen":
                generation = header
            elif name == PRECISION_HEADER:
                stamp = header
    return RawRecord(value or b"", key, partition, offset, _int(recv), _int(generation),
                     stamp if isinstance(stamp, bytes) else None)


def _int(value: Any) -> int | None:
    """A header's integer; None for anything else (a forged header must not cost more than its frame:
    without ``lock_gen`` the frame is judged unauthenticated, without ``recv_ns`` it has no receive time)."""
    if not isinstance(value, bytes) or not value or len(value) > 20 or not value.removeprefix(b"-").isdigit():
        return None
    return int(value)
