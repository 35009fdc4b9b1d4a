"""Redis URLs with passwords and TLS, and Redis missing when a worker starts."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from pathlib import Path

import pytest

from core.errors import StoreAuthError
from core.messages import ChatKey, Incoming
from core.queue.redis_store import RedisStore
from core.queue.worker import Worker
from support.redis_server import RedisServer
from tests.core.queue.helpers import until_answered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(folder: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "1",
        "-subj",
        "/CN=parley-test-ca",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "1",
        "-extfile",
        ext,
    )
    return {"ca": ca, "key": key, "cert": cert}


async def roundtrip(store: RedisStore) -> None:
    chat = ChatKey("web", "tls")
    await store.enqueue(Incoming(chat, "ann", "hi", "1"))
    (claim,) = await store.claim(1)
    assert claim.message.text == "hi"


async def test_password_and_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    port = free_port()
    server = RedisServer(
        tmp_path / "r",
        password="s3cret",
        extra=[
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(certs["cert"]),
            "--tls-key-file",
            str(certs["key"]),
            "--tls-ca-cert-file",
            str(certs["ca"]),
            "--tls-auth-clients",
            "no",
        ],
    ).start()
    try:
        store = RedisStore.from_url(
            f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={certs['ca']}"
        )
        await roundtrip(store)
        await store.close()
        wrong = RedisStore.from_url(f"rediss://:nope@127.0.0.1:{port}/0?ssl_ca_certs={certs['ca']}")
        with pytest.raises(StoreAuthError):
            await wrong.enqueue(Incoming(ChatKey("web", "x"), "a", "b", "c"))
        # a worker stops at once on a wrong password instead of retrying forever
        worker = Worker(wrong, lambda cs: ["ok" for _ in cs])
        with pytest.raises(StoreAuthError):
            await asyncio.wait_for(worker.run(asyncio.Event()), 10)
        await wrong.close()
    finally:
        server.stop()


async def test_worker_waits_for_redis_and_logs_the_outage_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "late")
    store = RedisStore.from_url(server.url)
    worker = Worker(store, lambda cs: ["ok" for _ in cs], idle_timeout=0.2)
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="parley.worker"):
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(2.0)  # no server yet: the worker retries, it does not crash
        assert not task.done()
        server.start()
        try:
            await store.enqueue(Incoming(ChatKey("web", "late"), "ann", "hi", "1"))
            await until_answered(worker, 1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await store.close()
            server.stop()
    assert worker.stats.outages == 1
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def _backend_errors() -> list[tuple[Exception, type[Exception] | None]]:
    import redis.exceptions as rex

    from core.errors import StoreError, StoreUnavailable

    refused = rex.ConnectionError("invalid username-password pair")
    refused.__cause__ = rex.AuthenticationError("WRONGPASS")
    return [
        (rex.ConnectionError("Connection refused"), StoreUnavailable),
        (rex.TimeoutError("Timeout reading from socket"), StoreUnavailable),
        (rex.BusyLoadingError("Redis is loading the dataset in memory"), StoreUnavailable),
        (rex.MovedError("3999 127.0.0.1:6381"), StoreUnavailable),
        (rex.AskError("3999 127.0.0.1:6381"), StoreUnavailable),
        (rex.TryAgainError("Multiple keys request during rehashing of slot"), StoreUnavailable),
        (rex.ClusterDownError("The cluster is down"), StoreUnavailable),
        (rex.MasterDownError("Link with MASTER is down"), StoreUnavailable),
        (rex.ReadOnlyError("You can't write against a read only replica."), StoreUnavailable),
        (rex.ResponseError("BUSY Redis is busy running a script."), StoreUnavailable),
        (ConnectionResetError(104, "Connection reset by peer"), StoreUnavailable),
        (rex.AuthenticationError("invalid password"), StoreAuthError),
        (rex.ResponseError("NOAUTH Authentication required."), StoreAuthError),
        (
            rex.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
            StoreAuthError,
        ),
        (refused, StoreAuthError),
        (rex.ResponseError("ERR Error running script: attempt to compare nil"), StoreError),
        (rex.DataError("Invalid input of type: 'dict'"), StoreError),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), None),
    ]


@pytest.mark.parametrize(("raised", "becomes"), _backend_errors())
async def test_redis_failures_leave_the_store_as_store_errors(
    raised: Exception, becomes: type[Exception] | None
) -> None:
    from core.errors import StoreError

    store = RedisStore.from_url("unix:///nonexistent.sock")

    async def failing(*args: object, **kwargs: object) -> None:
        raise raised

    store._scripts["CLAIM"] = failing  # type: ignore[assignment]
    with pytest.raises(Exception) as caught:
        await store._claim_in([0], 1, 0)
    assert caught.value is raised  # internal: nothing translated yet
    store._woken = 0  # woken for partition 0: `claim` goes straight to its script
    with pytest.raises(Exception) as caught:
        await store.claim(10)
    if becomes is None:
        assert caught.value is raised  # not the backend's: a bug or bad data, as it is
    else:
        assert type(caught.value) is becomes and isinstance(caught.value, StoreError)
        assert caught.value.__cause__ is raised
    await store.close()
