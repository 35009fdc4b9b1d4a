"""`parley worker`: answer queued messages from Redis with the model, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import redis.exceptions

from bots.settings import Settings
from core.errors import ConfigError
from core.model.responder import Responder
from core.queue.worker import Worker

log = logging.getLogger("parley.worker")


def require_redis(settings: Settings) -> None:
    if settings.redis_url is None:
        raise ConfigError(
            "PARLEY_REDIS_URL is not set: worker processes share their queue through Redis"
        )


async def serve_worker(settings: Settings, responder: Responder) -> None:
    require_redis(settings)
    started = time.monotonic()
    await asyncio.to_thread(responder.compile_shapes, [1, settings.worker_batch])
    log.info("decoder compiled in %.1f s", time.monotonic() - started)
    store = settings.store()
    worker = Worker(
        store,
        responder.reply,
        batch_size=settings.worker_batch,
        max_wait=settings.worker_max_wait_ms / 1000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started: batch %d, model %s", settings.worker_batch, settings.model)
    try:
        await worker.run(stop)
    except redis.exceptions.AuthenticationError:
        raise ConfigError("PARLEY_REDIS_URL: Redis refused the password") from None
    finally:
        await store.close()
        log.info("worker stopped: %s", worker.stats)
