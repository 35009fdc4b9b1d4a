"""Every parley HTTP server against clients that hold connections or send malformed HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web

from adapters.http import Throttle
from adapters.ops import serve


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


async def served(header_timeout: float = 15.0) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = await serve(app, "127.0.0.1", 0, header_timeout=header_timeout)
    return runner, runner.addresses[0][1]


async def closed_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """Seconds until the server closes the connection, while the client dribbles a header
    byte every 0.1 s (never finishing its request)."""
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    while True:
        try:
            data = await asyncio.wait_for(reader.read(1024), 0.1)
        except TimeoutError:
            writer.write(b"X")
            continue
        except ConnectionError:
            break
        if not data:
            break
    writer.close()
    return time.monotonic() - started


async def test_a_connection_that_never_finishes_its_headers_is_closed() -> None:
    runner, port = await served(header_timeout=0.5)
    try:
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        async with asyncio.timeout(10):
            times = await asyncio.gather(*(closed_after(r, w) for r, w in clients))
        assert max(times) < 3
        idle = await asyncio.open_connection("127.0.0.1", port)  # opens, says nothing
        async with asyncio.timeout(5):
            assert await idle[0].read() == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await runner.cleanup()


async def test_malformed_http_is_refused_with_one_quiet_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner, port = await served()
    garbage = [
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: " + b"x" * 20_000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ]
    try:
        for n in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage[n % len(garbage)])
            status = await asyncio.wait_for(reader.readline(), 5)
            assert status.split()[1].startswith(b"4"), status
            writer.close()
    finally:
        await runner.cleanup()
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not [r for r in server if r.exc_info or r.levelno >= logging.ERROR]
    assert len(server) <= 2 * len(garbage)  # a line per kind of error, not per request


def test_the_throttle_lets_one_line_through_per_kind_and_counts_the_rest() -> None:
    throttle = Throttle(every=0.2)
    assert throttle.allow("a") == 0 and throttle.allow("b") == 0
    assert [throttle.allow("a") for _ in range(5)] == [None] * 5
    time.sleep(0.25)
    assert throttle.allow("a") == 5 and throttle.allow("a") is None
