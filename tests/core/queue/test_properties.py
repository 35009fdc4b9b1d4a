"""Property-based tests: random interleavings of enqueue, claim, complete, fail and release
against a plain model of what each chat should see."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core.messages import ChatKey, Incoming, Reply
from core.queue.memory_store import MemoryStore
from core.queue.redis_store import RedisStore
from core.queue.types import Claim, Enqueued, Limits, Outcome

CHATS = [ChatKey("web", f"r{i}") for i in range(3)]
LIMITS = Limits(backlog=1000, sender_rate=0, retry_delay=0, max_attempts=1000)


class QueueMachine(RuleBasedStateMachine):
    make_store = staticmethod(lambda: MemoryStore(LIMITS))

    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = self.make_store()
        self.sent: dict[ChatKey, list[str]] = defaultdict(list)  # ids in arrival order
        self.answered: dict[ChatKey, list[str]] = defaultdict(list)
        self.held: list[Claim] = []

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.run(self.store.close())
            self.loop.close()

    @rule(chat=st.sampled_from(CHATS), n=st.integers(0, 30))
    def enqueue(self, chat: ChatKey, n: int) -> None:
        msg_id = f"{chat.chat}-{n}"
        result = self.run(self.store.enqueue(Incoming(chat, "u", f"q{n}", msg_id)))
        if msg_id in self.sent[chat]:
            assert result == Enqueued.DUPLICATE
        else:
            assert result == Enqueued.QUEUED
            self.sent[chat].append(msg_id)

    @rule(k=st.integers(1, 4))
    def claim(self, k: int) -> None:
        claims = self.run(self.store.claim(k))
        assert len(claims) <= k
        for c in claims:
            chat = c.message.chat
            assert all(h.message.chat != chat for h in self.held), "two in flight in one chat"
            # the claimed message is the oldest unanswered one of its chat
            assert c.message.message_id == self.sent[chat][len(self.answered[chat])]
        self.held.extend(claims)

    @rule(i=st.integers(0, 10), how=st.sampled_from(["complete", "fail", "release"]))
    def finish(self, i: int, how: str) -> None:
        if not self.held:
            return
        c = self.held.pop(i % len(self.held))
        if how == "complete":
            reply = Reply.to(c.message, "a" + c.message.text)
            assert self.run(self.store.complete(c, reply)) == Outcome.OK
            self.answered[c.message.chat].append(c.message.message_id)
        elif how == "fail":
            assert self.run(self.store.fail(c, "boom")) == Outcome.RETRY
        else:
            assert self.run(self.store.release(c)) == Outcome.OK

    @invariant()
    def replies_are_the_answered_messages_in_order(self) -> None:
        if not hasattr(self, "loop"):
            return
        for chat in CHATS:
            replies = self.run(self.store.replies(chat, 1000))
            assert [r.in_reply_to for r in replies] == self.answered[chat]
            assert self.answered[chat] == self.sent[chat][: len(self.answered[chat])]

    @rule()
    def drain(self) -> None:
        """Everything not yet answered is still there, and comes out in order."""
        for c in self.held:
            self.run(self.store.release(c))
        self.held = []
        while claims := self.run(self.store.claim(10)):
            for c in claims:
                self.run(self.store.complete(c, Reply.to(c.message, "x")))
                self.answered[c.message.chat].append(c.message.message_id)
        for chat in CHATS:
            assert self.answered[chat] == self.sent[chat]


def test_memory_store_properties() -> None:
    QueueMachine.TestCase.settings = settings(
        max_examples=150, stateful_step_count=40, deadline=None
    )
    QueueMachine.TestCase().runTest()


@pytest.mark.slow
def test_redis_store_properties(redis_server) -> None:  # type: ignore[no-untyped-def]
    def make_store() -> RedisStore:
        redis_server.flush()
        return RedisStore.from_url(redis_server.url, LIMITS)

    class Machine(QueueMachine):
        pass

    Machine.make_store = staticmethod(make_store)  # type: ignore[assignment]
    Machine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    Machine.TestCase().runTest()
