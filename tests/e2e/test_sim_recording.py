"""The simulator issue's acceptance: a 60-second recording at depth 1000 on 50 pairs verifies."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from sim.pairs import catalogue
from tests.integration.test_verify_cli import run_verify
from tests.processes import record_from_sim

pytestmark = pytest.mark.e2e
SECONDS = float(os.environ.get("KRAKENFLOW_RECORD_SECONDS", "60"))


def test_sixty_second_recording_at_depth_1000_on_50_pairs_verifies(tmp_path: Path) -> None:
    symbols = [spec.symbol for spec in catalogue(50)]
    output = tmp_path / "sim-d1000.jsonl"
    record_from_sim(output, symbols, 1000, SECONDS, "--pair-rate", "4", "--seed", "42")
    result = run_verify("--json", str(output))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    counts = orjson.loads(result.stdout)[output.name]
    assert sorted(counts) == sorted(symbols)
    checked = sum(c["checked"] for c in counts.values())
    assert all(c["failed"] == 0 for c in counts.values())
    assert checked > SECONDS * 50 * 2, f"only {checked} checksums in {SECONDS} s"
    print(f"{checked} checksums verified on {len(symbols)} pairs at depth 1000 over {SECONDS:.0f} s")
