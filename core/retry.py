"""One way to retry what fails for a while: the store restarting, a platform unreachable.

`Backoff` is the state of one loop that keeps going through failures (a worker, a sender,
a poller): it waits `first` seconds, doubling up to `cap`, logs the first failure of an
outage and the recovery, not every try, and wakes early when the process is stopping.
`retry` runs one action until it succeeds, on top of it (python-telegram-bot's
`network_retry_loop` has the same shape). What is transient is the caller's to say; an
error outside that set propagates at once, so a wrong password or a bug is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.errors import ParleyError, StoreUnavailable

T = TypeVar("T")


class Stopped(ParleyError):
    """The process was asked to stop before the action succeeded."""


class Backoff:
    """Delays between the tries of one loop, and its outage log lines."""

    def __init__(
        self, log: logging.Logger, what: str, first: float = 0.1, cap: float = 5.0
    ) -> None:
        self.log = log
        self.what = what  # e.g. "store", "Telegram": the log says "<what> unreachable"
        self.first = first
        self.cap = cap
        self.delay = 0.0  # 0 while things work
        self.outages = 0  # failures that began an outage

    @property
    def failing(self) -> bool:
        return self.delay > 0

    async def wait(self, exc: BaseException, stop: asyncio.Event, at_least: float = 0.0) -> bool:
        """Wait before the next try, at least `at_least` s (a server's retry-after); False,
        at once, when `stop` is set."""
        if not self.delay:
            self.outages += 1
            self.log.error("%s unreachable (%s); retrying with backoff", self.what, _brief(exc))
        self.delay = min(max(self.delay * 2, self.first), self.cap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(self.delay, at_least))
        return not stop.is_set()

    def ok(self) -> None:
        """The last try worked."""
        if self.delay:
            self.log.warning("%s reachable again; resuming", self.what)
            self.delay = 0.0


async def retry(
    action: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    stop: asyncio.Event,
    transient: tuple[type[BaseException], ...] = (StoreUnavailable,),
    retry_after: Callable[[BaseException], float] | None = None,
) -> T:
    """`await action()` until it returns, waiting with `backoff` after each transient
    error; `retry_after(exc)` may name a minimum wait. Raises `Stopped` once `stop` is set,
    and any other error at once."""
    while True:
        if stop.is_set():
            raise Stopped(f"stopped before {backoff.what} answered")
        try:
            result = await action()
        except transient as exc:
            hint = retry_after(exc) if retry_after is not None else 0.0
            if not await backoff.wait(exc, stop, hint):
                raise Stopped(f"stopped before {backoff.what} answered") from exc
            continue
        backoff.ok()
        return result


async def unless_stopped(action: Awaitable[Any], stop: asyncio.Event) -> None:
    """`await action`, unless `stop` is set first: then it is cancelled, and this returns at
    once. A loop's idle wait (for new work, for replies to send) goes through this, so a
    stop request does not wait out the idle timeout. The action's own error propagates."""
    task = asyncio.ensure_future(action)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopping):
            pending.cancel()
        await asyncio.gather(task, stopping, return_exceptions=True)
    if not task.cancelled():
        task.result()


def _brief(exc: BaseException) -> str:
    """The error's type and first line: enough to act on, never a multi-line dump."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
