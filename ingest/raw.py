"""The ``kraken.raw`` record of one frame, as the ingest writes it (and ``krakenflow replay``)."""

from __future__ import annotations

from typing import Any

from models.session import RawRecord


def raw_record(text: str, recv_ns: int, connection_id: str, seq: int, key: str | None,
               lock_gen: int | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``kraken.raw`` record for one frame: (key, value, headers); shared by the ingest and replay.

    ``lock_gen`` is the generation of the ingest election in which the live ingest won the lock: the
    book agent refuses frames of an older generation than one it has seen on that partition, so an
    ingest that lost the lock (paused, partitioned away) cannot write into the books any more.
    """
    headers = [("recv_ns", str(recv_ns).encode()), ("conn_id", connection_id.encode()), ("seq", str(seq).encode())]
    if lock_gen is not None:
        headers.append(("lock_gen", str(lock_gen).encode()))
    return (key if key is not None else f"conn:{connection_id}").encode(), text.encode(), headers


def _header(headers: Any, name: str) -> bytes | None:
    """A header value from Kafka message headers (aiokafka's pairs, or a mapping in Faust's events)."""
    if not headers:
        return None
    if isinstance(headers, dict):
        value = headers.get(name)
        return value if isinstance(value, bytes) else None
    for key, value in headers:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def read_raw(value: bytes | None, key: bytes | None, partition: int, offset: int, headers: Any) -> RawRecord:
    """A ``kraken.raw`` record as the book session takes it, with its lineage from the headers."""
    recv, generation = _header(headers, "recv_ns"), _header(headers, "lock_gen")
    return RawRecord(value or b"", key, partition, offset, _int(recv), _int(generation))


def _int(value: bytes | None) -> int | None:
    """A header's integer; None for anything else (a forged header must not cost more than its frame:
    without ``lock_gen`` the frame is judged unauthenticated, without ``recv_ns`` it has no receive time)."""
    if not value or len(value) > 20 or not value.removeprefix(b"-").isdigit():
        return None
    return int(value)
