"""The sender's rules, with an in-process outlet standing in for a platform."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

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
from core.queue.types import Limits, Pending, SendLimits

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

    async def send(self, replies: Sequence[Reply]) -> None:
        chat = replies[0].chat
        if self.failures.get(chat):
            raise self.failures[chat].pop(0)
        self.sent.append((chat, [r.in_reply_to for r in replies]))


def reply(n: int, chat: ChatKey = GROUP) -> Reply:
    return Reply(chat, f"answer {n}", f"m{n}", asker="u", asker_name=f"user{n}")


def test_plan_sends_one_message_per_reply_while_the_window_has_room() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    replies = tuple(reply(n) for n in range(3))
    assert plan(Pending(GROUP, replies, recent_sends=2), outlet) == [(r,) for r in replies]


def test_plan_coalesces_in_order_when_a_chat_falls_behind() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    replies = tuple(reply(n) for n in range(10))
    groups = plan(Pending(GROUP, replies, recent_sends=3), outlet)
    assert 1 <= len(groups) <= 2
    assert all(len(coalesced_text(g)) <= outlet.max_length for g in groups)
    flat = [r for g in groups for r in g]
    assert flat == list(replies[: len(flat)])
    assert coalesced_text(groups[0]).splitlines()[0] == "user0: answer 0"


def test_plan_without_coalescing_sends_what_the_window_allows() -> None:
    outlet = Outlet(SendLimits(per_chat=5))
    outlet.coalesce = False
    groups = plan(Pending(GROUP, tuple(reply(n) for n in range(10)), recent_sends=3), outlet)
    assert [g[0].in_reply_to for g in groups] == ["m0", "m1"]


@pytest.mark.parametrize("limit", [5, 17, 100])
def test_split_text_keeps_every_word_within_the_limit(limit: int) -> None:
    text = " ".join(f"word{n}" for n in range(60)) + "\n" + "x" * 130
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
    assert split_text("short", limit) == ["short"]


async def answered(store: MemoryStore, chat: ChatKey, count: int) -> None:
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
