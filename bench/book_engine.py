"""Book engine throughput: parse + apply + truncate + checksum + delta over the real captures.

Runs the same frames, in the same process, through python-kraken-sdk's ``SpotOrderBookClient`` book
logic for comparison. One core (this process is single-threaded). Every checksum is verified on every
pass: a pass with a failure aborts the bench.

    python bench/book_engine.py [--seconds 5]

Last line: ``RESULT updates_per_s=<n> ratio_vs_python_kraken_sdk=<x>`` where an update is one book
message (snapshot or update) processed with its checksum verified.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.book import BookDelta  # noqa: E402
from models.frames import ParseError, parse_frame  # noqa: E402
from models.market import Market  # noqa: E402

CAPTURES = ROOT.parent / "shared" / "kraken-captures"


def load(captures: Path) -> list[list[bytes]]:
    return [[ln for ln in p.read_bytes().splitlines() if ln.strip()] for p in sorted(captures.glob("*.jsonl"))]


def engine_pass(files: list[list[bytes]]) -> tuple[int, int]:
    """One pass of every capture through a fresh engine; returns (book messages, checksums ok)."""
    messages = ok = 0
    for lines in files:
        market = Market()
        for raw in lines:
            frame = parse_frame(raw)
            if isinstance(frame, ParseError):
                raise SystemExit(f"bench input is malformed: {frame.reason}")
            for result in market.on_frame(frame):
                messages += 1
                if isinstance(result, BookDelta) and result.checksum_ok:
                    ok += 1
    return messages, ok


def sdk_pass(files: list[list[bytes]], depths: list[int]) -> tuple[int, int]:
    from bench.pks_feed import make_feeder

    frames = valid = 0
    for lines, depth in zip(files, depths):
        feed, stats = make_feeder(depth)
        for raw in lines:
            feed(raw)
        frames += stats["frames"]
        valid += stats["valid"]
    return frames, valid


def depth_of(lines: list[bytes]) -> int:
    market = Market()
    for raw in lines:
        frame = parse_frame(raw)
        if not isinstance(frame, ParseError):
            market.on_frame(frame)
    return next(iter(market.depths.values()), 10)


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
    rate, messages, ok = timed(lambda: engine_pass(files), args.seconds)
    if ok != messages:
        raise SystemExit(f"krakenflow: only {ok} of {messages} checksums verified")
    print(f"krakenflow          {rate:>12,.0f} book messages/s  ({ok}/{messages} checksums verified per pass)")
    sdk_rate, sdk_messages, sdk_ok = timed(lambda: sdk_pass(files, depths), args.seconds)
    print(f"python-kraken-sdk   {sdk_rate:>12,.0f} book messages/s  ({sdk_ok}/{sdk_messages} update checksums "
          "valid per pass; it never checks snapshots and fails on string numbers)")
    print(f"RESULT updates_per_s={rate:.0f} ratio_vs_python_kraken_sdk={rate / sdk_rate:.1f}")


if __name__ == "__main__":
    main()
