"""A Kraken-compatible exchange simulator: public WebSocket v2 market data on loopback.

Live Kraken is unreachable from test and CI machines, so tests, benchmarks and the offline demo run
against this server. It speaks the frames of ``wss://ws.kraken.com/v2`` as the captures in
``../shared/kraken-captures`` show them, and it checks itself with the same book engine.
"""
