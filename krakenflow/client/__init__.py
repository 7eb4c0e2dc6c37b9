"""Rebuild verified Kraken books from krakenflow's ``kraken.book.deltas``.

- :class:`BookClient` (asyncio) and :class:`BlockingBookClient` (threads): subscribe to symbols,
  get callbacks or iterate :class:`BookUpdate`\\ s; each book is checked against the CRC32 its record
  carries, gaps and repeats are found through ``(epoch, seq)``, and a book is restored by itself.
- :class:`LocalBook`: ``book.bids[:10]``, ``best_bid``, ``best_ask``, ``spread``, ``checksum_ok``.
- :class:`BookTracker`: the sequencing rules alone (no I/O), for feeding records from elsewhere.
"""

from krakenflow.client.blocking import BlockingBookClient
from krakenflow.client.book import LocalBook
from krakenflow.client.stream import BookClient, ClientError, RecoveryError
from krakenflow.client.tracker import BookTracker, BookUpdate, SymbolStats

__all__ = ["BlockingBookClient", "BookClient", "BookTracker", "BookUpdate", "ClientError", "LocalBook",
           "RecoveryError", "SymbolStats"]
