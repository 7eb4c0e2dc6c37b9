"""Feed frames the way cryptofeed's Kraken handler feeds its C order book (the ``order-book`` package).

Bench-only. Per frame: ``json.loads`` with ``parse_float=Decimal`` (cryptofeed's number handling), then
each level set on, or deleted from, an ``order_book.OrderBook(max_depth=depth, checksum_format="KRAKEN",
max_depth_strict=True)`` (strict: levels past the depth are dropped, as Kraken truncates), and the
book's own KRAKEN checksum compared with the frame's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from order_book import OrderBook


def make_feeder(depth: int) -> tuple[Callable[[bytes], None], dict[str, int]]:
    books: dict[str, Any] = {}
    stats = {"frames": 0, "valid": 0}

    def feed(raw: bytes) -> None:
        message = json.loads(raw, parse_float=Decimal)
        if message.get("channel") != "book" or message.get("type") not in ("snapshot", "update"):
            return
        for data in message["data"]:
            stats["frames"] += 1
            symbol = data["symbol"]
            if message["type"] == "snapshot" or symbol not in books:
                books[symbol] = OrderBook(max_depth=depth, checksum_format="KRAKEN", max_depth_strict=True)
            book = books[symbol]
            for side, levels in (("bid", data.get("bids", ())), ("ask", data.get("asks", ()))):
                target = book.bids if side == "bid" else book.asks
                for level in levels:
                    price, qty = Decimal(level["price"]), Decimal(level["qty"])
                    if qty == 0:
                        if price in target:
                            del target[price]
                    else:
                        target[price] = qty
            try:
                ok = book.checksum() == data.get("checksum")
            except ValueError:  # fewer than 10 levels on a side: the C book refuses a KRAKEN checksum
                ok = False
            stats["valid"] += ok

    return feed, stats
