"""``krakenflow verify``: replay capture files through the book engine and check every checksum.

A capture is JSON Lines, one Kraken v2 frame per line exactly as received. A failed checksum is
reported and the book keeps being applied, so one bad value is one failure, not a cascade. Malformed
lines are counted, reported with their line numbers and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from models.book import BookDelta
from models.kraken.messages import BookData
from models.session import BookSession, PairState, RawRecord


@dataclass(slots=True)
class Failure:
    line: int
    expected: int | None
    computed: int | None
    reason: str = ""


@dataclass(slots=True)
class PairReport:
    snapshots: int = 0
    updates: int = 0
    checked: int = 0
    ok: int = 0
    failed: int = 0
    first_failure: Failure | None = None

    def as_json(self) -> dict[str, int]:
        return {"checked": self.checked, "ok": self.ok, "failed": self.failed}


@dataclass(slots=True)
class FileReport:
    path: str
    pairs: dict[str, PairReport] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.pairs.values())


class _Verifier(BookSession):
    """The book session with a tally per pair. An offline verifier cannot resync, so an invalidated book
    keeps being applied: one bad value is one failure, not a cascade."""

    def __init__(self, report: FileReport) -> None:
        super().__init__()
        self.report = report
        self.expected: int | None = None

    def pair(self, symbol: str) -> PairReport:
        return self.report.pairs.setdefault(symbol, PairReport())

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        pair = self.pair(st.symbol)
        if delta.is_snapshot:
            pair.snapshots += 1
        else:
            pair.updates += 1
        if delta.expected_checksum is None:
            return
        pair.checked += 1
        if delta.checksum_ok:
            pair.ok += 1
            return
        pair.failed += 1
        if pair.first_failure is None:
            pair.first_failure = Failure(record.offset, delta.expected_checksum, delta.checksum)

    def invalidate(self, st: PairState, reason: str, record: RawRecord | None) -> None:
        return None

    def _book(self, record: RawRecord, is_snapshot: bool, data: BookData) -> None:
        if is_snapshot or (self.pairs.get(data.symbol) and self.pairs[data.symbol].book is not None):
            super()._book(record, is_snapshot, data)
            return
        pair = self.pair(data.symbol)  # an update before any snapshot: a failure when it has a checksum
        pair.updates += 1
        if data.checksum is not None:
            pair.checked += 1
            pair.failed += 1
            if pair.first_failure is None:
                pair.first_failure = Failure(record.offset, data.checksum, None,
                                             "update before any snapshot; resubscribe to get one")

    def on_reject(self, record: RawRecord, reason: str) -> None:
        self.report.malformed.append((record.offset, reason))


def verify_lines(path: str, lines: Iterable[bytes]) -> FileReport:
    """Verify one capture's lines (line numbers are the records' offsets)."""
    report = FileReport(path)
    session = _Verifier(report)
    for number, line in enumerate(lines, 1):
        if line.strip():
            session.process(RawRecord(line, None, 0, number))
    return report


def verify_file(path: str) -> FileReport:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileReport(path, error=f"cannot read {path}: {exc.strerror or exc}")
    return verify_lines(path, data.splitlines())


def exit_code(reports: list[FileReport]) -> int:
    if any(r.error for r in reports):
        return 2
    return 1 if any(r.failed for r in reports) else 0


def as_json(reports: list[FileReport]) -> dict[str, dict[str, dict[str, int]]]:
    """``{"<file name>": {"<pair>": {"checked": n, "ok": n, "failed": n}}}`` (a path where names clash)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for report in reports:
        if report.error:
            continue
        name = Path(report.path).name
        out[name if name not in out else report.path] = {s: p.as_json() for s, p in report.pairs.items()}
    return out


def render(report: FileReport) -> list[str]:
    """Human-readable lines for one file."""
    if report.error:
        return [f"{report.path}: ERROR {report.error}"]
    lines = [f"{report.path}:"]
    for symbol, p in report.pairs.items():
        verdict = "OK" if not p.failed else "FAILED"
        lines.append(
            f"  {symbol}: {p.snapshots} snapshots, {p.updates} updates, "
            f"checksums {p.ok}/{p.checked} verified, {p.failed} failed  {verdict}"
        )
        f = p.first_failure
        if f is not None:
            detail = f.reason or f"expected {f.expected}, computed {f.computed}"
            lines.append(f"    first failure at line {f.line}: {detail}")
    if not report.pairs:
        lines.append("  no book messages")
    for number, reason in report.malformed:
        lines.append(f"  malformed line {number} skipped: {reason}")
    return lines


def summary(reports: list[FileReport]) -> str:
    checked = sum(p.checked for r in reports for p in r.pairs.values())
    ok = sum(p.ok for r in reports for p in r.pairs.values())
    malformed = sum(len(r.malformed) for r in reports)
    unreadable = sum(1 for r in reports if r.error)
    text = f"total: {ok} of {checked} checksums verified in {len(reports)} files"
    if malformed:
        text += f", {malformed} malformed lines skipped"
    if unreadable:
        text += f", {unreadable} files unreadable"
    return text
