"""What the inbox/outbox stores share: limits, results, claims, and the store protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.messages import ChatKey, Incoming, Reply

BUSY_TEXT = "I'm still answering {backlog} earlier messages here; please ask again in a minute."
FAILED_TEXT = "Sorry, I couldn't answer that one."


class Enqueued(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"  # the platform delivered this message id before
    BUSY = "busy"  # the chat's backlog is full; the asker got a busy reply
    RATE_LIMITED = "rate_limited"  # this sender sent too much too fast; dropped


class Outcome(StrEnum):
    OK = "ok"
    RETRY = "retry"  # the responder failed; the message will be tried again
    DEAD = "dead"  # failed too often: dead-lettered, the asker got an apology
    LOST = "lost"  # the lease had expired and another worker took the chat over


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
    """A chat's first unsent replies, leased to one sender."""

    chat: ChatKey
    replies: tuple[Reply, ...]
    recent_sends: int  # messages sent to the chat within the rate window


@dataclass(frozen=True, slots=True)
class History:
    """A room's kept entries after some point, oldest first, as (seq, entry) pairs, and the
    sequence number of its latest entry (0 for a room without any)."""

    last: int
    entries: tuple[tuple[int, str], ...]


class Store(Protocol):
    """Per-chat inbox, outbox and context; `RedisStore` and `MemoryStore` implement it."""

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

    async def reset(self, chat: ChatKey, thread: str = "") -> None: ...

    async def claim_replies(
        self, platform: str, max_chats: int, max_replies: int, limits: SendLimits
    ) -> list[Pending]: ...

    async def finish_replies(
        self,
        chat: ChatKey,
        sent: Sequence[str],
        messages: int,
        limits: SendLimits,
        retry_at: float = 0.0,
    ) -> int: ...

    async def wait_for_replies(self, platform: str, timeout: float) -> None: ...

    async def replies(self, chat: ChatKey, limit: int = 100) -> list[Reply]: ...

    async def depth(self, platform: str) -> tuple[int, int]: ...

    async def ping(self) -> None: ...

    async def append_history(self, chat: ChatKey, entry: str, keep: int, ttl: float) -> int: ...

    async def history(self, chat: ChatKey, after: int = 0) -> History: ...

    async def backlog(self, chat: ChatKey) -> int: ...

    async def dead_letters(self) -> list[dict[str, object]]: ...

    async def close(self) -> None: ...
