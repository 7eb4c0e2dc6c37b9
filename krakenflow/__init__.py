"""krakenflow's public API for consumers of its topics: :mod:`krakenflow.client` rebuilds verified books
from ``kraken.book.deltas``. The pipeline itself lives in the project's rooms (``app/``, ``agents/``, ...)."""
