"""A small test client for the simulator (real WebSocket connections on loopback)."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from models.book import BookDelta
from models.frames import BookFrame, Frame, ParseError, parse_frame
from models.market import Market

TIMEOUT = 30.0


class SimClient:
    """Connects, subscribes, and checks every book message with the book engine."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.market = Market()
        self.checked = 0
        self.failures: list[BookDelta] = []
        self.raw: list[str] = []

    @classmethod
    async def open(cls, url: str) -> "SimClient":
        # max_queue=None: frames left unread at close must not stall the closing handshake
        return cls(await connect(url, max_size=2**24, compression=None, max_queue=None))

    async def send(self, request: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(request).decode())

    async def subscribe(self, channel: str, symbols: list[str] | None = None, **params: Any) -> None:
        body: dict[str, Any] = {"channel": channel, **params}
        if symbols is not None:
            body["symbol"] = symbols
        await self.send({"method": "subscribe", "params": body})

    async def frame(self) -> tuple[str, Frame]:
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        text = raw if isinstance(raw, str) else raw.decode()
        self.raw.append(text)
        frame = parse_frame(text)
        assert not isinstance(frame, ParseError), (frame, text[:300])
        for result in self.market.on_frame(frame):
            assert isinstance(result, BookDelta), result
            if result.expected_checksum is not None:
                self.checked += 1
                if not result.checksum_ok:
                    self.failures.append(result)
        return text, frame

    async def book_messages(self, count: int) -> int:
        """Read until ``count`` more book messages arrived; returns frames read."""
        seen = read = 0
        while seen < count:
            _, frame = await self.frame()
            read += 1
            if isinstance(frame, BookFrame):
                seen += 1
        return read

    async def close(self) -> None:
        await self.ws.close()


def control(port: int, action: str, **query: Any) -> dict[str, Any]:
    """A real HTTP request to the simulator's control API (call via asyncio.to_thread)."""
    qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/control/{action}?{qs}", timeout=10) as response:
        return orjson.loads(response.read())
