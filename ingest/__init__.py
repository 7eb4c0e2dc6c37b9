"""The Kraken connection side: WebSocket sessions, the elected live ingest, records for ``kraken.raw``."""
