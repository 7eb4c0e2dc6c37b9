"""Run krakenflow commands as real processes for tests (readiness read from their output, no sleeps)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sim_process(*args: str) -> Iterator[int]:
    """``krakenflow sim`` on a free port; yields the port once it says it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sim", "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the simulator announces itself
        if "krakenflow simulator on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def record_from_sim(output: Path, symbols: list[str], depth: int, seconds: float, *sim_args: str) -> None:
    with sim_process(*sim_args) as port:
        subprocess.run(
            [sys.executable, "-m", "cli.main", "record", str(output), "--url", f"ws://127.0.0.1:{port}/v2",
             "--symbols", ",".join(symbols), "--depth", str(depth), "--seconds", str(seconds)],
            cwd=ROOT, check=True, capture_output=True, timeout=seconds + 60,
        )
