"""Small probes the tests and benchmarks use on live processes and adapters."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol


class HasHealth(Protocol):
    async def health(self) -> str | None: ...


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def health_until(adapter: HasHealth, done: Callable[[str | None], bool]) -> str | None:
    """Poll `adapter.health()` until `done` holds for it (5 s at most)."""
    reason: str | None = None
    for _ in range(250):
        reason = await adapter.health()
        if done(reason):
            return reason
        await asyncio.sleep(0.02)
    raise AssertionError(f"health stayed {reason!r}")
