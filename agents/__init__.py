"""Faust agents: thin wiring from topics to the pure domain in ``models/`` and the store in ``tables/``."""
