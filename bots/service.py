"""Running one adapter as a process: its HTTP server (platform routes, /healthz,
/metrics), signal handling, systemd readiness and watchdog, and an orderly stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from adapters.base import Adapter
from adapters.ops import add_ops_routes, serve
from bots import systemd
from bots.settings import STORE_REFUSED
from core.errors import ConfigError, StoreAuthError
from core.queue.sender import sender_identity

log = logging.getLogger("parley.service")


async def run_adapter(
    adapter: Adapter,
    host: str,
    port: int,
    app: web.Application | None = None,
    instance: str = "",
) -> None:
    """Serve `app` (the adapter's own routes, if any) plus /healthz and /metrics on
    host:port, run the adapter until SIGTERM or SIGINT, then stop it and close the store.

    The adapter's sender holds its chats as this host's `instance` of its platform. Raises
    `ConfigError` when the store refuses the credentials."""
    adapter.sender.identity = sender_identity(adapter.platform, instance)
    app = app or web.Application()
    add_ops_routes(app, adapter.health, adapter.store, adapter.platform)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await serve(app, host, port)
    log.info("%s: HTTP on %s:%d (/healthz, /metrics)", adapter.platform, host, port)
    watchdog = asyncio.create_task(systemd.watchdog())

    def waiting(reason: str) -> None:
        # Up and waiting for the platform, which is no failure: ready as far as systemd is
        # concerned (its start timeout would kill a process doing the right thing), not
        # ready on /healthz, and the status says why.
        systemd.notify("READY=1", f"STATUS={reason}; retrying")

    try:
        await adapter.run(
            stop,
            on_ready=lambda: systemd.ready(f"serving {adapter.platform}"),
            on_waiting=waiting,
        )
    except StoreAuthError:
        raise ConfigError(STORE_REFUSED) from None
    finally:
        systemd.stopping()
        watchdog.cancel()
        await runner.cleanup()
        await adapter.store.close()
        log.info("%s adapter stopped: %s", adapter.platform, adapter.sender.stats)
