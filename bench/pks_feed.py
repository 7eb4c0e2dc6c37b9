"""Feed frames straight into python-kraken-sdk's ``SpotOrderBookClient`` book logic, without a socket.

Bench-only. The SDK's constructor needs a running loop and builds a websocket/REST client, so the
client is assembled with ``object.__new__`` and its private (name-mangled, the SDK's choice)
attributes are set directly; the REST precision lookup is answered from the capture's instrument
frame, the per-message ``print`` and the resubscribe-on-mismatch path are replaced by counters.
``on_message`` is a coroutine that never suspends with these stubs, so it is driven synchronously.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import kraken.spot.orderbook as sdk_orderbook
from kraken.spot import SpotOrderBookClient

logging.getLogger("kraken").setLevel(logging.WARNING)


async def _no_sleep(_seconds: float) -> None:
    return None


sdk_orderbook.asyncio_sleep = _no_sleep  # the SDK sleeps 3 s between unsubscribe and subscribe


class _Market:
    """Stands in for the SDK's REST ``Market().get_asset_pairs`` (needs the network)."""

    def __init__(self) -> None:
        self.precisions: dict[str, tuple[int, int]] = {}

    def get_asset_pairs(self, pair: str) -> dict[str, dict[str, int]]:
        price, qty = self.precisions[pair]
        return {pair: {"pair_decimals": price, "lot_decimals": qty}}


class _Client(SpotOrderBookClient):  # type: ignore[misc]
    stats: dict[str, int]

    async def on_book_update(self, pair: str, message: dict[str, Any]) -> None:
        if "error" in message:
            self.stats["invalid"] += 1
        elif message["type"] == "update":
            self.stats["valid" if self.get(pair)["valid"] else "invalid"] += 1

    async def remove_book(self, pairs: list[str]) -> None:  # would unsubscribe over the socket
        return None

    async def add_book(self, pairs: list[str]) -> None:
        return None


def make_feeder(depth: int) -> tuple[Callable[[bytes], None], dict[str, int]]:
    """A ``feed(raw_line)`` that runs the SDK's own parse (json.loads) and book code on one frame."""
    client = object.__new__(_Client)
    market = _Market()
    client._SpotOrderBookClient__book = {}
    client._SpotOrderBookClient__depth = depth
    client._SpotOrderBookClient__callback = None
    client._SpotOrderBookClient__market = market
    stats = client.stats = {"frames": 0, "valid": 0, "invalid": 0, "errors": 0}
    on_message = client.on_message

    def feed(raw: bytes) -> None:
        message = json.loads(raw)
        if message.get("channel") == "instrument":
            for pair in message["data"]["pairs"]:
                market.precisions[pair["symbol"]] = (pair["price_precision"], pair["qty_precision"])
            return
        if message.get("channel") == "book":
            stats["frames"] += 1
        coroutine = on_message(message)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        except Exception:  # the SDK raises on string-typed numbers (Kraken's docs example)
            stats["errors"] += 1
            return
        coroutine.close()
        raise RuntimeError("SpotOrderBookClient.on_message suspended; the bench cannot drive it")

    return feed, stats
