"""``krakenflow verify``: replay capture files through the book engine and check every checksum.

A capture is JSON Lines, one Kraken v2 frame per line exactly as received. A failed checksum is
reported and the book keeps being applied, so one bad value is one failure, not a cascade. Malformed
lines are counted, reported with their line numbers and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from models.book import BookDelta
from models.frames import ParseError, parse_frame
from models.market import BookError, Market


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


def verify_lines(path: str, lines: Iterable[bytes]) -> FileReport:
    """Verify one capture's lines."""
    report = FileReport(path)
    market = Market()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        frame = parse_frame(line)
        if isinstance(frame, ParseError):
            report.malformed.append((number, frame.reason))
            continue
        is_snapshot = getattr(frame, "is_snapshot", False)
        expected = [d.checksum for d in getattr(frame, "books", ())]
        for result, checksum in zip(market.on_frame(frame), expected):
            pair = report.pairs.setdefault(result.symbol, PairReport())
            if is_snapshot:
                pair.snapshots += 1
            else:
                pair.updates += 1
            if checksum is None:
                continue
            pair.checked += 1
            if isinstance(result, BookDelta) and result.checksum == checksum:
                pair.ok += 1
                continue
            pair.failed += 1
            if pair.first_failure is None:
                if isinstance(result, BookError):
                    pair.first_failure = Failure(number, checksum, None, result.reason)
                else:
                    pair.first_failure = Failure(number, checksum, result.checksum)
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
