"""The stored records of the ``books`` table, versioned: encode, and decode or refuse.

A stored record that does not decode (corrupt bytes, an older layout, a missing field) raises
:class:`CodecError`; the store then treats the pair as untrusted and it resyncs, rather than failing
every frame of that pair. Keys:

* ``<pair>\\0meta`` -> :class:`Meta` as JSON with ``"v": VERSION``;
* ``<pair>\\0<b|a>\\0<page>`` -> ``{"g": generation, "l": {price: qty}}``: one price band of one side;
* ``\\0raw\\0<partition>`` -> ``<offset>[:<lock generation>]``: the last raw offset of that partition
  whose effects are stored, and the newest ingest lock generation seen on it;
* ``\\0committer\\0<partition>`` -> the transactional id that last took that partition on (exactly-once):
  the producer a new owner fences (``agents/transactions.py``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

import orjson

VERSION = 1


class CodecError(ValueError):
    """A stored record that cannot be trusted."""


def meta_key(symbol: str) -> bytes:
    return f"{symbol}\0meta".encode()


def page_key(symbol: str, side: int, page: int) -> bytes:
    return f"{symbol}\0{'ba'[side]}\0{page}".encode()


def watermark_key(partition: int) -> bytes:
    """The raw partition's last processed offset (a key no pair symbol can produce)."""
    return b"\0raw\0%d" % partition


def committer_key(partition: int) -> bytes:
    """The transactional id that last took the raw partition on (a key no pair symbol can produce)."""
    return b"\0committer\0%d" % partition


@dataclass(slots=True)
class Meta:
    """Everything about a pair's stored book except its levels."""

    symbol: str
    depth: int
    precision: list[int] | None
    has_book: bool
    state: str
    seq: int
    epoch: int
    last_partition: int
    last_offset: int
    ts_exchange_ns: int
    recv_ns: int
    next_grid_ns: int
    width: str
    pages: list[list[int]]
    generation: int
    checksum: int | None
    market: dict[str, Any]
    #: the precision the book last verified at: without it, a restored book re-keyed by a forged instrument
    #: frame could never tell the forgery from Kraken's change, and would resync in a loop
    verified_precision: list[int] | None = None
    verified_as_sent: bool = False  # verified before the pair's precision was known (models/session.py)


_META_FIELDS = tuple(f.name for f in fields(Meta))
#: fields added within layout 1 (those with a default): a record written before them restores without them
_OPTIONAL_FIELDS = frozenset(f.name for f in fields(Meta) if f.default is not MISSING)


def encode_meta(meta: Meta) -> bytes:
    # a shallow dict (orjson writes the nested lists and dicts): asdict's deep copy cost ~100 us a record
    return orjson.dumps({"v": VERSION, **{name: getattr(meta, name) for name in _META_FIELDS}})


def decode_meta(value: bytes) -> Meta:
    try:
        raw = orjson.loads(value)
        if not isinstance(raw, dict) or raw.get("v") != VERSION:
            raise CodecError(f"meta record of layout {raw.get('v') if isinstance(raw, dict) else '?'}, "
                             f"expected {VERSION}")
        meta = Meta(**{name: raw[name] for name in _META_FIELDS if name in raw or name not in _OPTIONAL_FIELDS})
        if not all(isinstance(p, list) and len(p) == 2 for p in meta.pages):
            raise CodecError("meta record lists malformed pages")
        verified = meta.verified_precision
        if verified is not None and not (isinstance(verified, list) and len(verified) == 2
                                         and all(type(n) is int for n in verified)):
            raise CodecError("meta record has a malformed verified precision")
        if not isinstance(meta.verified_as_sent, bool):
            raise CodecError("meta record has a malformed verified_as_sent")
        return meta
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"meta record does not decode: {type(exc).__name__}: {exc}") from None


def encode_page(generation: int, levels: dict[str, str]) -> bytes:
    return orjson.dumps({"g": generation, "l": levels})


def decode_page(value: bytes) -> tuple[int, dict[str, str]]:
    try:
        raw = orjson.loads(value)
        generation, levels = raw["g"], raw["l"]
        if not isinstance(generation, int) or not isinstance(levels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in levels.items()):
            raise CodecError("page record has fields of the wrong type")
        return generation, levels
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"page record does not decode: {type(exc).__name__}: {exc}") from None


def encode_watermark(offset: int, lock_gen: int | None) -> bytes:
    return b"%d" % offset if lock_gen is None else b"%d:%d" % (offset, lock_gen)


def decode_watermark(value: bytes) -> tuple[int, int | None]:
    """(offset, lock generation or None)."""
    offset, _, generation = value.partition(b":")
    try:
        return int(offset), int(generation) if generation else None
    except ValueError:
        raise CodecError(f"raw watermark {value[:40]!r} is not an offset") from None
