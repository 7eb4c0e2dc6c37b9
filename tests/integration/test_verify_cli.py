"""`krakenflow verify` run as users run it: a subprocess over the real captures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import capture_files

pytestmark = pytest.mark.integration


ROOT = Path(__file__).resolve().parents[2]


def run_verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "verify", *args], capture_output=True, text=True, timeout=120,
        cwd=ROOT, env={**os.environ, **(env or {})},
    )


def test_all_767_real_checksums_verify() -> None:
    files = [str(p) for p in capture_files()]
    result = run_verify(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total: 767 of 767 checksums verified in 9 files" in result.stdout
    counts = json.loads(run_verify("--json", *files).stdout)
    assert sum(p["checked"] for f in counts.values() for p in f.values()) == 767
    assert sum(p["ok"] for f in counts.values() for p in f.values()) == 767
    assert counts["kraken-docs_examples.jsonl"]["MATIC/USD"] == {"checked": 2, "ok": 2, "failed": 0}


def test_one_altered_checksum_is_exactly_one_failure(tmp_path: Path) -> None:
    source = next(p for p in capture_files() if p.name.startswith("depthcharge_btcusd_d10_"))
    lines = source.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if '"type":"update"' in line and i > 40)
    original = int(re.search(r'"checksum":(\d+)', lines[target]).group(1))
    lines[target] = lines[target].replace(f'"checksum":{original}', f'"checksum":{original ^ 1}')
    altered = tmp_path / "altered.jsonl"
    altered.write_text("\n".join(lines) + "\n")

    result = run_verify(str(altered))
    assert result.returncode == 1
    assert "checksums 117/118 verified, 1 failed  FAILED" in result.stdout
    assert f"first failure at line {target + 1}: expected {original ^ 1}, computed {original}" in result.stdout
    assert json.loads(run_verify("--json", str(altered)).stdout) == {
        "altered.jsonl": {"BTC/USD": {"checked": 118, "ok": 117, "failed": 1}}
    }


def test_malformed_lines_are_counted_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    source = next(p for p in capture_files() if p.name.startswith("depthcharge_minagbp_d25_2026"))
    lines = source.read_text().splitlines()
    lines.insert(10, '{"channel":"book","type":"update","data":[{"symbol":"MINA/GBP","bids":[{"pri')
    lines.insert(20, "not json at all")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join(lines) + "\n")
    result = run_verify(str(damaged))
    assert result.returncode == 0, result.stdout
    assert "malformed line 11 skipped: invalid JSON" in result.stdout
    assert "malformed line 21 skipped: invalid JSON" in result.stdout
    assert "checksums 30/30 verified" in result.stdout
    assert "2 malformed lines skipped" in result.stdout


def test_unreadable_file_exits_2_and_names_it(tmp_path: Path) -> None:
    good = str(capture_files()[0])
    missing = str(tmp_path / "nope.jsonl")
    result = run_verify(good, missing)
    assert result.returncode == 2
    assert f"cannot read {missing}: No such file or directory" in result.stdout


@pytest.mark.parametrize("engine", ["native", "Python"])
def test_a_simulator_recording_of_the_truncation_edge_verifies_with_each_engine(engine: str) -> None:
    """Seed 11's DOGE/USD at depth 10: an insert pushes a level out and the same message cancels it (no
    delete is sent); only truncation after every level keeps the checksums."""
    recording = ROOT / "tests" / "fixtures" / "sim-recordings" / "sim-seed11_dogeusd_d10.jsonl"
    result = run_verify(str(recording), env={"KRAKENFLOW_NATIVE": "1" if engine == "native" else "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"total: 808 of 808 checksums verified in 1 files ({engine} book engine)" in result.stdout
