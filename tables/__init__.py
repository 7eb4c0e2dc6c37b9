"""The store layer: how book state lives in RocksDB-backed Faust tables and their changelogs."""
