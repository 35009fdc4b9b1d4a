"""`parley serve` (what ./run.sh runs) and `parley web` as processes, the way a newcomer and
a deployment start them: from a directory outside the clone, on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.cli import EX_CONFIG

PARLEY = Path(sys.executable).parent / "parley"  # the virtualenv's command, as run.sh uses
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any PARLEY_ setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return {**env, "PARLEY_HTTP_HOST": "127.0.0.1", **settings}


class Process:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[Process] = []

    async def run(*args: str, env: dict[str, str]) -> Process:
        log = tmp_path / f"{len(procs)}.log"
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=tmp_path,  # no .env of the clone's: only the settings given
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("wb"),
        )
        procs.append(Process(proc, log))
        return procs[-1]

    yield run
    for p in procs:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def wait_ready(http: aiohttp.ClientSession, base: str, process: Process) -> None:
    deadline = time.monotonic() + 240  # loading TensorFlow and the model on a busy CI box
    while time.monotonic() < deadline:
        assert process.proc.returncode is None, process.tail()
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
                assert (await response.json())["status"] == "not ready"
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"not ready in time:\n{process.tail()}")


async def ask(http: aiohttp.ClientSession, base: str, question: str) -> dict[str, Any]:
    """Join the lobby as ann, post `question`, and return the bot's reply."""
    async with http.ws_connect(f"{base}/r/lobby/ws", params={"name": "ann"}) as ws:
        await ws.send_json({"type": "say", "id": "q1", "text": question})
        async with asyncio.timeout(60):
            async for message in ws:
                frame = json.loads(message.data)
                if frame["type"] == "message" and frame["kind"] == "bot":
                    return frame  # type: ignore[no-any-return]
    raise AssertionError("the socket closed without a reply")


async def stopped(process: Process) -> int:
    process.proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.proc.wait(), 60)


@pytest.mark.slow
async def test_parley_serve_opens_a_room_with_the_bundled_model(start: Any) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # batches of up to 4 questions: three decoder shapes to compile, not five
    env = clean_env(PARLEY_WEB_PORT=str(port), PARLEY_WORKER_BATCH="4")
    serve = await start(str(PARLEY), "serve", env=env)
    assert serve.proc.stdout is not None
    line = await asyncio.wait_for(serve.proc.stdout.readline(), 120)
    assert f"open {base}/r/lobby in a browser" in line.decode(), serve.tail()
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, base, serve)
        async with http.get(f"{base}/r/lobby") as page:
            assert page.status == 200 and "/static/app.js" in await page.text()
        async with http.get(f"{base}/static/app.js") as script:
            assert script.status == 200 and "textContent" in await script.text()
        reply = await ask(http, base, "@parley hi there! how are you?")
        assert reply["name"] == "parley" and reply["text"].strip()
        assert reply["quote"]["text"] == "hi there! how are you?"
        # A lone surrogate (ASCII on the wire: send_json writes the escape \ud800) is
        # answered like any other question, and the process goes on answering.
        for question, quoted in (("@parley hi \ud800", "hi \ufffd"), ("/ask \udfff", "\ufffd")):
            assert (await ask(http, base, question))["quote"]["text"] == quoted
        assert (await ask(http, base, "@parley still there?"))["text"].strip()
    assert await stopped(serve) == 0, serve.tail()
    assert "Traceback" not in serve.tail()


async def test_parley_web_answers_through_redis_with_a_worker_process(
    start: Any, redis_server: Any
) -> None:
    redis_server.flush()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(PARLEY_WEB_PORT=str(port), PARLEY_REDIS_URL=redis_server.url)
    web = await start(str(PARLEY), "web", env=env)
    worker = await start(
        sys.executable,
        "-m",
        "tests.core.queue.echo_worker",
        redis_server.url,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, base, web)
        reply = await ask(http, base, "/ask are you there?")
        assert reply["text"] == "echo are you there?"
    assert await stopped(web) == 0, web.tail()
    assert await stopped(worker) == 0


async def test_configuration_mistakes_stop_with_a_message(start: Any) -> None:
    web = await start(str(PARLEY), "web", env=clean_env())
    assert await asyncio.wait_for(web.proc.wait(), 60) == EX_CONFIG
    assert "PARLEY_REDIS_URL is not set" in web.tail()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = await start(str(PARLEY), "serve", env=clean_env(PARLEY_WEB_PORT=str(port)))
        assert await asyncio.wait_for(serve.proc.wait(), 60) == EX_CONFIG
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in serve.tail()
