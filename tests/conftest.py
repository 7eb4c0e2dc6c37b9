"""Shared fixtures: the real Kraken captures and a simple reference book for property tests."""

from __future__ import annotations

import os
import signal
from decimal import Decimal
from pathlib import Path
from zlib import crc32

import pytest

ROOT = Path(__file__).resolve().parent.parent
# vendored byte-exact from ../shared/kraken-captures (the source), so the unit tier runs on a bare clone
CAPTURES = Path(os.environ.get("KRAKENFLOW_CAPTURES", ROOT / "tests" / "fixtures" / "kraken-captures"))


def capture_files() -> list[Path]:
    files = sorted(CAPTURES.glob("*.jsonl"))
    if not files:
        raise RuntimeError(
            f"no Kraken captures found in {CAPTURES}; set KRAKENFLOW_CAPTURES to the folder holding them"
        )
    return files


@pytest.fixture(scope="session")
def captures() -> list[Path]:
    return capture_files()


class ReferenceBook:
    """A deliberately simple book: dicts of Decimal, sorted from scratch, formatted with precision.

    Independent of the engine's tick arithmetic so property tests compare two implementations.
    """

    def __init__(self, depth: int, price_precision: int, qty_precision: int) -> None:
        self.depth, self.pp, self.qp = depth, price_precision, qty_precision
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """The book at one instant: every level set, then truncated once."""
        self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
        self.bids = dict(self.sorted_bids()[: self.depth])
        self.asks = dict(self.sorted_asks()[: self.depth])

    def update(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """Kraken's rule: levels in order, qty 0 deletes, each side truncated after every level."""
        for side, levels, worst in ((self.bids, bids, min), (self.asks, asks, max)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                    continue
                side[Decimal(price)] = Decimal(qty)
                if len(side) > self.depth:
                    del side[worst(side)]

    def sorted_bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)

    def sorted_asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.asks.items(), key=lambda kv: kv[0])

    def text(self, levels: list[tuple[Decimal, Decimal]]) -> list[tuple[str, str]]:
        return [(f"{p:.{self.pp}f}", f"{q:.{self.qp}f}") for p, q in levels]

    def checksum(self) -> int:
        parts = []
        for price, qty in self.text(self.sorted_asks()[:10]) + self.text(self.sorted_bids()[:10]):
            parts.append(price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0"))
        return crc32("".join(parts).encode())


def pytest_configure(config: pytest.Config) -> None:
    # a run stopped with SIGTERM (`timeout`, a cancelled CI job) ends as Ctrl-C does: the fixtures tear down
    # and pytest_sessionfinish stops the shared Kafka, which SIGTERM's default would leave running
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test that ran a cluster reports its processes' warnings and errors: CI keeps only the
    test output, and a flake's cause is in the worker logs."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and cluster is not None and hasattr(cluster, "tmp"):
        for log in sorted(Path(cluster.tmp).glob("*.log")):
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if "[WARNING]" in line or "[ERROR]" in line or "Traceback" in line]
            if lines:
                report.sections.append((f"{log.name}: last warnings and errors",
                                        "\n".join(line[:300] for line in lines[-25:])))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's Apache Kafka, if a test started it."""
    from tests.brokers import stop_shared_kafka

    stop_shared_kafka()
