"""The JSON Schemas under ``schemas/``: one per topic with records, generated from the typed records.

``python -m app.schemas`` rewrites them after a record changes (and its ``schema_version`` is bumped);
``python -m app.schemas --check`` fails when the files are not what the records say. The tests run the
check, so a record cannot change shape without its schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from app.topics import TOPICS
from models.schemas import topic_schema

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every topic whose values are records (``kraken.raw`` is Kraken's own)."""
    return {f"{spec.suffix}.json": topic_schema(f"kraken.{spec.suffix}", spec.doc, spec.records)
            for spec in TOPICS if spec.records}


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"


def stale(directory: Path = SCHEMAS) -> list[str]:
    """Files under ``directory`` that differ from the records, are missing, or are left over."""
    wanted = schemas()
    out = [name for name, schema in wanted.items()
           if not (directory / name).exists() or (directory / name).read_bytes() != render(schema)]
    out += [p.name for p in directory.glob("*.json") if p.name not in wanted]
    return sorted(out)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        bad = stale()
        if bad:
            print(f"schemas/ is out of date for {', '.join(bad)}: run `python -m app.schemas` and bump the "
                  "record's schema_version if its fields changed", file=sys.stderr)
            return 1
        return 0
    SCHEMAS.mkdir(exist_ok=True)
    for old in SCHEMAS.glob("*.json"):
        old.unlink()
    for name, schema in schemas().items():
        (SCHEMAS / name).write_bytes(render(schema))
    print(f"wrote {len(schemas())} schemas to {SCHEMAS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
