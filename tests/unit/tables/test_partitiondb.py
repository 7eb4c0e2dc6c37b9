"""The Faust store internals ``tables/partitiondb.py`` relies on are still there and still mean what they
meant: this fails loudly on a faust-streaming upgrade that moves them (a flush would crash, or Faust's
recovery would no longer find the changelog offset the flush stored)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from app.factory import create_app
from app.settings import Settings
from tables import partitiondb
from tables.partitiondb import PartitionDB

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def table(tmp_path: Path) -> Any:
    app = create_app(Settings(app_id="kf-partitiondb-test", data_dir=tmp_path))
    app.conf.datadir = str(tmp_path / "worker")
    return app.parts.tables.books


def test_the_installed_faust_is_the_checked_and_pinned_one() -> None:
    installed = importlib.metadata.version("faust-streaming")
    assert installed == partitiondb.FAUST_VERSION, "review tables/partitiondb.py for this faust-streaming"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"faust-streaming=={partitiondb.FAUST_VERSION}" in dependencies


def test_the_store_names_are_there(table: Any) -> None:
    for name in partitiondb.STORE_NAMES:
        assert hasattr(table.data, name), f"Faust's RocksDB store has no {name}: review tables/partitiondb.py"


def test_a_write_stores_its_changelog_offset_where_faust_recovery_reads_it(table: Any) -> None:
    db = PartitionDB(table, 3)
    tp = TP(table.changelog_topic.get_topic_name(), 3)
    db.write([(b"\0raw\x003", b"41"), (b"page", b"{}")], changelog_offset=17)
    assert table.data.persisted_offset(tp) == 17  # Faust's own read, as its recovery makes it
    assert db.changelog_offset() == 17 and db.get(b"page") == b"{}"
    db.write([(b"page", None)])  # no offset given: the stored one stays
    assert table.data.persisted_offset(tp) == 17 and db.get(b"page") is None
    assert table.data._key_index.get(b"\0raw\x003") == 3  # Faust finds the key's partition (its iteration)
