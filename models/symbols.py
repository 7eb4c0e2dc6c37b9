"""Symbol normalization: Kraken's ``BTC/USD`` <-> the downstream key ``BTC-USD``.

Kraken v2 already writes ``BTC`` and ``DOGE``; the legacy names other Kraken sources use (REST
``wsname``, v1: ``XBT/USD``, ``XDG/USD``) map to the same normalized symbols, so every topic keys a
market the same way whatever fed it.
"""

from __future__ import annotations

LEGACY_ASSETS = {"XBT": "BTC", "XDG": "DOGE"}


def normalize(exchange_symbol: str) -> str:
    """``BTC/USD`` -> ``BTC-USD``; ``XBT/USD`` -> ``BTC-USD``."""
    base, _, quote = exchange_symbol.partition("/")
    base = LEGACY_ASSETS.get(base, base)
    quote = LEGACY_ASSETS.get(quote, quote)
    return f"{base}-{quote}" if quote else base


def to_exchange(symbol: str) -> str:
    """``BTC-USD`` -> ``BTC/USD`` (the Kraken v2 form; ``XBT-USD`` -> ``BTC/USD`` too)."""
    return normalize(symbol.replace("-", "/", 1)).replace("-", "/", 1)
