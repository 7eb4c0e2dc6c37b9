"""The simulator's HTTP control API, served on the WebSocket port: ``GET /control/<action>?...``.

| action | parameters | effect |
|---|---|---|
| ``state`` | | connections, ``connects`` (when each was accepted), events, frames sent, subscriptions, faults |
| ``drop`` | | abort every connection now |
| ``drop_every`` | ``seconds`` (0 stops) | abort every connection periodically |
| ``corrupt`` | ``symbol``, ``keep`` (1/0) | the next book message of ``symbol`` carries a wrong checksum; ``keep=1``: every one until ``keep=0`` |
| ``silence`` | ``symbol``, ``on`` (1/0) | stop/resume data for ``symbol``; heartbeats continue |
| ``delay`` | ``seconds`` | add latency to every frame |
| ``burst`` | ``symbol``, ``events`` | generate many events of ``symbol`` at once |
| ``reject`` | ``count`` | answer the next ``count`` subscribe acks with ``Exceeded msg rate`` |
| ``pause`` | ``on`` (1/0) | stop/resume market events (heartbeats continue): a quiet market to compare books |
| ``book`` | ``symbol``, ``depth`` | the exchange's own top ``depth`` levels, checksum and last ``trade_id`` |
| ``close`` | ``code``, ``reason`` | close every connection with that close code (1008, 1013, ...) |
| ``pongs`` | ``on`` (1/0) | answer ``ping`` or stop answering it (an open connection no longer served) |
| ``status`` | ``system`` | announce ``online``, ``maintenance``, ``cancel_only`` or ``post_only`` |
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from models.kraken.messages import SYSTEM_STATUSES

if TYPE_CHECKING:
    from sim.server import Simulator


def handle_control(sim: Simulator, path: str) -> tuple[HTTPStatus, dict[str, Any]]:
    url = urlsplit(path)
    action = url.path.removeprefix("/control/").strip("/")
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    try:
        return HTTPStatus.OK, _apply(sim, action, query)
    except KeyError as exc:
        return HTTPStatus.BAD_REQUEST, {"error": f"missing parameter {exc.args[0]!r} for {action!r}"}
    except ValueError as exc:
        return HTTPStatus.BAD_REQUEST, {"error": str(exc)}


def _symbol(sim: Simulator, query: dict[str, str]) -> str:
    symbol = query["symbol"]
    if symbol not in sim.specs:
        raise ValueError(f"unknown symbol {symbol!r}; the simulator lists its pairs on the instrument channel")
    return symbol


def _apply(sim: Simulator, action: str, query: dict[str, str]) -> dict[str, Any]:
    faults = sim.faults
    if action == "state":
        return sim.state()
    if action == "drop":
        return {"dropped": sim.drop_connections()}
    if action == "book":
        symbol = _symbol(sim, query)
        bids, asks, checksum = sim.market(symbol).snapshot(int(query.get("depth", "10")))
        return {"symbol": symbol, "bids": bids, "asks": asks, "checksum": checksum, "events": sim.events,
                "trade_id": sim.market(symbol).trade_id}
    if action == "close":
        return {"closed": sim.close_connections(int(query.get("code", "1000")), query.get("reason", ""))}
    if action == "status":
        system = query.get("system", "online")
        if system not in SYSTEM_STATUSES:
            raise ValueError(f"system must be one of {', '.join(SYSTEM_STATUSES)}, not {system!r}")
        return {"announced": sim.announce(system)}
    if action == "drop_every":
        faults.set_drop_every(float(query["seconds"]))
    elif action == "corrupt":
        symbol = _symbol(sim, query)
        keep = query.get("keep")
        if keep is None:
            faults.corrupt.add(symbol)
        elif keep in ("1", "true", "yes"):
            faults.corrupt_always.add(symbol)
        else:
            faults.corrupt_always.discard(symbol)
    elif action == "silence":
        symbol = _symbol(sim, query)
        if query.get("on", "1") in ("1", "true", "yes"):
            faults.silent.add(symbol)
        else:
            faults.silent.discard(symbol)
    elif action == "pongs":
        faults.mute_pongs = query.get("on", "1") not in ("1", "true", "yes")
    elif action == "delay":
        faults.delay = max(0.0, float(query["seconds"]))
    elif action == "burst":
        sim.burst(_symbol(sim, query), int(query["events"]))
    elif action == "reject":
        faults.reject_next = int(query["count"])
    elif action == "pause":
        sim.paused = query.get("on", "1") in ("1", "true", "yes")
        sim.wake()
    else:
        raise ValueError(
            f"unknown control action {action!r}; use one of state, drop, drop_every, close, pongs, status, "
            "corrupt, silence, delay, burst, reject, pause, book"
        )
    return {"ok": True, "faults": faults.describe()}
