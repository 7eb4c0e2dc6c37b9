"""Replay mode: serve a capture file to each subscriber, with original or accelerated timing.

A capture (``../shared/kraken-captures`` format) already holds the status frame, the acks and the
data, so the frames go out verbatim once the client sends its first subscribe; later requests are
not answered (the capture has its own acks). Timing follows the frames' own timestamps (book and
trade ``timestamp``, ack ``time_out``) divided by ``speed``, each frame due at the time its stamp
gives from the first stamped frame (a late frame does not delay the ones after it: no drift);
``speed=0`` sends as fast as the client takes them (the replay waits while the client's send queue is
half full, as max-rate mode does). ``origins`` (also in the control API's state) gives, per
connection, the first stamp and the wall time it went out at, so a bench knows each frame's due time.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.server import Client, Simulator

_STAMP = re.compile(r'"(?:timestamp|time_out)":"([0-9T:.\-]+)Z"')


def _epoch_ns(stamp: str) -> int:
    whole, _, frac = stamp.partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9])


class Replay:
    def __init__(self, path: Path, speed: float = 1.0) -> None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SystemExit(f"cannot read capture {path}: {exc.strerror}; give an existing capture file") from exc
        self.frames: list[tuple[int | None, str]] = []
        for line in text.splitlines():
            if line.strip():
                match = _STAMP.search(line)
                self.frames.append((_epoch_ns(match.group(1)) if match else None, line))
        self.speed = speed
        self.started: set[int] = set()
        self.origins: dict[int, tuple[int, int]] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak refs only)

    async def serve(self, sim: Simulator, client: Client, request: dict[str, Any]) -> None:
        if request.get("method") != "subscribe" or client.connection_id in self.started:
            return
        self.started.add(client.connection_id)
        task = asyncio.create_task(self._stream(sim, client), name=f"replay-{client.connection_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _stream(self, sim: Simulator, client: Client) -> None:
        origin: tuple[int, int] | None = None  # (the first stamp, the wall time in ns it went out at)
        for stamp, line in self.frames:
            if self.speed > 0 and stamp is not None:
                if origin is None:
                    origin = self.origins[client.connection_id] = (stamp, time.time_ns())
                else:  # the capture's own pacing
                    ahead = (origin[1] + (stamp - origin[0]) / self.speed - time.time_ns()) / 1e9
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            if self.speed == 0:  # as fast as the socket takes it: let the writer drain first
                while client.queue.qsize() > client.queue.maxsize // 2:
                    await asyncio.sleep(0.001)
            sim.enqueue(client, line)
