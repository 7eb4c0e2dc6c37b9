"""The native book core (``native/``, Rust via PyO3), when it is built; the pure-Python engine otherwise.

:func:`models.book.new_book` and :func:`models.kraken.frames.parse_frame` use it while :data:`enabled`
(``KRAKENFLOW_NATIVE=0`` turns it off for a worker; tests switch it with :func:`use`). The Python engine
is the reference: the native one is proven identical to it on the real captures, the simulator's
depth-1000 recording and the property tests (``tests/unit/domain/test_native.py``). Books whose
instrument precision is unknown stay in Python (they are ordered as Decimals).
"""

from __future__ import annotations

from typing import Any

try:  # built by `make` when a Rust toolchain is there (pip install ./native)
    import krakenflow_native as _native
except ImportError:  # pragma: no cover - depends on the build
    _native = None

#: Whether the extension is importable.
available: bool = _native is not None
#: Whether new books and book frames use it.
enabled: bool = available
#: Largest precision the native book takes (its ticks are 128-bit integers; a 32-character token with
#: 18 more decimals still fits).
MAX_PRECISION = 18

Book: Any = getattr(_native, "Book", None)
parse_book: Any = getattr(_native, "parse_book", None)


def use(on: bool) -> bool:
    """Use the native core from now on (if it is available); returns whether it is in use."""
    global enabled
    enabled = on and available
    return enabled
