"""Fault controls: the failures a Kraken connection really has, on demand.

* drop the connection now, or every N seconds (close code 1006, as Cloudflare drops do);
* corrupt the next checksum of a pair (the book itself stays right, so a resync heals it);
* go silent on a pair while heartbeats keep flowing (the market moves on meanwhile);
* delay traffic (added latency on every frame) or burst it (many events at once);
* reject the next subscriptions with Kraken's rate-limit error;
* close every connection with a given close code (1008 policy violation, 1013 try again later, ...);
* stop answering ``ping`` (a connection that is open but no longer served);
* announce a system status (``maintenance``, ``cancel_only``, ``post_only``, ``online``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Faults:
    drop_every: float = 0.0
    delay: float = 0.0
    reject_next: int = 0
    corrupt: set[str] = field(default_factory=set)
    corrupt_always: set[str] = field(default_factory=set)  # every book message wrong: a pair kept invalid
    silent: set[str] = field(default_factory=set)
    drops: int = 0
    mute_pongs: bool = False
    system: str = "online"
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_drop_every(self, seconds: float) -> None:
        self.drop_every = max(0.0, seconds)
        self._changed.set()

    def corrupts(self, symbol: str) -> bool:
        return symbol in self.corrupt or symbol in self.corrupt_always

    def take_corruption(self, symbol: str) -> bool:
        if symbol in self.corrupt_always:
            return True
        if symbol in self.corrupt:
            self.corrupt.discard(symbol)
            return True
        return False

    def is_silent(self, symbol: str) -> bool:
        return symbol in self.silent

    def take_rejection(self) -> bool:
        if self.reject_next > 0:
            self.reject_next -= 1
            return True
        return False

    async def run_drops(self, drop: Callable[[], int]) -> None:
        """Drop every connection each ``drop_every`` seconds while it is set."""
        while True:
            if self.drop_every <= 0:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), self.drop_every)
            except TimeoutError:
                drop()
                self.drops += 1

    def describe(self) -> dict[str, Any]:
        return {
            "drop_every": self.drop_every, "delay": self.delay, "reject_next": self.reject_next,
            "corrupt": sorted(self.corrupt), "corrupt_always": sorted(self.corrupt_always),
            "silent": sorted(self.silent), "drops": self.drops,
            "mute_pongs": self.mute_pongs, "system": self.system,
        }
