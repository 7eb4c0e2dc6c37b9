"""Direct, batched access to one partition of a Faust RocksDB table.

Faust's ``table[key] = value`` sends one changelog record through its producer buffer per write
(~150-290 us each here) and needs a current stream event to pick the partition. The book agent writes
many small records per batch to a known partition, so it writes the partition's RocksDB with one
``WriteBatch`` and the changelog with one record batch (:mod:`app.kafka_writer`), then records the
changelog offset as Faust does, so Faust's own recovery (from the changelog, or from local RocksDB
plus the changelog tail) restores the same data. This is the one module that touches Faust store
internals (``_db_for_partition``, ``_key_index``, ``offset_key``); keep it that way. The versions they
were checked against are pinned in ``pyproject.toml``; ``tests/unit/tables/test_partitiondb.py`` fails
when a name changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rocksdict
from faust.types import TP

#: the faust-streaming version whose store internals this module relies on (pinned in pyproject.toml)
FAUST_VERSION = "0.15.3"
#: the private names: Faust's RocksDB store's per-partition database, its key -> partition index, and the
#: key under which it keeps a partition's persisted changelog offset
STORE_NAMES = ("_db_for_partition", "_key_index", "offset_key")


class PartitionDB:
    """The RocksDB of one table partition: reads, atomic batched writes, persisted changelog offset."""

    def __init__(self, table: Any, partition: int) -> None:
        self.table = table
        self.partition = partition
        self.store = table.data

    def _db(self) -> Any:
        return self.store._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db().get(key)
        return value

    def write(self, puts: Sequence[tuple[bytes | None, bytes | None]], changelog_offset: int | None = None) -> None:
        """Apply puts (a None value deletes) atomically, with ``changelog_offset`` (the changelog offset they
        bring the partition to) as Faust's persisted offset in the same write: one RocksDB write per flush,
        and never records without their offset or the reverse."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        index = self.store._key_index
        for key, value in puts:
            assert key is not None  # table records always have keys
            if value is None:
                batch.delete(key)
                index.pop(key, None)
            else:
                batch.put(key, value)
                index[key] = self.partition
        if changelog_offset is not None:  # as Faust's set_persisted_offset writes it
            batch.put(self.store.offset_key, str(changelog_offset).encode())
        self._db().write(batch)

    def _tp(self) -> TP:
        return TP(self.table.changelog_topic.get_topic_name(), self.partition)

    def changelog_offset(self) -> int | None:
        """The changelog offset the local store holds everything up to (None: nothing recorded)."""
        offset: int | None = self.store.persisted_offset(self._tp())
        return offset
