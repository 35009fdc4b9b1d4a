"""The store's guarantees, against a real redis-server (and the embedded store alike)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from core.messages import ChatKey, EventKind, Incoming, Reply, ReplyKind
from core.queue.memory_store import MemoryStore
from core.queue.types import SLOW_DOWN_TEXT, Enqueued, History, Limits, Outcome, SendLimits

A = ChatKey("telegram", "-100")
B = ChatKey("slack", "C42")


def msg(chat: ChatKey, n: int, sender: str = "ann", thread: str = "") -> Incoming:
    return Incoming(chat, sender, f"question {n}", f"{chat.chat}-{n}", thread=thread)


@pytest.fixture(params=["redis", "memory"])
def store(request):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return request.getfixturevalue("redis_store")
    from core.queue.memory_store import MemoryStore

    return MemoryStore()


def with_limits(store, **changes):  # type: ignore[no-untyped-def]
    store.limits = dataclasses.replace(store.limits, **changes)
    return store


async def answer(store, claim) -> Outcome:  # type: ignore[no-untyped-def]
    return await store.complete(claim, Reply.to(claim.message, "re " + claim.message.text))


async def test_one_message_of_a_chat_in_flight_and_replies_in_order(store) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        assert await store.enqueue(msg(A, n)) == Enqueued.QUEUED
    (first,) = await store.claim(10)
    assert first.message.text == "question 0" and first.attempts == 1
    assert await store.claim(10) == []  # the chat's next message waits for this one
    assert await answer(store, first) == Outcome.OK
    (second,) = await store.claim(10)
    assert second.message.text == "question 1"
    assert await answer(store, second) == Outcome.OK
    assert [r.text for r in await store.replies(A)] == ["re question 0", "re question 1"]
    assert await store.backlog(A) == 1


async def test_chats_proceed_in_parallel_and_fairly(store) -> None:  # type: ignore[no-untyped-def]
    for n in range(100):
        await store.enqueue(msg(A, n))
    await store.enqueue(msg(B, 0))
    served = []
    for _ in range(4):
        (claim,) = await store.claim(1)
        served.append(claim.message.chat)
        await answer(store, claim)
    assert B in served[:2]  # one message behind a busy chat, not a hundred
    both = await store.claim(10)
    assert {c.message.chat for c in both} == {A}


async def test_redelivered_message_is_answered_once(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.enqueue(msg(A, 1)) == Enqueued.QUEUED
    assert await store.enqueue(msg(A, 1)) == Enqueued.DUPLICATE
    (claim,) = await store.claim(10)
    await answer(store, claim)
    assert await store.enqueue(msg(A, 1)) == Enqueued.DUPLICATE  # after answering, too
    assert len(await store.replies(A)) == 1 and await store.backlog(A) == 0


async def test_backlog_limit_answers_busy(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, backlog=3, sender_rate=0)
    results = [await store.enqueue(msg(A, n)) for n in range(5)]
    assert results == [Enqueued.QUEUED] * 3 + [Enqueued.BUSY] * 2
    busy = await store.replies(A)
    assert [r.kind for r in busy] == [ReplyKind.BUSY] * 2
    assert [r.in_reply_to for r in busy] == ["-100-3", "-100-4"]
    assert await store.backlog(A) == 3


async def test_sender_rate_limit(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, sender_rate=2, rate_window=60)
    got = [await store.enqueue(msg(A, n, sender="flood")) for n in range(4)]
    assert got == [Enqueued.QUEUED] * 2 + [Enqueued.RATE_LIMITED] * 2
    assert await store.enqueue(msg(A, 9, sender="calm")) == Enqueued.QUEUED


async def test_expired_lease_is_taken_over_and_the_late_worker_changes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, lease=0.2)
    await store.enqueue(msg(A, 1))
    (stale,) = await store.claim(10)
    await asyncio.sleep(0.3)  # the first worker went silent
    (fresh,) = await store.claim(10)
    assert fresh.message == stale.message and fresh.attempts == 2
    assert await answer(store, stale) == Outcome.LOST
    assert await answer(store, fresh) == Outcome.OK
    assert len(await store.replies(A)) == 1


async def test_poison_message_goes_to_dead_letters(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, max_attempts=3, retry_delay=0)
    await store.enqueue(msg(A, 1))
    await store.enqueue(msg(A, 2))
    outcomes = []
    for _ in range(3):
        (claim,) = await store.claim(10)
        assert claim.message.text == "question 1"
        outcomes.append(await store.fail(claim, "ValueError: boom"))
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DEAD]
    (dead,) = await store.dead_letters()
    assert dead["error"] == "ValueError: boom" and dead["chat"] == str(A)
    assert [r.kind for r in await store.replies(A)] == [ReplyKind.FAILED]
    (claim,) = await store.claim(10)
    assert claim.message.text == "question 2" and claim.attempts == 1  # the chat moved on


async def test_retry_waits_for_its_delay(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, retry_delay=0.3)
    await store.enqueue(msg(A, 1))
    (claim,) = await store.claim(10)
    assert await store.fail(claim, "boom") == Outcome.RETRY
    assert await store.claim(10) == []
    await asyncio.sleep(0.35)
    (again,) = await store.claim(10)
    assert again.attempts == 2


async def test_release_does_not_count_an_attempt(store) -> None:  # type: ignore[no-untyped-def]
    await store.enqueue(msg(A, 1))
    (claim,) = await store.claim(10)
    assert await store.release(claim) == Outcome.OK
    (again,) = await store.claim(10)
    assert again.attempts == 1
    assert await store.release(claim) == Outcome.LOST  # an old token is refused


async def test_context_is_kept_per_thread_capped_and_reset(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, context_turns=4, context_bytes=10_000)
    for n in range(3):
        await store.enqueue(msg(A, n, thread="t1"))
        (claim,) = await store.claim(10)
        await answer(store, claim)
    assert await store.context(A, "t1") == [
        "question 1",
        "re question 1",
        "question 2",
        "re question 2",
    ]
    assert await store.context(A, "other") == []
    await store.enqueue(command(A, 9, EventKind.RESET, thread="t1"))
    await serve_all(store)
    assert await store.context(A, "t1") == []


async def test_context_byte_cap_and_ttl(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, context_turns=100, context_bytes=40, context_ttl=0.3)
    for n in range(3):
        await store.enqueue(msg(A, n))
        (claim,) = await store.claim(10)
        await answer(store, claim)
    turns = await store.context(A)
    assert sum(len(t) for t in turns) <= 40 and turns[-1] == "re question 2"
    await asyncio.sleep(0.4)
    assert await store.context(A) == []


async def answered(store, chat: ChatKey, count: int) -> None:  # type: ignore[no-untyped-def]
    for n in range(count):
        await store.enqueue(msg(chat, n))
        (claim,) = await store.claim(10)
        await answer(store, claim)


SEND = SendLimits(per_chat=3, window=0.5, lease=0.3)


async def claim_replies(
    store, platform: str, max_chats: int = 10, max_replies: int = 10, owner: str = "sender-1"
):  # type: ignore[no-untyped-def]
    return await store.claim_replies(platform, max_chats, max_replies, SEND.lease, owner)


async def sent(store, pending, replies=None) -> None:  # type: ignore[no-untyped-def]
    """The platform accepted `replies` (all of `pending`'s), one message each."""
    for reply in pending.replies if replies is None else replies:
        assert await store.ack_replies(pending, [reply.in_reply_to], 1, SEND) == Outcome.OK


async def test_a_sender_leases_a_chats_replies_and_acks_what_was_sent(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 3)
    await answered(store, B, 1)
    (pending,) = await claim_replies(store, "telegram", max_replies=2)
    assert pending.chat == A and pending.recent_sends(SEND.window) == 0 and pending.token
    assert [r.text for r in pending.replies] == ["re question 0", "re question 1"]
    assert await claim_replies(store, "telegram", max_replies=2) == []  # leased
    await sent(store, pending)
    assert [r.text for r in await store.replies(A)] == ["re question 2"]  # acked at once
    assert await claim_replies(store, "telegram") == []  # still leased until finished
    assert await store.finish_replies(pending, SEND) == Outcome.OK
    (pending,) = await claim_replies(store, "telegram")
    assert [r.text for r in pending.replies] == ["re question 2"]
    assert pending.recent_sends(SEND.window) == 2
    await sent(store, pending)
    assert await store.finish_replies(pending, SEND) == Outcome.OK
    assert await store.replies(A) == [] and await claim_replies(store, "telegram") == []
    (slack,) = await claim_replies(store, "slack")
    assert slack.chat == B


async def test_a_chat_over_its_rate_limit_is_due_when_the_window_allows(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 5)
    (pending,) = await claim_replies(store, "telegram", max_replies=3)
    await sent(store, pending)
    await store.finish_replies(pending, SEND)
    assert await claim_replies(store, "telegram") == []  # 3 sent in 0.5 s
    await asyncio.sleep(0.55)
    (pending,) = await claim_replies(store, "telegram")
    assert [r.text for r in pending.replies] == ["re question 3", "re question 4"]
    assert pending.recent_sends(SEND.window) == 0


async def test_only_the_sends_a_rate_limit_counts_are_kept(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 8)
    (pending,) = await claim_replies(store, "telegram")
    await sent(store, pending, pending.replies[:6])
    await asyncio.sleep(0.35)  # the lease runs out, the sends are still in their window
    (pending,) = await claim_replies(store, "telegram")
    assert len(pending.sent_at) == SEND.per_chat  # the latest three of six
    assert pending.recent_sends(SEND.window) == 3
    assert [r.text for r in pending.replies] == ["re question 6", "re question 7"]


async def test_retry_after_defers_only_that_chat(store) -> None:  # type: ignore[no-untyped-def]
    other = ChatKey("telegram", "-200")
    await answered(store, A, 1)
    await answered(store, other, 1)
    first = {p.chat: p for p in await claim_replies(store, "telegram")}
    assert set(first) == {A, other}
    await store.finish_replies(first[A], SEND, retry_at=time.time() + 0.4)
    await store.finish_replies(first[other], SEND)
    (again,) = await claim_replies(store, "telegram")
    assert again.chat == other
    await sent(store, again)
    await store.finish_replies(again, SEND)
    await asyncio.sleep(0.45)
    (later,) = await claim_replies(store, "telegram")
    assert later.chat == A and len(later.replies) == 1


async def test_a_dead_senders_lease_runs_out_and_its_late_ack_pops_nothing(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 2)
    (stale,) = await claim_replies(store, "telegram")
    await asyncio.sleep(0.35)
    (taken,) = await claim_replies(store, "telegram", owner="sender-2")
    await sent(store, taken)
    assert await store.finish_replies(taken, SEND) == Outcome.OK
    await store.enqueue(dataclasses.replace(msg(A, 9), kind=EventKind.HELP, answer="later"))
    (help_claim,) = await store.claim(10)
    await store.complete(help_claim, Reply.to(help_claim.message, "later"))
    ids = [r.in_reply_to for r in stale.replies]
    assert await store.ack_replies(stale, ids, 1, SEND) == Outcome.LOST
    assert await store.finish_replies(stale, SEND) == Outcome.LOST
    assert [r.text for r in await store.replies(A)] == ["later"]


async def test_renewing_keeps_a_chat_from_other_senders(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 1)
    (pending,) = await claim_replies(store, "telegram")
    for _ in range(3):  # 0.6 s in all, twice the lease
        await asyncio.sleep(0.2)
        assert await store.renew_replies(pending) == Outcome.OK
        assert await claim_replies(store, "telegram", owner="sender-2") == []
    await asyncio.sleep(0.35)  # not renewed: gone
    assert await store.renew_replies(pending) == Outcome.LOST
    (taken,) = await claim_replies(store, "telegram", owner="sender-2")
    assert taken.token != pending.token


async def test_a_restarted_sender_takes_back_only_its_own_chats(store) -> None:  # type: ignore[no-untyped-def]
    other = ChatKey("telegram", "-200")
    await answered(store, A, 2)
    (mine,) = await claim_replies(store, "telegram", max_chats=1, owner="telegram@here")
    await answered(store, other, 1)
    (theirs,) = await claim_replies(store, "telegram", owner="telegram@there")
    assert (mine.chat, theirs.chat) == (A, other)
    await store.ack_replies(mine, [mine.replies[0].in_reply_to], 1, SEND)
    # the process died here; the same adapter starts again on this host
    assert await store.reclaim_replies("telegram", "telegram@here") == 1
    (again,) = await claim_replies(store, "telegram", owner="telegram@here")
    assert again.chat == A and [r.text for r in again.replies] == ["re question 1"]
    assert await store.ack_replies(mine, [], 0, SEND) == Outcome.LOST  # the old process's
    assert await store.renew_replies(theirs) == Outcome.OK  # another host's: untouched
    assert await store.reclaim_replies("slack", "telegram@here") == 0


def command(chat: ChatKey, n: int, kind: EventKind, thread: str = "") -> Incoming:
    return dataclasses.replace(msg(chat, n, thread=thread), kind=kind, text="", answer=kind.value)


async def serve_all(store) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """Answer every queued event in order, as a worker does; the context each one saw."""
    seen = []
    while claims := await store.claim(10):
        for claim in claims:
            m = claim.message
            text = "re " + m.text if m.kind is EventKind.QUESTION else m.answer
            seen.append(claim.context)
            assert await store.complete(claim, Reply.to(m, text)) == Outcome.OK
    return seen


async def test_a_reset_takes_effect_after_the_questions_queued_before_it(store) -> None:  # type: ignore[no-untyped-def]
    await store.enqueue(msg(A, 1))
    await store.enqueue(msg(A, 2))
    await store.enqueue(command(A, 3, EventKind.RESET))
    await store.enqueue(msg(A, 4))
    contexts = await serve_all(store)
    # question 2 saw question 1's exchange; nothing asked before the reset survived it
    assert contexts == [
        (),
        ("question 1", "re question 1"),
        ("question 1", "re question 1", "question 2", "re question 2"),
        (),
    ]
    assert [r.text for r in await store.replies(A)] == [
        "re question 1",
        "re question 2",
        "reset",
        "re question 4",
    ]
    assert await store.context(A) == ["question 4", "re question 4"]


async def test_a_reset_forgets_only_its_own_thread_and_help_keeps_the_context(store) -> None:  # type: ignore[no-untyped-def]
    await store.enqueue(msg(A, 1, thread="t1"))
    await store.enqueue(msg(A, 2, thread="t2"))
    await store.enqueue(command(A, 3, EventKind.HELP, thread="t2"))
    await store.enqueue(command(A, 4, EventKind.RESET, thread="t1"))
    await serve_all(store)
    assert await store.context(A, "t1") == []
    assert await store.context(A, "t2") == ["question 2", "re question 2"]


async def test_a_redelivered_command_is_acted_on_once(store) -> None:  # type: ignore[no-untyped-def]
    help_request = command(A, 7, EventKind.HELP)
    assert await store.enqueue(help_request) == Enqueued.QUEUED
    assert await store.enqueue(help_request) == Enqueued.DUPLICATE
    await serve_all(store)
    assert [r.text for r in await store.replies(A)] == ["help"]


async def test_replies_wake_the_senders(store) -> None:  # type: ignore[no-untyped-def]
    waiter = asyncio.create_task(store.wait_for_replies("telegram", 5))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await answered(store, A, 1)
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - started < 1
    assert await store.depth("telegram") == (0, 1)


async def test_claim_brings_the_threads_context(store) -> None:  # type: ignore[no-untyped-def]
    await store.enqueue(msg(A, 1, thread="t"))
    (claim,) = await store.claim(10)
    assert claim.context == ()
    await answer(store, claim)
    await store.enqueue(msg(A, 2, thread="t"))
    await store.enqueue(msg(A, 3, thread="elsewhere"))
    (claim,) = await store.claim(10)
    assert claim.context == ("question 1", "re question 1")
    await answer(store, claim)
    (claim,) = await store.claim(10)
    assert claim.context == ()


async def test_enqueue_all_keeps_order_and_reports_each(store) -> None:  # type: ignore[no-untyped-def]
    got = await store.enqueue_all([msg(A, 1), msg(A, 1), msg(B, 1), msg(A, 2)])
    assert got == [Enqueued.QUEUED, Enqueued.DUPLICATE, Enqueued.QUEUED, Enqueued.QUEUED]
    assert await store.backlog(A) == 2


ROOM = ChatKey("web", "lobby")


async def test_history_numbers_entries_keeps_the_last_and_resumes_after_a_number(store) -> None:  # type: ignore[no-untyped-def]
    texts = [f'{{"text": "message {n}: 你好, world"}}' for n in range(5)]
    assert [await store.append_history(ROOM, t, 3, 60) for t in texts] == [1, 2, 3, 4, 5]
    history = await store.history(ROOM)
    assert history.last == 5
    assert history.entries == ((3, texts[2]), (4, texts[3]), (5, texts[4]))
    assert (await store.history(ROOM, after=4)).entries == ((5, texts[4]),)
    assert (await store.history(ROOM, after=5)).entries == ()
    assert await store.history(ChatKey("web", "elsewhere")) == History(0, ())


async def test_history_appended_concurrently_is_numbered_in_list_order(store) -> None:  # type: ignore[no-untyped-def]
    seqs = await asyncio.gather(*(store.append_history(ROOM, f"m{n}", 100, 60) for n in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    history = await store.history(ROOM)
    assert [seq for seq, _ in history.entries] == list(range(1, 21))
    assert dict(history.entries) == {seq: f"m{n}" for n, seq in enumerate(seqs)}


async def test_history_keeping_nothing_still_numbers_and_a_quiet_room_starts_over(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.append_history(ROOM, "a", 0, 60) == 1
    assert await store.append_history(ROOM, "b", 0, 60) == 2
    assert await store.history(ROOM) == History(2, ())
    quiet = ChatKey("web", "quiet")
    await store.append_history(quiet, "a", 10, 0.2)
    await asyncio.sleep(0.3)
    assert await store.history(quiet) == History(0, ())
    assert await store.append_history(quiet, "b", 10, 0.2) == 1


async def test_the_memory_store_forgets_the_least_recently_used_quiet_chats() -> None:
    store = MemoryStore(Limits(sender_rate=0), max_chats=100)
    busy = Incoming(ChatKey("web", "busy"), "u", "still waiting", "b1")
    await store.enqueue(busy)
    for n in range(1000):
        await store.append_history(ChatKey("web", f"room{n}"), f"entry {n}", 100, 3600)
        await store.history(ChatKey("web", f"never{n}"))  # reading creates nothing
    assert len(store._chats) <= 100
    assert (await store.history(ChatKey("web", "room999"))).entries == ((1, "entry 999"),)
    assert (await store.history(ChatKey("web", "room0"))).last == 0  # forgotten
    [claim] = await store.claim(10)
    assert claim.message == busy  # a chat with a queued message is never forgotten


async def test_a_stale_sender_changes_nothing_in_a_chat_another_sender_holds(store) -> None:  # type: ignore[no-untyped-def]
    await answered(store, A, 2)
    (stale,) = await claim_replies(store, "telegram")
    await asyncio.sleep(0.35)  # the first sender stalled past its lease
    (taken,) = await claim_replies(store, "telegram", owner="sender-2")
    assert taken.replies == stale.replies
    # The stalled sender wakes up and records what it sent: the chat is not its own any more.
    ids = [r.in_reply_to for r in stale.replies]
    assert await store.ack_replies(stale, ids, 2, SEND) == Outcome.LOST
    assert await store.renew_replies(stale) == Outcome.LOST
    assert await store.finish_replies(stale, SEND) == Outcome.LOST
    assert [r.text for r in await store.replies(A)] == ["re question 0", "re question 1"]
    assert await claim_replies(store, "telegram") == []  # still the second's
    assert await store.ack_replies(taken, ids[:1], 1, SEND) == Outcome.OK


async def test_a_sender_over_the_rate_is_told_once_per_window(store) -> None:  # type: ignore[no-untyped-def]
    with_limits(store, sender_rate=2, rate_window=0.4)
    got = [await store.enqueue(msg(A, n, sender="flood")) for n in range(5)]
    assert got == [Enqueued.QUEUED] * 2 + [Enqueued.RATE_LIMITED] * 3
    assert await store.enqueue(msg(A, 9, sender="calm")) == Enqueued.QUEUED
    told = await store.replies(A)
    assert [(r.in_reply_to, r.asker) for r in told] == [("-100-2", "flood")]  # once, not 3 times
    assert told[0].kind is ReplyKind.SLOW_DOWN and told[0].text == SLOW_DOWN_TEXT
    await asyncio.sleep(0.45)  # a new window
    got = [await store.enqueue(msg(A, n, sender="flood")) for n in range(10, 14)]
    assert got == [Enqueued.QUEUED] * 2 + [Enqueued.RATE_LIMITED] * 2
    assert [r.in_reply_to for r in await store.replies(A)] == ["-100-2", "-100-12"]


async def test_an_unreachable_redis_raises_store_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.errors import StoreUnavailable
    from core.queue.redis_store import RedisStore

    store = RedisStore.from_url(f"unix://{tmp_path}/no-server.sock")
    calls = [
        store.enqueue(msg(A, 1)),
        store.claim(10),
        store.wait_for_work(0.1),
        store.context(A),
        claim_replies(store, "telegram"),
        store.wait_for_replies("telegram", 0.1),
        store.depth("telegram"),
        store.history(ROOM),
        store.append_history(ROOM, "x", 10, 60),
        store.backlog(A),
        store.ping(),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call
    await store.close()


async def test_a_cluster_moving_a_slot_is_an_outage_not_a_crash(redis_store) -> None:  # type: ignore[no-untyped-def]
    import redis.exceptions

    from core.errors import StoreUnavailable

    async def moved(*args: object, **kwargs: object) -> None:
        raise redis.exceptions.MovedError("3999 127.0.0.1:6381")

    redis_store._scripts["CLAIM"] = moved
    await redis_store.enqueue(msg(A, 1))
    with pytest.raises(StoreUnavailable):
        await redis_store.claim(10)


async def test_the_memory_store_forgets_what_redis_would_let_expire() -> None:
    limits = Limits(sender_rate=5, rate_window=0.5, dedup_window=0.5, context_ttl=0.5)
    store = MemoryStore(limits, sweep_every=0.1)
    send = SendLimits(per_chat=3, window=0.5, lease=5)
    for c in range(50):
        chat = ChatKey("web", f"room{c}")
        await answered(store, chat, 2)
        (pending,) = await store.claim_replies("web", 1, 10, send.lease, "web@here")
        await store.ack_replies(pending, [r.in_reply_to for r in pending.replies], 1, send)
        await store.finish_replies(pending, send)
        assert await store.context(chat)
    await store.context(ChatKey("web", "never"))  # reading creates nothing
    assert len(store._chats) == 50
    await asyncio.sleep(0.6)  # contexts, rate counters, seen ids and send times expired
    await store.enqueue(msg(B, 1))  # the next call sweeps
    assert list(store._chats) == [B]
    assert await store.depth("web") == (1, 0)
