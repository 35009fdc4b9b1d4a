from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from core.messages import ChatKey, Incoming
from core.queue.memory_store import MemoryStore
from core.queue.redis_store import RedisStore
from core.queue.types import Limits, Outcome
from core.queue.worker import Worker
from support.redis_server import RedisServer
from tests.core.queue.helpers import until_answered

LIMITS = Limits(backlog=100_000, sender_rate=0, retry_delay=0)


def echo(contexts: Sequence[Sequence[str]]) -> list[str]:
    return ["echo " + c[-1] for c in contexts]


def interleaved(chats: int, per_chat: int, seed: int = 0) -> list[Incoming]:
    """Messages of many chats, each chat's in order, the chats shuffled together."""
    queues = {
        c: [
            Incoming(ChatKey("web", f"room{c}"), f"user{c % 7}", f"m{n}", f"{c}-{n}")
            for n in range(per_chat)
        ]
        for c in range(chats)
    }
    rng, out = random.Random(seed), []
    while queues:
        c = rng.choice(sorted(queues))
        out.append(queues[c].pop(0))
        if not queues[c]:
            del queues[c]
    return out


async def run_until_done(worker: Worker, store, expected: int, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + timeout
    while worker.stats.answered + worker.stats.failed < expected:
        assert time.monotonic() < deadline, worker.stats
        await asyncio.sleep(0.01)
    stop.set()
    await task


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_worker_answers_in_order_with_context(kind: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    store = (
        MemoryStore(LIMITS) if kind == "memory" else RedisStore.from_url(redis_server.url, LIMITS)
    )
    redis_server.flush()
    seen_contexts: list[list[str]] = []

    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        seen_contexts.extend(list(c) for c in contexts)
        return echo(contexts)

    messages = interleaved(chats=5, per_chat=6)
    for m in messages:
        await store.enqueue(m)
    worker = Worker(store, respond, batch_size=4)
    await run_until_done(worker, store, len(messages))
    for c in range(5):
        replies = await store.replies(ChatKey("web", f"room{c}"))
        assert [r.text for r in replies] == [f"echo m{n}" for n in range(6)]
    # the last question of room 0 was asked with the earlier exchanges as context
    asked_m5 = next(c for c in seen_contexts if c[-1] == "m5")
    assert asked_m5[-3:] == ["m4", "echo m4", "m5"]
    await store.close()


async def test_poison_message_is_isolated_and_dead_lettered() -> None:
    store = MemoryStore(LIMITS)

    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        if any(c[-1] == "m1" for c in contexts):
            raise ValueError("cannot answer m1")
        return echo(contexts)

    messages = interleaved(chats=3, per_chat=3)
    for m in messages:
        await store.enqueue(m)
    worker = Worker(store, respond, batch_size=8)
    await run_until_done(worker, store, expected=6 + 3 * LIMITS.max_attempts)
    dead = await store.dead_letters()
    assert len(dead) == 3 and all("cannot answer m1" in str(d["error"]) for d in dead)
    replies = await store.replies(ChatKey("web", "room0"))
    assert [r.text for r in replies] == ["echo m0", "Sorry, I couldn't answer that one.", "echo m2"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_message_whose_answer_cannot_be_stored_is_dead_lettered(  # type: ignore[no-untyped-def]
    kind: str, redis_server
) -> None:
    # Text that cannot be encoded (a lone surrogate) never gets past the adapters' gate; a
    # message that got into the queue some other way must still not stop the worker.
    if kind == "redis":
        redis_server.flush()
        store = RedisStore.from_url(redis_server.url, LIMITS)
    else:
        store = MemoryStore(LIMITS)
    poisoned = Incoming(ChatKey("web", "room0"), "u", "hi \ud800", "bad")
    await store.enqueue(poisoned)
    for m in interleaved(chats=2, per_chat=2):
        await store.enqueue(m)
    # The memory store keeps the question as it is; Redis kept it as UTF-8, with U+FFFD.
    worker = Worker(store, echo, batch_size=8)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(20):
            while len(await store.replies(ChatKey("web", "room1"))) < 2 or (
                len(await store.replies(ChatKey("web", "room0"))) < 3
            ):
                assert not task.done()
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    texts = [r.text for r in await store.replies(ChatKey("web", "room0"))]
    if kind == "memory":
        assert texts == ["Sorry, I couldn't answer that one.", "echo m0", "echo m1"]
        [dead] = await store.dead_letters()
        assert "UnicodeEncodeError" in str(dead["error"])
    else:
        assert texts == ["echo hi \ufffd", "echo m0", "echo m1"]
    await store.close()


async def test_shutdown_releases_what_it_holds() -> None:
    store = MemoryStore(LIMITS)
    for m in interleaved(chats=2, per_chat=1):
        await store.enqueue(m)
    worker = Worker(store, echo)
    worker._held = await store.claim(10)
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)
    again = await store.claim(10)
    assert len(again) == 2 and all(c.attempts == 1 for c in again)
    assert all([await store.release(c) == Outcome.OK for c in again])


# -- several worker processes on one Redis ---------------------------------------------------


def start_workers(
    url: str, n: int, lease: float = 30.0, delay: float = 0.0
) -> list[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "tests.core.queue.echo_worker", url, str(lease), str(delay)]
    return [subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}) for _ in range(n)]


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(20)
        if p.poll() is None:
            p.kill()


async def enqueue_all(store: RedisStore, messages: list[Incoming]) -> None:
    # One at a time: the order of this list is the order of arrival.
    for m in messages:
        await store.enqueue(m)


