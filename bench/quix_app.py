"""The peer: quixstreams (librdkafka underneath) over the same ``kraken.raw`` frames as the Faust worker.

Two apps a user choosing quixstreams instead of Faust would write:

* ``noop``: a dataframe over the topic that does nothing per record: quix's own ceiling;
* ``book``: a book per pair kept in quix's RocksDB state (keyed by the record key, the pair): each book
  frame is parsed with krakenflow's exact-token parser and applied to the pair's book (krakenflow's
  engine: truncation, CRC32 checksum), whose levels are then written to the state; a book is read
  back from the state when the app meets its pair first (after a restart).

    BENCH_MODE=noop|book BENCH_TOPIC=kraken.raw BENCH_EXPECT=n BENCH_OUT=result.json python bench/quix_app.py

At ``BENCH_EXPECT`` records it writes ``{"first": ns, "last": ns, "records": n, "checksums_ok": n}``
(wall clock) to ``BENCH_OUT`` and stops.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quixstreams import Application, State  # noqa: E402

from bench.harness import write_result  # noqa: E402
from models.book import L2Book  # noqa: E402
from models.kraken.frames import parse_frame  # noqa: E402
from models.kraken.messages import BookFrame  # noqa: E402


def main() -> None:
    mode, expect, out = os.environ["BENCH_MODE"], int(os.environ["BENCH_EXPECT"]), Path(os.environ["BENCH_OUT"])
    depth = int(os.environ.get("BENCH_DEPTH", "25"))
    app = Application(broker_address=os.environ["BENCH_BOOTSTRAP"], consumer_group=os.environ["BENCH_APP_ID"],
                      auto_offset_reset="earliest", state_dir=os.environ["BENCH_STATE_DIR"],
                      processing_guarantee="at-least-once", loglevel="WARNING")
    topic = app.topic(os.environ["BENCH_TOPIC"], value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    seen = {"records": 0, "first": 0, "last": 0, "checksums_ok": 0}

    def count() -> None:
        n = seen["records"] = seen["records"] + 1
        if n == 1:
            seen["first"] = time.time_ns()
        if n == expect:
            seen["last"] = time.time_ns()
            write_result(out, seen)
            app.stop()

    def noop(value: Any) -> None:
        count()

    books: dict[str, L2Book] = {}  # the live books; the state is what survives a restart

    def book(value: bytes, state: State) -> None:
        frame = parse_frame(value)
        if isinstance(frame, BookFrame):
            for data in frame.books:
                b = books.get(data.symbol)
                if b is None:
                    b = books[data.symbol] = L2Book(data.symbol, depth)
                    levels = state.get("levels")
                    if levels is not None:  # restored from the state after a restart
                        b.apply_snapshot([tuple(x) for x in levels[0]], [tuple(x) for x in levels[1]])
                delta = (b.apply_snapshot if frame.is_snapshot else b.apply_update)(data.bids, data.asks,
                                                                                    data.checksum)
                if delta.checksum_ok:
                    seen["checksums_ok"] += 1
                state.set("levels", [b.levels("bids"), b.levels("asks")])
        count()

    if mode == "noop":
        sdf.update(noop)
    else:
        sdf.update(book, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
