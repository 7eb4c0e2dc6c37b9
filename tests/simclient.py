"""A small test client for the simulator (real WebSocket connections on loopback)."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from models.book import BookDelta, L2Book
from models.kraken.frames import BookFrame, Frame, ParseError, parse_frame
from models.session import BookSession, PairState, RawRecord

TIMEOUT = 30.0


class CheckingSession(BookSession):
    """The book session, counting every checksum and keeping the failures."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0
        self.failures: list[BookDelta] = []
        self.rejects: list[str] = []

    def on_delta(self, st: PairState, delta: BookDelta, record: RawRecord) -> None:
        if delta.expected_checksum is not None:
            self.checked += 1
            if not delta.checksum_ok:
                self.failures.append(delta)

    def on_reject(self, record: RawRecord, reason: str) -> None:
        self.rejects.append(reason)

    def invalidate(self, st: PairState, reason: str, record: RawRecord | None) -> None:
        return None  # a test client keeps applying: one bad value is one failure (as krakenflow verify)

    def books(self) -> dict[str, L2Book]:
        return {symbol: st.book for symbol, st in self.pairs.items() if st.book is not None}


class SimClient:
    """Connects, subscribes, and checks every book message with the book engine."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session = CheckingSession()
        self.raw: list[str] = []

    @classmethod
    async def open(cls, url: str) -> SimClient:
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
        self.session.on_frame(RawRecord(b"", None, 0, len(self.raw)), frame)
        assert not self.session.rejects, self.session.rejects
        return text, frame

    @property
    def checked(self) -> int:
        return self.session.checked

    @property
    def failures(self) -> list[BookDelta]:
        return self.session.failures

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
