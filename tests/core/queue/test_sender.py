"""The sender's rules, with an in-process outlet standing in for a platform."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from core.errors import StoreUnavailable
from core.messages import ChatKey, Incoming, Reply
from core.queue.memory_store import MemoryStore
from core.queue.sender import (
    RetryAfter,
    Sender,
    Undeliverable,
    coalesced_text,
    plan,
    split_text,
)
from core.queue.types import Limits, Outcome, Pending, SendLimits, Store

GROUP = ChatKey("test", "group")
OTHER = ChatKey("test", "other")


class Outlet:
    platform = "test"
    max_length = 60
    coalesce = True

    def __init__(self, limits: SendLimits) -> None:
        self.limits = limits
        self.sent: list[tuple[ChatKey, list[str]]] = []
        self.failures: dict[ChatKey, list[Exception]] = {}

    def limits_for(self, chat: ChatKey) -> SendLimits:
        return self.limits

    async def send(self, replies: Sequence[Reply]) -> None:
        chat = replies[0].chat
        if self.failures.get(chat):
            raise self.failures[chat].pop(0)
        self.sent.append((chat, [r.in_reply_to for r in replies]))


def reply(n: int, chat: ChatKey = GROUP) -> Reply:
    return Reply(chat, f"answer {n}", f"m{n}", asker="u", asker_name=f"user{n}")


def sent_before(count: int) -> tuple[float, ...]:
    """The times of `count` sends a moment ago."""
    return (time.time() - 1,) * count


def test_plan_sends_one_message_per_reply_while_the_window_has_room() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    replies = tuple(reply(n) for n in range(3))
    assert plan(Pending(GROUP, replies, sent_at=sent_before(2)), outlet) == [(r,) for r in replies]


def test_plan_coalesces_in_order_when_a_chat_falls_behind() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    replies = tuple(reply(n) for n in range(10))
    groups = plan(Pending(GROUP, replies, sent_at=sent_before(3)), outlet)
    assert 1 <= len(groups) <= 2
    assert all(len(coalesced_text(g)) <= outlet.max_length for g in groups)
    flat = [r for g in groups for r in g]
    assert flat == list(replies[: len(flat)])
    assert coalesced_text(groups[0]).splitlines()[0] == "user0: answer 0"


def test_plan_without_coalescing_sends_what_the_window_allows() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    outlet.coalesce = False
    groups = plan(
        Pending(GROUP, tuple(reply(n) for n in range(10)), sent_at=sent_before(3)), outlet
    )
    assert [g[0].in_reply_to for g in groups] == ["m0", "m1"]


def test_plan_counts_only_the_sends_within_the_chats_window() -> None:
    outlet = Outlet(SendLimits(per_chat=2, window=10))
    replies = tuple(reply(n) for n in range(3))
    long_ago = (time.time() - 11,) * 2
    assert len(plan(Pending(GROUP, replies, sent_at=long_ago), outlet)) == 1  # coalesced
    outlet.coalesce = False
    assert len(plan(Pending(GROUP, replies, sent_at=long_ago), outlet)) == 2
    assert plan(Pending(GROUP, replies, sent_at=sent_before(2)), outlet) == []


@pytest.mark.parametrize("limit", [5, 17, 100])
def test_split_text_keeps_every_word_within_the_limit(limit: int) -> None:
    text = " ".join(f"word{n}" for n in range(60)) + "\n" + "x" * 130
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
    assert split_text("short", limit) == ["short"]


async def answered(store: Store, chat: ChatKey, count: int) -> None:
    for n in range(count):
        await store.enqueue(Incoming(chat, f"u{n}", f"q{n}", f"m{n}"))
        (claim,) = await store.claim(1)
        await store.complete(claim, Reply.to(claim.message, f"a{n}"))


async def test_a_429_defers_one_chat_while_others_are_served() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = Outlet(SendLimits(per_chat=100, window=60, lease=5))
    outlet.failures[GROUP] = [RetryAfter(0.3)]
    await answered(store, GROUP, 2)
    await answered(store, OTHER, 2)
    sender = Sender(store, outlet)
    await sender.drain()
    assert outlet.sent == [(OTHER, ["m0"]), (OTHER, ["m1"])]
    await asyncio.sleep(0.35)
    await sender.drain()
    assert outlet.sent[2:] == [(GROUP, ["m0"]), (GROUP, ["m1"])]
    assert sender.stats.retried == 1 and sender.stats.sent == 4


async def test_transient_errors_are_retried_and_permanent_ones_dropped() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = Outlet(SendLimits(per_chat=100, window=60, lease=5))
    outlet.failures[GROUP] = [ConnectionError("reset")]
    outlet.failures[OTHER] = [Undeliverable("bot was kicked")]
    await answered(store, GROUP, 1)
    await answered(store, OTHER, 2)
    sender = Sender(store, outlet)
    await sender.drain()
    assert outlet.sent == [(OTHER, ["m1"])]  # m0 dropped, m1 went on
    assert sender.stats.dropped == 1
    await asyncio.sleep(1.05)  # first retry after a second
    await sender.drain()
    assert outlet.sent[-1] == (GROUP, ["m0"])


async def test_the_global_rate_paces_sends_across_chats() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = Outlet(SendLimits())
    for c in range(6):
        await answered(store, ChatKey("test", f"c{c}"), 1)
    sender = Sender(store, outlet, global_rate=20)
    started = time.monotonic()
    await sender.drain()
    assert len(outlet.sent) == 6
    assert time.monotonic() - started >= 5 / 20 * 0.9


async def test_run_serves_replies_as_they_arrive_and_stops() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = Outlet(SendLimits(per_chat=3, window=0.5))
    sender = Sender(store, outlet, idle_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await answered(store, GROUP, 8)
    for _ in range(100):
        if sum(len(ids) for _, ids in outlet.sent) == 8:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    sent = [i for _, ids in outlet.sent for i in ids]
    assert sent == [f"m{n}" for n in range(8)]  # all, once, in order
    assert len(outlet.sent) < 8  # the backlog went out coalesced


@pytest.fixture(params=["memory", "redis"])
def store(request):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return request.getfixturevalue("redis_store")
    return MemoryStore()


def no_rate_limit(store):  # type: ignore[no-untyped-def]
    store.limits = Limits(sender_rate=0)
    return store


class SlowOutlet(Outlet):
    """A platform that takes `delay` seconds to accept each message."""

    def __init__(self, limits: SendLimits, delay: float) -> None:
        super().__init__(limits)
        self.delay = delay

    async def send(self, replies: Sequence[Reply]) -> None:
        await asyncio.sleep(self.delay)
        await super().send(replies)


async def test_a_send_slower_than_the_lease_keeps_the_chat_and_goes_out_once(store) -> None:  # type: ignore[no-untyped-def]
    no_rate_limit(store)
    outlet = SlowOutlet(SendLimits(lease=0.3), delay=0.8)
    await answered(store, GROUP, 1)
    first, second = Sender(store, outlet, identity="a"), Sender(store, outlet, identity="b")
    serving = asyncio.create_task(first.drain())
    await asyncio.sleep(0.5)  # past the lease: the first sender is still sending
    await second.drain()
    await serving
    assert outlet.sent == [(GROUP, ["m0"])]


class DyingOutlet(Outlet):
    """A platform that accepts messages until the `dies_after`th, after which the process
    is killed before it hears back: that send went out, and nothing after it happens."""

    def __init__(self, limits: SendLimits, dies_after: int) -> None:
        super().__init__(limits)
        self.dies_after = dies_after

    async def send(self, replies: Sequence[Reply]) -> None:
        await super().send(replies)
        if len(self.sent) >= self.dies_after:
            await asyncio.Event().wait()  # killed


async def kill(sender: Sender, task: asyncio.Task[None]) -> None:
    """Stop everything `sender` does, as SIGKILL would: nothing runs after this."""
    for t in [task, *sender._tasks]:
        t.cancel()
    await asyncio.gather(task, *sender._tasks, return_exceptions=True)


async def test_a_restarted_sender_resends_only_the_send_in_flight_and_at_once(store) -> None:  # type: ignore[no-untyped-def]
    no_rate_limit(store)
    await answered(store, GROUP, 4)
    dying = DyingOutlet(SendLimits(lease=30), dies_after=2)
    first = Sender(store, dying)
    task = asyncio.create_task(first.run(asyncio.Event()))
    async with asyncio.timeout(5):
        while len(dying.sent) < 2:
            await asyncio.sleep(0.01)
    await kill(first, task)
    assert dying.sent == [(GROUP, ["m0"]), (GROUP, ["m1"])]
    # The same adapter starts again on this host: it takes its chats back at once.
    outlet = Outlet(SendLimits(lease=30))
    restarted = Sender(store, outlet)
    stop = asyncio.Event()
    task = asyncio.create_task(restarted.run(stop))
    try:
        async with asyncio.timeout(3):  # not the 30 s lease
            while len(outlet.sent) < 3:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
    # m1 went out just before the kill, unrecorded: the one reply sent twice.
    assert outlet.sent == [(GROUP, ["m1"]), (GROUP, ["m2"]), (GROUP, ["m3"])]


async def test_stopping_an_idle_sender_does_not_wait_for_its_timeout() -> None:
    sender = Sender(MemoryStore(), Outlet(SendLimits()), idle_timeout=60)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 1


class TimedOutlet(Outlet):
    """Records when each message went out; the `stall_at`th send blocks the whole process
    for a moment, so every task waiting on the event loop wakes up late."""

    def __init__(self, limits: SendLimits, stall_at: int) -> None:
        super().__init__(limits)
        self.times: list[float] = []
        self.stall_at = stall_at

    async def send(self, replies: Sequence[Reply]) -> None:
        self.times.append(time.monotonic())
        await super().send(replies)
        if len(self.times) == self.stall_at:
            time.sleep(0.4)  # a garbage collection, a busy CPU


async def test_the_global_pace_never_bursts_to_catch_up_after_a_late_wake_up() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = TimedOutlet(SendLimits(), stall_at=2)
    for c in range(8):
        await answered(store, ChatKey("test", f"c{c}"), 1)
    sender = Sender(store, outlet, global_rate=20)
    await sender.drain()
    assert len(outlet.times) == 8
    gaps = [b - a for a, b in zip(outlet.times, outlet.times[1:], strict=False)]
    assert min(gaps) >= 1 / 20  # with the margin, never closer than the platform's rate


class PerChatOutlet(Outlet):
    """Private chats take one message per window; groups have the outlet's limits."""

    def limits_for(self, chat: ChatKey) -> SendLimits:
        if chat.chat.startswith("private"):
            return SendLimits(per_chat=1, window=60)
        return self.limits


