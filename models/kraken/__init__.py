"""Kraken WebSocket API v2: typed messages, the frame parser, the wire rules. A second venue would be a sibling package."""
