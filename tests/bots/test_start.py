"""`parley telegram` and `parley slack` as systemd runs them, against a platform that cannot
be reached (the process waits, up but not ready) or that refuses the token (exit 78)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.cli import EX_CONFIG
from support.fakes.slack_api import FakeSlack
from support.fakes.telegram_api import FakeTelegram


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A socket standing in for systemd's NOTIFY_SOCKET."""
    path = Path(tempfile.mkdtemp(prefix="sd")) / "notify"  # unix socket paths are short
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield str(path), sock
    sock.close()
    path.unlink()
    path.parent.rmdir()


def received(sock: socket.socket) -> list[str]:
    states = []
    while True:
        try:
            states += sock.recv(4096).decode().split("\n")
        except BlockingIOError:
            return states


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


async def parley(command: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    # Without a terminal and without these, the child would read the developer's .env.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        command,
        env={**clean, **env},
        cwd=tempfile.gettempdir(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 20) -> str:
    """Wait for the process to exit (killing it after `timeout` s); its stderr."""
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return err.decode(errors="replace")


def unreachable_env(command: str, port: int, redis_url: str, notify: str) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    common = {"PARLEY_REDIS_URL": redis_url, "NOTIFY_SOCKET": notify, "PYTHONPATH": os.getcwd()}
    if command == "telegram":
        return {
            **common,
            "PARLEY_TELEGRAM_TOKEN": "123:x-token",
            "PARLEY_TELEGRAM_API_URL": dead,
            "PARLEY_TELEGRAM_PORT": str(port),
        }
    return {
        **common,
        "PARLEY_SLACK_BOT_TOKEN": "xoxb-1-token",
        "PARLEY_SLACK_SIGNING_SECRET": "s3cr3t-signing",
        "PARLEY_SLACK_API_URL": dead + "/api/",
        "PARLEY_SLACK_PORT": str(port),
    }


@pytest.mark.parametrize(("command", "platform"), [("telegram", "Telegram"), ("slack", "Slack")])
async def test_an_unreachable_platform_is_waited_for_not_a_crash(
    command: str,
    platform: str,
    redis_server: Any,
    notify_socket: tuple[str, socket.socket],
) -> None:
    port = free_port()
    path, sock = notify_socket
    proc = await parley(command, unreachable_env(command, port, redis_server.url, path))
    try:
        deadline = time.monotonic() + 30
        status, body = 0, {}
        while time.monotonic() < deadline and proc.returncode is None:
            status, body = healthz(port)
            if status == 503 and "unreachable" in body.get("reason", ""):
                break
            await asyncio.sleep(0.2)
        assert proc.returncode is None, "the process exited"
        assert status == 503 and body["reason"].startswith(f"{platform} unreachable"), body
        await asyncio.sleep(3)  # systemd used to restart it every 3 s
        assert proc.returncode is None
        # Up (so that systemd's start timeout does not kill it) but waiting, as its status says.
        states = received(sock)
        assert "READY=1" in states
        assert any(s.startswith("STATUS=") and "unreachable" in s for s in states), states
        proc.send_signal(signal.SIGTERM)
        err = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


async def test_telegram_refusing_the_token_exits_78(
    fake_telegram: FakeTelegram, redis_server: Any
) -> None:
    env = {
        "PARLEY_REDIS_URL": redis_server.url,
        "PARLEY_TELEGRAM_TOKEN": "999:WRONG-token-value",
        "PARLEY_TELEGRAM_API_URL": fake_telegram.api_url,
        "PARLEY_TELEGRAM_PORT": str(free_port()),
        "PYTHONPATH": os.getcwd(),
    }
    proc = await parley("telegram", env)
    err = await finish(proc)
    assert proc.returncode == EX_CONFIG, err[-2000:]
    assert "Traceback" not in err and "@BotFather" in err
    assert "WRONG-token-value" not in err


async def test_slack_refusing_the_token_exits_78(fake_slack: FakeSlack, redis_server: Any) -> None:
    env = {
        "PARLEY_REDIS_URL": redis_server.url,
        "PARLEY_SLACK_BOT_TOKEN": "xoxb-wrong-token-value",
        "PARLEY_SLACK_SIGNING_SECRET": "s3cr3t-signing",
        "PARLEY_SLACK_API_URL": fake_slack.api_url,
        "PARLEY_SLACK_PORT": str(free_port()),
        "PYTHONPATH": os.getcwd(),
    }
    proc = await parley("slack", env)
    err = await finish(proc)
    assert proc.returncode == EX_CONFIG, err[-2000:]
    assert "Traceback" not in err and "invalid_auth" in err
    assert "wrong-token-value" not in err