async def test_each_chat_gets_the_rate_its_kind_allows() -> None:
    store = MemoryStore(Limits(sender_rate=0))
    outlet = PerChatOutlet(SendLimits(per_chat=10, window=60))
    outlet.coalesce = False
    private, group = ChatKey("test", "private1"), ChatKey("test", "group1")
    await answered(store, private, 3)
    await answered(store, group, 3)
    await Sender(store, outlet).drain()
    assert [ids for chat, ids in outlet.sent if chat == group] == [["m0"], ["m1"], ["m2"]]
    assert [ids for chat, ids in outlet.sent if chat == private] == [["m0"]]  # one a window


async def test_a_sender_waits_out_a_redis_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.queue.redis_store import RedisStore
    from support.redis_server import RedisServer

    server = RedisServer(tmp_path / "r", appendonly=True).start()
    store = RedisStore.from_url(server.url, Limits(sender_rate=0))
    outlet = Outlet(SendLimits(lease=5))
    sender = Sender(store, outlet, idle_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await answered(store, GROUP, 1)
        async with asyncio.timeout(5):
            while not outlet.sent:
                await asyncio.sleep(0.02)
        server.stop()
        await asyncio.sleep(1.5)
        assert not task.done()  # waiting, not dead
        server.start()
        await answered(store, OTHER, 1)
        async with asyncio.timeout(15):
            while len(outlet.sent) < 2:
                assert not task.done()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await store.close()
        server.stop()
    assert outlet.sent == [(GROUP, ["m0"]), (OTHER, ["m0"])]


class BlinkingStore(MemoryStore):
    """A store out of reach for the first `blinks` renewals (a moment's network trouble)."""

    blinks = 3

    async def renew_replies(self, pending: Pending) -> Outcome:
        if self.blinks:
            self.blinks -= 1
            raise StoreUnavailable("out of reach for a moment")
        return await super().renew_replies(pending)


async def test_a_process_whose_lease_ran_out_mid_send_does_not_send_that_reply_again() -> None:
    store = BlinkingStore(Limits(sender_rate=0))
    outlet = SlowOutlet(SendLimits(lease=0.3), delay=0.5)
    await answered(store, GROUP, 2)
    sender = Sender(store, outlet, idle_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        async with asyncio.timeout(10):
            while await store.replies(GROUP):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    # The lease ran out under the first send and the same process claimed the chat again:
    # the second claim waited for the first send and recorded it instead of repeating it.
    assert outlet.sent == [(GROUP, ["m0"]), (GROUP, ["m1"])]
    assert sender.stats.lost == 1
