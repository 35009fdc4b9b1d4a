"""`/healthz` and `/metrics`, served by every parley process on its own local port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.http import HEADER_TIMEOUT, quiet_server_logs
from core import telemetry
from core.queue.types import Outbox

Health = Callable[[], Awaitable[str | None]]  # None when ready, else the reason


def add_ops_routes(app: web.Application, health: Health, store: Outbox, platform: str) -> None:
    """Add `/healthz` (200 ready / 503 with the reason) and `/metrics` to `app`."""

    async def healthz(_: web.Request) -> web.Response:
        reason = await health()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        try:
            inbox, outbox = await store.depth(platform)
        except Exception:  # the store is down: serve the counters anyway
            pass
        else:
            telemetry.QUEUE_CHATS.labels(platform, "inbox").set(inbox)
            telemetry.QUEUE_CHATS.labels(platform, "outbox").set(outbox)
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def serve(
    app: web.Application, host: str, port: int, header_timeout: float = HEADER_TIMEOUT
) -> web.AppRunner:
    """Start serving `app`; the caller cleans the returned runner up.

    A connection that has not sent a whole request's headers `header_timeout` seconds after
    it opened (or after its previous response) is closed: aiohttp's keep-alive timer runs
    from the moment a connection opens, so it is also the header deadline.
    """
    quiet_server_logs()
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=header_timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
