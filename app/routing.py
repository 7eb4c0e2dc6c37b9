"""Shared by the web views: answer on the worker that owns a pair, list across every worker."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, Web

from app.main import app


def json_response(web: Web, body: Any, status: int = 200) -> Response:
    return web.bytes(orjson.dumps(body), content_type="application/json", status=status)


async def from_owner(web: Web, request: Request, table: str, key: bytes, topic: Any = None) -> Response | None:
    """The owner's answer (proxied), or None when this worker owns ``key`` (or no assignment is known
    yet, starting up: then this worker answers with what it has). Routed by ``table``, or by ``topic``."""
    try:
        if topic is not None:
            return await app.router.route_topic_req(topic, key, web, request)
        return await app.router.route_req(table, key, web, request)
    except SameNode:
        return None
    except Exception:  # no assignment known yet
        return None


async def from_other_workers(path: str, field: str) -> list[dict[str, Any]]:
    """Rows that the other workers list at ``path`` (asked with ``local=1``); a worker leaving
    mid-request is skipped rather than failing the listing."""
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = {str(h).rstrip("/") for h in app.router.tables_metadata()} - {me}

    async def fetch(host: str) -> list[dict[str, Any]]:
        try:
            async with app.http_client.get(f"{host}{path}?local=1", timeout=5) as response:
                return list(orjson.loads(await response.read())[field])
        except Exception:
            return []

    results = await asyncio.gather(*(fetch(h) for h in hosts))
    return [row for rows in results for row in rows]
