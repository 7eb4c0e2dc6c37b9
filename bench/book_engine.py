"""Book engine throughput: parse + apply + truncate + checksum + delta over the real captures.

The worker's book session runs the frames with the native core (``native/``, when built) and with the
pure-Python engine; the same frames, in the same process, go through python-kraken-sdk's
``SpotOrderBookClient`` book logic and through cryptofeed's way of feeding its C order book
(``bench/cryptofeed_feed.py``) for comparison. One core (this process is single-threaded). Every
checksum is verified on every pass of krakenflow's engines: a pass with a failure aborts the bench.

    python bench/book_engine.py [--seconds 5]

Last line: ``RESULT updates_per_s=<n> ratio_vs_python_kraken_sdk=<x> ratio_vs_cryptofeed=<x> native=yes|no
python_updates_per_s=<n> processor_updates_per_s=<n>`` where an update is one book message (snapshot or
update) processed with its checksum verified; ``updates_per_s`` is the engine the worker runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import native  # noqa: E402
from models.book import BookDelta  # noqa: E402
from models.kraken.frames import ParseError, parse_frame  # noqa: E402
from models.processor import BookProcessor, Output, ProcessorSettings  # noqa: E402
from models.records import encode  # noqa: E402
from models.session import BookSession, PairState, RawRecord  # noqa: E402

CAPTURES = ROOT / "tests" / "fixtures" / "kraken-captures"


def load(captures: Path) -> list[list[bytes]]:
    return [[ln for ln in p.read_bytes().splitlines() if ln.strip()] for p in sorted(captures.glob("*.jsonl"))]


class _Counting(BookSession):
    """The worker's book session (the same engine), counting verified checksums."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = self.ok = 0

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        self.messages += 1
        if delta.checksum_ok:
            self.ok += 1


def records(files: list[list[bytes]]) -> list[list[RawRecord]]:
    for lines in files:
        for raw in lines:
            if isinstance(parse_frame(raw), ParseError):
                raise SystemExit(f"bench input is malformed: {raw[:80]!r}")
    return [[RawRecord(raw, None, 0, n) for n, raw in enumerate(lines)] for lines in files]


def engine_pass(files: list[list[RawRecord]]) -> tuple[int, int]:
    """One pass of every capture through a fresh session; returns (book messages, checksums ok)."""
    messages = ok = 0
    for recs in files:
        session = _Counting()
        for record in recs:
            session.process(record)
        messages += session.messages
        ok += session.ok
    return messages, ok


def processor_pass(files: list[list[RawRecord]]) -> tuple[int, int]:
    """The worker's whole processor: the session plus output records, encoded as the agent sends them."""
    messages = ok = 0
    for recs in files:
        processor = BookProcessor(ProcessorSettings())
        out: list[Output] = []
        for record in recs:
            processor.process_into(record, out)
        for o in out:
            encode(o.record)
        ok += sum(st.checksums_ok for st in processor.pairs.values())
        messages += sum(st.snapshots + st.updates for st in processor.pairs.values())
    return messages, ok


def _feeder_pass(make_feeder: Any, files: list[list[bytes]], depths: list[int]) -> tuple[int, int]:
    """Frames and valid checksums of a peer's feeder (``make_feeder(depth) -> (feed, stats)``)."""
    frames = valid = 0
    for lines, depth in zip(files, depths, strict=False):
        feed, stats = make_feeder(depth)
        for raw in lines:
            feed(raw)
        frames += stats["frames"]
        valid += stats["valid"]
    return frames, valid


def sdk_pass(files: list[list[bytes]], depths: list[int]) -> tuple[int, int]:
    from bench.pks_feed import make_feeder

    return _feeder_pass(make_feeder, files, depths)


def cryptofeed_pass(files: list[list[bytes]], depths: list[int]) -> tuple[int, int]:
    from bench.cryptofeed_feed import make_feeder

    return _feeder_pass(make_feeder, files, depths)


def depth_of(lines: list[bytes]) -> int:
    session = BookSession()
    for n, raw in enumerate(lines):
        session.process(RawRecord(raw, None, 0, n))
    return next((st.depth for st in session.pairs.values()), 10)


def timed(run: Callable[[], tuple[int, int]], seconds: float) -> tuple[float, int, int]:
    """Repeat ``run`` for about ``seconds``; returns (messages/s, messages per pass, ok per pass)."""
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while True:
        messages, ok = run()
        count += messages
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed, messages, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per engine (default 5)")
    parser.add_argument("--captures", type=Path, default=CAPTURES)
    args = parser.parse_args()

    files = load(args.captures)
    depths = [depth_of(lines) for lines in files]
    recs = records(files)
    rates: dict[bool, float] = {}
    for on in ([True, False] if native.available else [False]):
        native.use(on)
        rate, messages, ok = timed(lambda: engine_pass(recs), args.seconds)
        if ok != messages:
            raise SystemExit(f"krakenflow ({'native' if on else 'python'}): only {ok} of {messages} checksums verified")
        rates[on] = rate
        print(f"krakenflow {'native' if on else 'python'}   {rate:>12,.0f} book messages/s  ({ok}/{messages} checksums "
              "verified per pass)", flush=True)
    native.use(native.available)
    rate = rates[native.available]
    proc_rate, proc_messages, proc_ok = timed(lambda: processor_pass(recs), args.seconds)
    if proc_ok != proc_messages:
        raise SystemExit(f"krakenflow processor: only {proc_ok} of {proc_messages} checksums verified")
    print(f"  + output records  {proc_rate:>12,.0f} book messages/s  (the worker's processor, records encoded)")
    sdk_rate, sdk_messages, sdk_ok = timed(lambda: sdk_pass(files, depths), args.seconds)
    print(f"python-kraken-sdk   {sdk_rate:>12,.0f} book messages/s  ({sdk_ok}/{sdk_messages} update checksums "
          "valid per pass; it never checks snapshots and fails on string numbers)")
    cf_rate, cf_messages, cf_ok = timed(lambda: cryptofeed_pass(files, depths), args.seconds)
    print(f"cryptofeed order-book {cf_rate:>10,.0f} book messages/s  ({cf_ok}/{cf_messages} checksums valid per pass; "
          "no instrument precision: re-serialised numbers fail)")
    print(f"RESULT updates_per_s={rate:.0f} ratio_vs_python_kraken_sdk={rate / sdk_rate:.1f} "
          f"ratio_vs_cryptofeed={rate / cf_rate:.1f} native={'yes' if native.available else 'no'} "
          f"python_updates_per_s={rates[False]:.0f} processor_updates_per_s={proc_rate:.0f}")

if __name__ == "__main__":
    main()
