"""Pure domain: Kraken v2 frames, exact decimals, L2 books, checksums and deltas.

Nothing in this package imports Faust, Kafka or does I/O, so it is fast and testable alone.
"""
