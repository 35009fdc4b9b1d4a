"""systemd's notify protocol: readiness, watchdog, reload and stop, as a unit would see them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots import systemd


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # a short path: unix socket paths are limited to 107 bytes
    path = Path(tempfile.mkdtemp(prefix="sd")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()
    path.unlink()
    path.parent.rmdir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_notify_sends_states(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=answering")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=answering"


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"parley-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(64) == b"WATCHDOG=1"


def test_outside_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert not systemd.notify("READY=1")
    assert systemd.watchdog_interval() is None


def test_watchdog_interval_is_half_the_timeout_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval() is None


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    while True:
        states = sock.recv(4096).decode().split("\n")
        seen.extend(states)
        if wanted in states:
            return


@pytest.mark.slow
def test_worker_reports_ready_pings_reloads_and_stops(
    notify_socket: socket.socket, tiny_model: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "PARLEY_REDIS_URL": redis_server.url,
        "PARLEY_MODEL": str(tiny_model),
        "PARLEY_WORKER_PORT": "0",  # as .env.example has it: the unit's --port %i wins
        "WATCHDOG_USEC": "400000",
        "PARLEY_WORKER_BATCH": "1",  # one decoder shape to compile, not five
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "worker", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        receive_until(notify_socket, "READY=1", seen)
        assert "WATCHDOG=1" in seen  # pinged while the model was loading
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"parley_batch_size" in r.read()
        started = time.monotonic()
        seen.clear()
        receive_until(notify_socket, "WATCHDOG=1", seen)
        assert time.monotonic() - started < 1.0
        proc.send_signal(signal.SIGHUP)
        receive_until(notify_socket, "RELOADING=1", seen)
        receive_until(notify_socket, "READY=1", seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1", seen)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"model reloaded" in err
