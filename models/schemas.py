"""JSON Schema (draft 2020-12) of each output record, derived from its class in :mod:`models.records`.

The schema follows the class field by field: every field is required (``null`` where the type allows
``None``), no other field is allowed, decimal strings must look like decimals (never floats), and
``schema_version`` is fixed to the class's. :data:`CONSTRAINTS` adds what a type cannot say (the
``metric`` discriminator of ``kraken.metrics``, the book states). Pure: no I/O; ``app/schemas.py``
writes the files.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from models import records

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: a decimal as Kraken writes it: digits, optional fraction, optional exponent; never a JSON number
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"}
LEVEL = {"type": "array", "prefixItems": [DECIMAL, DECIMAL], "items": False, "minItems": 2,
         "description": "[price, qty] as decimal strings; qty 0 deletes the level"}

#: string fields that carry decimals, per record (prices, quantities, notionals, volumes)
_DECIMALS = {"best_bid", "best_ask", "spread", "mid", "price", "qty", "notional", "threshold", "bid", "bid_qty",
             "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change", "change_pct", "open", "close",
             "buy_volume", "sell_volume"}

BOOK_STATES = ["new", "live", "stale", "invalidated", "resyncing", "restored"]

#: per record, per field: what the Python type does not say
CONSTRAINTS: dict[type, dict[str, dict[str, Any]]] = {
    records.BookMetricRecord: {"metric": {"const": "book"}},
    records.SubscriptionErrorRecord: {"metric": {"const": "subscription_error"}},
    records.WhaleTradeRecord: {"metric": {"const": "whale_trade"}, "side": {"enum": ["buy", "sell"]}},
    records.TradeGapRecord: {"metric": {"const": "trade_gap"}},
    records.ExchangeStatusRecord: {"metric": {"const": "exchange_status"}},
    records.BookSnapshotRecord: {"reason": {"enum": ["grid", "exchange"]}, "state": {"enum": BOOK_STATES}},
    records.BookEventRecord: {"state": {"enum": BOOK_STATES}, "previous": {"enum": BOOK_STATES}},
    records.TradeRecord: {"side": {"enum": ["buy", "sell"]}},
    records.CandleRecord: {"interval": {"enum": ["1m", "5m", "1h"]}},
}


def _type_schema(hint: Any, name: str) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        [inner] = args  # only X | None is used in records
        schema = _type_schema(inner, name)
        return {"anyOf": [schema, {"type": "null"}]}
    if origin is list:
        [item] = typing.get_args(hint)
        if item == records.Level:
            return {"type": "array", "items": LEVEL}
        return {"type": "array", "items": _type_schema(item, name)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return dict(DECIMAL) if name in _DECIMALS else {"type": "string"}
    raise TypeError(f"no JSON Schema for {name}: {hint!r}; extend models/schemas.py")


def record_schema(cls: type) -> dict[str, Any]:
    """The schema of one record class (no ``$schema``: it nests in a topic's schema)."""
    hints = typing.get_type_hints(cls, vars(records))
    fields = dataclasses.fields(cls)
    extra = CONSTRAINTS.get(cls, {})
    properties: dict[str, Any] = {}
    for field in fields:
        if field.name == "schema_version":
            properties[field.name] = {"const": field.default}
            continue
        schema = _type_schema(hints[field.name], field.name)
        if field.name in extra:
            schema = {**schema, **extra[field.name]} if "anyOf" not in schema else {
                "anyOf": [{**schema["anyOf"][0], **extra[field.name]}, {"type": "null"}]}
        properties[field.name] = schema
    return {"title": cls.__name__, "description": " ".join((cls.__doc__ or "").split()), "type": "object",
            "properties": properties, "required": [f.name for f in fields], "additionalProperties": False}


def topic_schema(topic: str, doc: str, classes: tuple[type, ...]) -> dict[str, Any]:
    """The schema of a topic's values: its record, or one of its records (``kraken.metrics``)."""
    head = {"$schema": DRAFT, "$id": f"https://krakenflow.dev/schemas/{topic}.json", "title": topic,
            "description": doc}
    if len(classes) == 1:
        body = record_schema(classes[0])
        return {**head, **{k: v for k, v in body.items() if k not in ("title", "description")},
                "x-record": classes[0].__name__}
    return {**head, "oneOf": [record_schema(cls) for cls in classes]}
