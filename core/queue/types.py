"""What the inbox/outbox stores share: limits, results, claims, and the protocols of
their roles (inbox, outbox, room history, inspection)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.messages import ChatKey, Incoming, Reply

BUSY_TEXT = "I'm still answering {backlog} earlier messages here; please ask again in a minute."
FAILED_TEXT = "Sorry, I couldn't answer that one."
SLOW_DOWN_TEXT = "You're asking faster than I can answer; I'll skip your questions for a while."


class Enqueued(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"  # the platform delivered this message id before
    BUSY = "busy"  # the chat's backlog is full; the asker got a busy reply
    # This sender sent too much too fast: dropped. The first one dropped in a rate window
    # gets a short reply saying so (SLOW_DOWN_TEXT); the others get nothing.
    RATE_LIMITED = "rate_limited"


class Outcome(StrEnum):
    OK = "ok"
    RETRY = "retry"  # the responder failed; the message will be tried again
    DEAD = "dead"  # failed too often: dead-lettered, the asker got an apology
    LOST = "lost"  # the lease had expired and another worker (or sender) took the chat over


@dataclass(frozen=True, slots=True)
class Limits:
    backlog: int = 50  # queued messages per chat before new ones get a busy reply
    sender_rate: int = 20  # messages per sender per chat per rate window (0: no limit)
    rate_window: float = 60.0
    dedup_window: float = 86_400.0  # how long a platform message id is remembered
    dedup_ids: int = 10_000  # and at most this many per chat
    lease: float = 30.0  # seconds before a silent worker's chats are taken over
    max_attempts: int = 3  # responder failures before a message is dead-lettered
    retry_delay: float = 1.0
    context_turns: int = 6  # turns kept per chat (a question and its reply are two)
    context_bytes: int = 4096
    context_ttl: float = 86_400.0  # a chat quiet this long forgets its context


@dataclass(frozen=True, slots=True)
class Claim:
    """A chat's head message, leased to one worker until completed, failed or released."""

    message: Incoming
    attempts: int
    token: str
    context: tuple[str, ...] = ()  # the thread's recent turns when it was claimed


@dataclass(frozen=True, slots=True)
class SendLimits:
    """A platform's rules for sending to one chat."""

    per_chat: int = 0  # messages per chat per window (0: no limit)
    window: float = 60.0
    lease: float = 60.0  # seconds before a silent sender's chats go to another sender


@dataclass(frozen=True, slots=True)
class Pending:
    """A chat's first unsent replies, leased to one sender until it finishes them.

    `token` fences the lease: acknowledging, renewing and finishing are refused once the
    lease has gone to another sender. `sent_at` holds the times (epoch seconds) of the
    chat's latest sends, as many as its per-chat limit counts.
    """

    chat: ChatKey
    replies: tuple[Reply, ...]
    token: str = ""
    sent_at: tuple[float, ...] = ()
    lease: float = 60.0  # seconds: how long each claim, ack and renewal holds the chat

    def recent_sends(self, window: float, now: float | None = None) -> int:
        """Messages sent to the chat within the last `window` seconds."""
        since = (time.time() if now is None else now) - window
        return sum(1 for at in self.sent_at if at > since)


@dataclass(frozen=True, slots=True)
class History:
    """A room's kept entries after some point, oldest first, as (seq, entry) pairs, and the
    sequence number of its latest entry (0 for a room without any)."""

    last: int
    entries: tuple[tuple[int, str], ...]


class Inbox(Protocol):
    """Questions and commands in, one chat's at a time: what a `Worker` needs."""

    limits: Limits

    async def enqueue(self, message: Incoming) -> Enqueued: ...

    async def enqueue_all(self, messages: Sequence[Incoming]) -> list[Enqueued]: ...

    async def claim(self, max_chats: int) -> list[Claim]: ...

    async def wait_for_work(self, timeout: float) -> None: ...

    async def complete(self, claim: Claim, reply: Reply) -> Outcome: ...

    async def complete_all(self, answers: Sequence[tuple[Claim, Reply]]) -> list[Outcome]: ...

    async def fail(self, claim: Claim, error: str) -> Outcome: ...

    async def release(self, claim: Claim) -> Outcome: ...

    async def context(self, chat: ChatKey, thread: str = "") -> list[str]: ...


class Outbox(Protocol):
    """Replies out, one sender per chat at a time: what a `Sender` needs."""

    async def claim_replies(
        self, platform: str, max_chats: int, max_replies: int, lease: float, owner: str
    ) -> list[Pending]: ...

    async def ack_replies(
        self, pending: Pending, sent: Sequence[str], messages: int, limits: SendLimits
    ) -> Outcome: ...

    async def renew_replies(self, pending: Pending) -> Outcome: ...

    async def finish_replies(
        self, pending: Pending, limits: SendLimits, retry_at: float = 0.0
    ) -> Outcome: ...

    async def reclaim_replies(self, platform: str, owner: str) -> int: ...

    async def wait_for_replies(self, platform: str, timeout: float) -> None: ...

    async def depth(self, platform: str) -> tuple[int, int]: ...


class RoomHistory(Protocol):
    """A web room's numbered messages, for people who join or reconnect."""

    async def append_history(self, chat: ChatKey, entry: str, keep: int, ttl: float) -> int: ...

    async def history(self, chat: ChatKey, after: int = 0) -> History: ...


class Inspection(Protocol):
    """Reading the queue's state: health checks, the web page's indicator, tests."""

    async def ping(self) -> None: ...

    async def backlog(self, chat: ChatKey) -> int: ...

    async def replies(self, chat: ChatKey, limit: int = 100) -> list[Reply]: ...

    async def dead_letters(self) -> list[dict[str, object]]: ...


class Store(Inbox, Outbox, RoomHistory, Inspection, Protocol):
    """Everything; `RedisStore` and `MemoryStore` implement it."""

    async def close(self) -> None: ...
