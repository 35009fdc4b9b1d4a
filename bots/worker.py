"""`parley worker`: answer queued messages from Redis with the model, until SIGTERM.

Under systemd it reports ready once every graph a reply needs is compiled and Redis
answered, pings the watchdog from the event loop, and reloads the model on SIGHUP without
dropping the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from adapters.ops import add_ops_routes, serve
from bots import systemd
from bots.settings import STORE_REFUSED, WorkerSettings
from core.errors import ConfigError, StoreAuthError
from core.model.responder import Responder
from core.queue.types import Store
from core.queue.worker import Worker
from core.retry import Backoff, Stopped, retry

log = logging.getLogger("parley.worker")


async def _prepare(responder: Responder, batch: int) -> None:
    """Compile what batches of `batch` need now: after the worker says ready, none waits."""
    started = time.monotonic()
    await asyncio.to_thread(responder.warm_up, batch)
    log.info("model compiled in %.1f s", time.monotonic() - started)


async def _reach(store: Store, stop: asyncio.Event) -> None:
    """Wait until the store answers (Redis may start after the worker)."""
    with contextlib.suppress(Stopped):
        await retry(store.ping, backoff=Backoff(log, "store"), stop=stop)


async def serve_worker(settings: WorkerSettings, load: Callable[[], Responder]) -> None:
    """Run a worker with the responder `load` gives, reloading it on SIGHUP."""
    batch = settings.queue.batch
    watchdog = asyncio.create_task(systemd.watchdog())  # loading takes a while
    try:
        responder = await asyncio.to_thread(load)
        await _prepare(responder, batch)
    except BaseException:
        watchdog.cancel()
        raise
    store = settings.queue.store()
    worker = Worker(store, responder.reply, batch_size=batch, max_wait=settings.queue.max_wait)
    stop = asyncio.Event()
    state = {"reason": "connecting to Redis"}

    async def health() -> str | None:
        if state["reason"]:
            return state["reason"]
        try:
            await store.ping()
        except Exception as exc:
            return f"store unreachable: {type(exc).__name__}"
        return None

    async def reload() -> None:
        systemd.notify("RELOADING=1", "STATUS=reloading the model")
        try:
            fresh = await asyncio.to_thread(load)
            await _prepare(fresh, batch)
        except Exception:
            log.exception("model reload failed; still answering with the loaded model")
        else:
            worker.respond = fresh.reply  # the next batch uses it; queued messages wait
            log.info("model reloaded from %s", settings.model)
        systemd.notify("READY=1", "STATUS=answering")

    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    runner = None
    if settings.port:
        app = web.Application()
        add_ops_routes(app, health, store, "worker")
        runner = await serve(app, settings.http_host, settings.port)
    try:
        await _reach(store, stop)
        state["reason"] = ""
        systemd.ready("answering")
        log.info("worker started: batch %d, model %s", batch, settings.model)
        await worker.run(stop)
    except StoreAuthError:
        raise ConfigError(STORE_REFUSED) from None
    finally:
        systemd.stopping()
        watchdog.cancel()
        if runner is not None:
            await runner.cleanup()
        await store.close()
        log.info("worker stopped: %s", worker.stats)