async def wait_answered(store: RedisStore, chats: int, per_chat: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        total = sum(
            [len(await store.replies(ChatKey("web", f"room{c}"), 10_000)) for c in range(chats)]
        )
        if total >= chats * per_chat:
            return
        assert time.monotonic() < deadline, f"{total} of {chats * per_chat} answered"
        await asyncio.sleep(0.05)


async def assert_exactly_once_in_order(store: RedisStore, chats: int, per_chat: int) -> None:
    for c in range(chats):
        replies = await store.replies(ChatKey("web", f"room{c}"), 10_000)
        assert [r.text for r in replies] == [f"echo m{n}" for n in range(per_chat)], f"room{c}"
    assert sum([await store.backlog(ChatKey("web", f"room{c}")) for c in range(chats)]) == 0


@pytest.mark.slow
async def test_four_workers_keep_every_chats_order(redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.flush()
    store = RedisStore.from_url(redis_server.url, LIMITS)
    procs = start_workers(redis_server.url, 4)
    try:
        await enqueue_all(store, interleaved(chats=50, per_chat=100))
        await wait_answered(store, 50, 100, timeout=180)
    finally:
        stop_workers(procs)
    await assert_exactly_once_in_order(store, 50, 100)
    await store.close()


@pytest.mark.slow
async def test_workers_killed_mid_batch_lose_and_double_nothing(redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.flush()
    store = RedisStore.from_url(redis_server.url, LIMITS)
    url, lease, delay = redis_server.url, 0.5, 0.02
    procs = start_workers(url, 4, lease=lease, delay=delay)
    kills = 0

    async def chaos() -> None:  # every 0.3 s, SIGKILL a random worker and start a new one
        nonlocal kills
        while True:
            await asyncio.sleep(0.3)
            victim = random.randrange(len(procs))
            procs[victim].kill()
            procs[victim].wait()
            procs[victim] = start_workers(url, 1, lease=lease, delay=delay)[0]
            kills += 1

    killer = asyncio.create_task(chaos())
    try:
        await enqueue_all(store, interleaved(chats=50, per_chat=100, seed=1))
        await wait_answered(store, 50, 100, timeout=240)
    finally:
        killer.cancel()
        stop_workers(procs)
    assert kills >= 5
    await assert_exactly_once_in_order(store, 50, 100)
    await store.close()


@pytest.mark.slow
async def test_workers_stopped_mid_batch_hand_their_chats_over(redis_server) -> None:  # type: ignore[no-untyped-def]
    # The lease is long: only a release on SIGTERM lets another worker go on in time.
    redis_server.flush()
    store = RedisStore.from_url(redis_server.url, LIMITS)
    url, lease, delay = redis_server.url, 60.0, 0.1
    procs = start_workers(url, 3, lease=lease, delay=delay)
    exits: list[int | None] = []

    async def restarts() -> None:  # SIGTERM a worker that is up and start a new one
        while True:
            await asyncio.sleep(1.5)  # a new worker has its signal handler by then
            victim = random.randrange(len(procs))
            procs[victim].send_signal(signal.SIGTERM)
            exits.append(await asyncio.to_thread(procs[victim].wait, 20))
            procs[victim] = start_workers(url, 1, lease=lease, delay=delay)[0]

    restarter = asyncio.create_task(restarts())
    try:
        await enqueue_all(store, interleaved(chats=20, per_chat=100, seed=2))
        await wait_answered(store, 20, 100, timeout=50)
    finally:
        restarter.cancel()
        stop_workers(procs)
    assert len(exits) >= 3 and set(exits) == {0}
    await assert_exactly_once_in_order(store, 20, 100)
    await store.close()


@pytest.mark.slow
async def test_redis_restart_mid_run_loses_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "aof", appendonly=True).start()
    store = RedisStore.from_url(server.url, LIMITS)
    procs = start_workers(server.url, 2, lease=1.0, delay=0.005)
    try:
        await enqueue_all(store, interleaved(chats=20, per_chat=100, seed=2))
        await asyncio.sleep(0.5)
        server.stop()  # mid-run: workers hold leases and batches
        await asyncio.sleep(1.0)
        server.start()
        await wait_answered(store, 20, 100, timeout=120)
    finally:
        stop_workers(procs)
        await store.close()
    store = RedisStore.from_url(server.url, LIMITS)
    await assert_exactly_once_in_order(store, 20, 100)
    await store.close()
    server.stop()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_idle_worker_is_woken_by_new_work(kind: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.flush()
    store = (
        MemoryStore(LIMITS) if kind == "memory" else RedisStore.from_url(redis_server.url, LIMITS)
    )
    worker = Worker(store, echo, idle_timeout=60)  # without a wake-up, a minute of silence
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.3)  # the worker is idle, waiting
    await store.enqueue(Incoming(ChatKey("web", "lobby"), "ann", "hello?", "x1"))
    await until_answered(worker, 1)
    await asyncio.sleep(0.2)  # idle again
    started = time.monotonic()
    stop.set()  # stopping does not wait for the idle timeout
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 1
    await store.close()


class FailingStore(MemoryStore):
    """Completing fails with an OSError of the process's own (a full disk, a permission),
    which is no store outage: the message fails like any other error, and goes on."""

    async def complete_all(self, answers):  # type: ignore[no-untyped-def]
        raise PermissionError("not the store's")


async def test_an_oserror_that_is_not_the_stores_is_not_waited_out_forever() -> None:
    store = FailingStore(dataclasses.replace(LIMITS, max_attempts=2))
    await store.enqueue(Incoming(ChatKey("web", "lobby"), "ann", "hello?", "x1"))
    worker = Worker(store, echo, idle_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(10):
            while not await store.dead_letters():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert worker.stats.outages == 0
    [dead] = await store.dead_letters()
    assert "PermissionError" in str(dead["error"])
