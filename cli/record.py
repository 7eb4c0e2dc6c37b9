"""``krakenflow record``: write what a Kraken v2 connection receives to a capture file (JSON Lines).

Each line is one frame exactly as received, so ``krakenflow verify`` and ``krakenflow replay`` can use
it. The instrument channel is subscribed first so the file carries the pairs' precisions.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from websockets.asyncio.client import connect

from models.kraken.wire import subscribe_requests


async def record(url: str, symbols: list[str], depth: int, seconds: float, path: Path,
                 channels: tuple[str, ...] = ("book",)) -> int:
    """Record for ``seconds``; returns the number of frames written."""
    frames = 0
    deadline = time.monotonic() + seconds
    with path.open("w") as out:
        async with connect(url, max_size=2**24, compression=None) as ws:
            for request in subscribe_requests(symbols, depth, channels):
                await ws.send(request.decode())
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    message = await asyncio.wait_for(ws.recv(), remaining)
                except TimeoutError:
                    break
                out.write(message if isinstance(message, str) else message.decode())
                out.write("\n")
                frames += 1
    return frames
