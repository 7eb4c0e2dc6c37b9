"""Shared by the web views: answer on the worker that owns a pair, list across every worker.

Answers are honest about the cluster: a pair whose owner cannot be reached gets a 503 naming the owner
and the reason (never a local 404 or a stale local copy), and a listing names the workers that did not
answer instead of silently leaving out their rows."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from faust.web import Request, Response, Web
from yarl import URL

OWNER_TIMEOUT = 5.0  # seconds a proxied request or a listing waits for another worker


def json_response(web: Web, body: Any, status: int = 200) -> Response:
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


def _ident(url: URL) -> tuple[str, int]:
    return (url.host if url.scheme else url.path) or "", int(url.port or 80)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {OWNER_TIMEOUT:.0f} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Router:
    """Owner routing and cross-worker listing for one app's views."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def owner_of(self, table: str, key: bytes, topic: Any = None) -> URL | None:
        """The worker that owns ``key`` (by ``table``, or by ``topic``), or None when it is this one or no
        owner is known yet (starting up)."""
        app = self.app
        try:
            owner: URL = (app.router.external_topic_key_store(topic, key) if topic is not None
                          else app.router.key_store(table, key))
        except KeyError:  # no assignment known yet
            return None
        return None if _ident(owner) == _ident(URL(str(app.conf.canonical_url))) else owner

    async def from_owner(self, web: Web, request: Request, table: str, key: bytes,
                         topic: Any = None) -> Response | None:
        """The owner's answer (proxied), a 503 naming the owner when it cannot be reached, or None when
        this worker owns ``key`` or no owner is known yet (starting up: this worker answers with what it
        has). Routed by ``table``, or by ``topic``."""
        app = self.app
        owner = self.owner_of(table, key, topic)
        if owner is None:
            return None
        host, port = _ident(owner)
        url = request.url.with_host(host).with_port(port)
        try:
            async with app.http_client.request(method=request.method, headers=request.headers, url=url,
                                               timeout=aiohttp.ClientTimeout(total=OWNER_TIMEOUT)) as response:
                return web.text(await response.text(), content_type=response.content_type, status=response.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return json_response(web, {
                "error": f"the worker that owns {key.decode(errors='replace')} could not be reached",
                "owner": str(owner), "reason": _reason(exc),
                "hint": "retry shortly: a worker that died hands its partitions over once its group session "
                        "times out; one that is only slow answers again by itself",
            }, status=503)

    async def listing(self, web: Web, request: Request, path: str, field: str,
                      rows: list[dict[str, Any]]) -> Response:
        """``{field: rows, "count": n, "unanswered": [...]}``: this worker's ``rows`` and, unless
        ``?local=1``, every other worker's, sorted by symbol; ``unanswered`` names each worker whose rows
        are missing and why."""
        unanswered: list[dict[str, str]] = []
        if request.query.get("local") != "1":
            others, unanswered = await self.from_other_workers(path, field)
            rows = rows + others
        rows.sort(key=lambda r: r["symbol"])
        return json_response(web, {field: rows, "count": len(rows), "unanswered": unanswered})

    async def from_other_workers(self, path: str, field: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Rows that the other workers list at ``path`` (asked with ``local=1``), and the workers that did
        not answer (with the reason)."""
        app = self.app
        me = str(app.conf.canonical_url).rstrip("/")
        hosts = sorted({str(h).rstrip("/") for h in app.router.tables_metadata()} - {me})

        async def fetch(host: str) -> list[dict[str, Any]] | str:
            try:
                async with app.http_client.get(f"{host}{path}?local=1",
                                               timeout=aiohttp.ClientTimeout(total=OWNER_TIMEOUT)) as response:
                    if response.status != 200:
                        return f"HTTP {response.status}"
                    return list(orjson.loads(await response.read())[field])
            except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError, KeyError) as exc:
                return _reason(exc)

        results = await asyncio.gather(*(fetch(h) for h in hosts))
        rows = [row for result in results if isinstance(result, list) for row in result]
        unanswered = [{"worker": host, "reason": result} for host, result in zip(hosts, results, strict=True)
                      if isinstance(result, str)]
        return rows, unanswered
