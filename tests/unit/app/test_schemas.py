"""The JSON Schemas under schemas/: generated from the typed records, checked in, and true to them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from app.schemas import SCHEMAS, render, schemas, stale
from app.topics import TOPICS
from models.kraken.wire import frame_key
from models.processor import BookProcessor, ProcessorSettings, RawRecord
from models.records import RECORD_TYPES, as_dict
from tests.conftest import capture_files
from tests.processes import ROOT

pytestmark = pytest.mark.unit

TRADE = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":62806.2,'
         '"qty":0.20777800,"ord_type":"market","trade_id":7,"timestamp":"2026-11-21T06:25:38.389020Z"}]}')
TICKER = ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":62802.5,"bid_qty":0.02987767,'
          '"ask":62802.6,"ask_qty":1.09074394,"last":62802.6,"volume":1234.56789012,"vwap":62500.1,"low":61000.0,'
          '"high":63000.0,"change":-802.6,"change_pct":-1.29,"timestamp":"2026-11-21T06:25:39.000000Z"}]}')


def validator(topic: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(orjson.loads((SCHEMAS / f"{topic}.json").read_bytes()))


def test_checked_in_schemas_are_what_the_records_say() -> None:
    assert stale() == [], "run `python -m app.schemas` (and bump schema_version of the changed record)"
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(schemas())


def test_a_record_changed_without_its_schema_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    assert stale(copy) == []
    deltas = orjson.loads((copy / "book.deltas.json").read_bytes())
    del deltas["properties"]["raw_offset"]  # as if a field had been added to BookDeltaRecord
    (copy / "book.deltas.json").write_bytes(render(deltas))
    (copy / "trades.json").unlink()
    (copy / "old.json").write_bytes(b"{}")
    assert stale(copy) == ["book.deltas.json", "old.json", "trades.json"]


def test_every_schema_is_valid_draft_2020_12_and_every_record_has_one() -> None:
    covered = set()
    for spec in TOPICS:
        if not spec.records:
            continue
        schema = orjson.loads((SCHEMAS / f"{spec.suffix}.json").read_bytes())
        jsonschema.Draft202012Validator.check_schema(schema)
        covered.update(spec.records)
    assert covered == set(RECORD_TYPES)
    for cls in RECORD_TYPES:
        assert dataclasses.fields(cls)[-1].name == "schema_version", cls.__name__


def outputs() -> list[tuple[str, dict[str, Any]]]:
    """(topic, value) of what the domain emits for real captures, a bad frame, a trade and a ticker."""
    out: list[Any] = []
    for path in capture_files():
        processor = BookProcessor(ProcessorSettings())
        for offset, line in enumerate(ln for ln in path.read_text().splitlines() if ln.strip()):
            key = frame_key(line)
            processor.process_into(RawRecord(line.encode(), key.encode() if key else None, 0, offset, 1), out)
        for offset, raw in enumerate((b"{not json", TRADE.encode(), TICKER.encode()), start=10**6):
            processor.process_into(RawRecord(raw, b"BTC/USD", 0, offset, 1), out)
    return [(o.topic, as_dict(o.record)) for o in out]


def test_records_the_domain_emits_validate_against_their_topic_schema() -> None:
    seen: dict[str, int] = {}
    for topic, value in outputs():
        errors = [e.message for e in validator(topic).iter_errors(value)]
        assert errors == [], (topic, value)
        seen[topic] = seen.get(topic, 0) + 1
    assert {"book.deltas", "book.events", "deadletter", "trades", "tickers"} <= set(seen), seen


def test_schemas_refuse_floats_unknown_fields_and_another_version() -> None:
    delta = next(value for topic, value in outputs() if topic == "book.deltas" and value["bids"])
    check = validator("book.deltas")
    assert check.is_valid(delta)
    assert not check.is_valid({**delta, "bids": [[62803.8, "1.0"]]})  # a float price
    assert not check.is_valid({**delta, "bids": [["62803.8"]]})
    assert not check.is_valid({**delta, "extra": 1})
    assert not check.is_valid({**delta, "schema_version": 2})
    assert not check.is_valid({k: v for k, v in delta.items() if k != "seq"})


def test_readme_points_to_the_schemas() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Topics and schemas"):]
    assert "`schemas/`" in section and "schema_version" in section and "python -m app.schemas" in section
