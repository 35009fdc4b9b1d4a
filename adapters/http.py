"""What every parley HTTP server does against hostile clients: request bodies bounded in
size and read within a deadline, a deadline for request headers, and logs that stay quiet
under attack (a line per kind of rejection every few seconds, never a traceback for a
request refused on purpose).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

HEADER_TIMEOUT = 15.0  # seconds to send a request's headers, and to start the next one
BODY_TIMEOUT = 10.0  # seconds to send a webhook's body
MAX_BODY = 1024 * 1024  # bytes in a webhook's body (Telegram's and Slack's are a few KB)
LOG_EVERY = 10.0  # seconds between log lines about one kind of rejected request

log = logging.getLogger("parley.http")


class Throttle:
    """Lets a log line of each kind through at most once per `every` seconds."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """None to hold this line back; else how many of its kind were held back before it.
        `kind` must come from a small set (a reason, an exception type), never from input."""
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._next[kind] = now + self.every
        return self._held.pop(kind, 0)


async def read_body(
    request: web.Request, limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT
) -> bytes:
    """The request's body; 413 beyond `limit` bytes (before reading any, when the length is
    declared), 408 when the client takes longer than `timeout` to send it."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _closing(web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _closing(web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size))
                chunks.append(chunk)
    except TimeoutError:
        raise _closing(web.HTTPRequestTimeout(text="the body took too long\n")) from None
    return b"".join(chunks)


def _closing(response: web.HTTPException) -> web.HTTPException:
    # The rest of the body is not wanted: close instead of reading it to reuse the connection.
    response.force_close()
    return response


class QuietServerLog(logging.Filter):
    """On aiohttp's server logger: a malformed request or a dropped connection is one
    warning line without a traceback, at most one per kind every `LOG_EVERY` seconds; other
    errors (bugs) keep their traceback, rate-limited the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        kind = type(exc).__name__
        held = self.throttle.allow(kind)
        if held is None:
            return False
        if isinstance(exc, HttpProcessingError | ConnectionError):
            record.msg, record.args = "refused a malformed request: %s", (_short(exc),)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if held:
            record.msg = f"{record.msg} (and {held} more like it)"
        return True


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200].replace("\n", " ")


def quiet_server_logs() -> None:
    """Install `QuietServerLog` on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietServerLog) for f in logger.filters):
        logger.addFilter(QuietServerLog())
