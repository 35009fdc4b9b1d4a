"""Helpers shared by the queue tests."""

from __future__ import annotations

import asyncio
import time

from core.queue.worker import Worker


async def until_answered(worker: Worker, count: int, timeout: float = 10) -> None:
    """Wait (a bounded time) until the worker has answered `count` messages."""
    deadline = time.monotonic() + timeout
    while worker.stats.answered < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert worker.stats.answered == count, worker.stats
