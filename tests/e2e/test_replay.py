"""Recorded sessions reprocessed: `krakenflow replay` of the real captures through the pipeline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cluster import BIN, Cluster
from tests.conftest import capture_files
from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def test_captures_replayed_through_the_pipeline_verify_767_of_767(tmp_path: Path) -> None:
    # the worker books only the pairs its cluster subscribes: the captures' pairs
    cluster = Cluster(tmp_path, ["BTC/USD", "ETH/USD", "MINA/GBP", "MATIC/USD", "BTC/USDT"], with_sim=False)
    try:
        cluster.start_worker()
        result = subprocess.run([str(BIN / "krakenflow"), "replay", *map(str, capture_files())], cwd=ROOT,
                                env=cluster.env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "published 940 frames" in result.stdout
        deltas = cluster.read("book.deltas", until=lambda r: len(r) >= 767, timeout=120)
        assert len(deltas) == 767
        failed = [(d["symbol"], d["raw_offset"]) for d in deltas if d["checksum_ok"] is not True]
        assert failed == []
        assert {d["symbol"] for d in deltas} == {"BTC-USD", "ETH-USD", "MINA-GBP", "MATIC-USD", "BTC-USDT"}
        assert sum(d["is_snapshot"] for d in deltas) == 12
        assert cluster.read("deadletter") == []
    finally:
        cluster.close()
