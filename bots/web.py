"""`parley serve` and `parley web`: the group chat in the browser.

`serve` is what a newcomer runs first: the page and the model in one process, on the
embedded store (or on Redis when PARLEY_REDIS_URL is set, where `parley worker` processes
can help answer). `web` serves the page alone; workers answer through Redis. Importing this
module does not import TensorFlow: the model is loaded by the function `serve` is given.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from adapters.web import WebAdapter
from bots.service import run_adapter
from bots.settings import WebSettings
from core.errors import ConfigError
from core.queue.types import Store
from core.queue.worker import Worker

if TYPE_CHECKING:
    from core.model.responder import Responder

log = logging.getLogger("parley.web")

BIND_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def room_url(settings: WebSettings, room: str = "lobby", show_token: bool = False) -> str:
    """The address to open; the token itself only when `show_token` (never into a log)."""
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # every address: this machine's own is one of them
        host = "127.0.0.1"
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/r/{room}"
    if settings.token is not None:
        token = quote(settings.token, safe="") if show_token else "$PARLEY_WEB_TOKEN"
        url += f"?token={token}"
    return url


class Chat(WebAdapter):
    """The web adapter as a process: says where to point a browser and, for `serve`, runs
    the model worker next to the adapter, on the same store and the same stop signal."""

    def __init__(
        self, store: Store, settings: WebSettings, load: Callable[[], Responder] | None
    ) -> None:
        super().__init__(
            store,
            bot_name=settings.bot_name,
            max_chars=settings.max_chars,
            history=settings.history,
            max_rooms=settings.max_rooms,
            max_connections=settings.max_connections,
            rate=settings.rate,
            token=settings.token,
        )
        self.settings = settings
        self.load = load
        self.worker: Worker | None = None

    async def run(
        self,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None = None,
        on_waiting: Callable[[str], None] | None = None,
    ) -> None:
        # The page is served already: people can come in and talk while the model loads.
        url = room_url(self.settings, show_token=sys.stdout.isatty())
        loading = " (the bot answers once its model has loaded)" if self.load else ""
        print(f"parley: open {url} in a browser{loading}", flush=True)
        if self.load is None:
            await super().run(stop, on_ready, on_waiting)
            return
        model = asyncio.create_task(self._run_model(stop, on_ready))

        def stop_if_failed(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                stop.set()  # no model, no chat worth serving: stop and say why

        model.add_done_callback(stop_if_failed)
        try:
            await super().run(stop, on_waiting=on_waiting)
        finally:
            stop.set()
            await asyncio.wait([model])
        if model.exception() is not None:
            raise model.exception()  # type: ignore[misc]

    async def _run_model(self, stop: asyncio.Event, on_ready: Callable[[], None] | None) -> None:
        assert self.load is not None
        started = time.monotonic()
        responder = await asyncio.to_thread(self.load)
        # Every shape a batch can take compiles now, not while a room waits for a reply.
        await asyncio.to_thread(responder.warm_up, self.settings.queue.batch)
        self.worker = Worker(
            self.store,
            responder.reply,
            batch_size=self.settings.queue.batch,
            max_wait=self.settings.queue.max_wait,
        )
        log.info("model %s ready in %.1f s", self.settings.model, time.monotonic() - started)
        print("parley: the bot is ready", flush=True)
        if on_ready is not None:
            on_ready()  # systemd: the service is ready once it can answer
        try:
            await self.worker.run(stop)
        finally:
            log.info("worker stopped: %s", self.worker.stats)

    async def health(self) -> str | None:
        if self.load is not None and self.worker is None:
            return "loading the model"
        return await super().health()


async def serve(settings: WebSettings, load: Callable[[], Responder] | None) -> None:
    """Serve the chat until SIGTERM or SIGINT; with `load`, also answer with its model."""
    adapter = Chat(settings.queue.store(), settings, load)
    host, port = settings.http_host, settings.port
    try:
        await run_adapter(adapter, host, port, adapter.make_app(), settings.instance)
    except OSError as exc:
        if exc.errno not in BIND_ERRORS:
            raise
        raise ConfigError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno).lower()}; "
            "set PARLEY_WEB_PORT (or PARLEY_HTTP_HOST)"
        ) from None
