"""The Faust tables: books (RocksDB, co-partitioned with ``kraken.raw``) and instrument precisions."""

from __future__ import annotations

from app.main import app, settings

#: Book pages and per-pair meta (see :mod:`tables.books`); keys and values are raw bytes so that
#: changelog records written in batches by the agent are exactly what Faust recovers.
books_table = app.Table(
    "books", key_type=bytes, value_type=bytes, partitions=settings.raw_partitions,
)

#: ``BTC/USD`` -> ``b"1,8"`` (price, qty precision) on every worker. Tiny and rarely written, so an
#: in-memory global table rebuilt from its changelog at start is enough.
instruments_table = app.GlobalTable(
    "instruments", key_type=bytes, value_type=bytes, partitions=1, store="memory://instruments", use_partitioner=True,  # a bare "memory://" URL is falsy in yarl
)


def precision_of(symbol: str) -> tuple[int, int] | None:
    value = instruments_table.get(symbol.encode())
    if not value:
        return None
    price, _, qty = value.decode().partition(",")
    return int(price), int(qty)


def remember_precision(symbol: str, precision: tuple[int, int]) -> None:
    value = f"{precision[0]},{precision[1]}".encode()
    if instruments_table.get(symbol.encode()) != value:
        instruments_table[symbol.encode()] = value
