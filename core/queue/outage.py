"""The store being unreachable: what counts as that, and waiting it out.

Workers and senders keep running through a Redis restart or a network cut: they back off
(0.1 s doubling to 5 s), log the outage once rather than once per retry, and say when the
store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions

# redis' connection and timeout errors, and OSError for sockets. Anything else is a bug
# and propagates; so does a wrong password (AuthenticationError), which no wait heals.
STORE_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


class Outage:
    """Backoff state of one loop that needs the store."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.delay = 0.0  # 0 while the store answers
        self.count = 0  # outages seen

    async def wait(self, exc: BaseException, stop: asyncio.Event) -> None:
        """Wait before the next try (returns early when `stop` is set)."""
        if not self.delay:
            self.count += 1
            self.log.error("store unreachable (%s); retrying with backoff", exc)
        self.delay = min(max(self.delay * 2, 0.1), 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.delay)

    def over(self) -> None:
        """The store answered."""
        if self.delay:
            self.log.warning("store reachable again; resuming")
            self.delay = 0.0
