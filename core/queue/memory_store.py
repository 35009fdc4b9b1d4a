"""The embedded store: the Redis store's behaviour inside one process, without a server.

Used when no Redis URL is configured, so the main job runs on a fresh machine. Each method
runs under one lock, which makes it atomic the way a Lua script is in Redis.

It forgets what Redis lets expire: a sweep, run by whichever call comes first after
`sweep_every` seconds, drops expired contexts and histories, rate counters and send times
past their windows, message ids past the dedup window, send leases that ran out, and then
every chat left with nothing in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.messages import ChatKey, EventKind, Incoming, Reply, ReplyKind
from core.queue.types import (
    BUSY_TEXT,
    FAILED_TEXT,
    SLOW_DOWN_TEXT,
    Claim,
    Enqueued,
    History,
    Limits,
    Outcome,
    Pending,
    SendLimits,
)


@dataclass
class _Chat:
    inbox: deque[Incoming] = field(default_factory=deque)
    outbox: deque[Reply] = field(default_factory=deque)
    seen: dict[str, float] = field(default_factory=dict)  # message id: when, oldest first
    rates: dict[str, tuple[int, float]] = field(default_factory=dict)  # sender: (count, until)
    contexts: dict[str, tuple[list[str], float]] = field(
        default_factory=dict
    )  # thread: (turns, until)
    # the worker's lease of the head message
    token: str | None = None
    lease_until: float = 0.0
    lease_msg: str | None = None
    attempts: int = 0
    # the sender's lease of the outbox, and the latest sends (at most the per-chat limit)
    send_token: str | None = None
    send_owner: str = ""
    send_until: float = 0.0
    sent: list[float] = field(default_factory=list)
    sent_until: float = 0.0
    history: deque[tuple[int, str]] = field(default_factory=deque)  # (seq, entry)
    history_seq: int = 0
    history_until: float = 0.0


MAX_CHATS = 10_000  # chats remembered (with their history and context) at most
SWEEP_EVERY = 30.0  # seconds between sweeps of what has expired


class MemoryStore:
    """Inbox, outbox and context of every chat, in this process's memory.

    Redis forgets a quiet chat when its keys expire; here the sweep does. Beyond `max_chats`
    chats, the least recently used ones with nothing queued or being answered are forgotten
    as well, so people opening room after room cannot grow the process without bound.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        max_chats: int = MAX_CHATS,
        sweep_every: float = SWEEP_EVERY,
    ) -> None:
        self.limits = limits or Limits()
        self.max_chats = max_chats
        self.sweep_every = sweep_every
        self._chats: dict[ChatKey, _Chat] = {}
        self._ready: dict[ChatKey, float] = {}
        self._outbox_due: dict[ChatKey, float] = {}  # chats with unsent replies: due time
        self._outbox_wake: dict[str, asyncio.Event] = {}
        self._dead: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._wake: asyncio.Event | None = None
        self._next_sweep = time.time() + sweep_every

    def _chat(self, key: ChatKey) -> _Chat:
        """The chat, created if new, and moved to the recently used end."""
        chat = self._chats.pop(key, None)
        if chat is None:
            chat = _Chat()
            if len(self._chats) >= self.max_chats:
                self._forget_quiet()
        self._chats[key] = chat
        return chat

    def _peek(self, key: ChatKey) -> _Chat:
        """The chat for a read: an unknown one is not created (nor remembered)."""
        return self._chats.get(key) or _Chat()

    def _forget_quiet(self) -> None:
        # Down to 90% at once, so that the scan is paid once per thousand new chats.
        excess = len(self._chats) - int(self.max_chats * 0.9)
        for key in [k for k, c in self._chats.items() if _quiet(c)][: max(excess, 0)]:
            del self._chats[key]

    def _tick(self, now: float) -> None:
        """Sweep if it is time (under the lock): the cost is paid once per `sweep_every`."""
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        lim = self.limits
        for key, chat in list(self._chats.items()):
            chat.contexts = {t: c for t, c in chat.contexts.items() if c[1] > now}
            chat.rates = {s: r for s, r in chat.rates.items() if r[1] > now}
            for old, at in list(chat.seen.items()):  # oldest first
                if at > now - lim.dedup_window:
                    break
                del chat.seen[old]
            if chat.sent_until <= now:
                chat.sent = []
            if chat.send_token is not None and chat.send_until <= now:
                chat.send_token = None
            if chat.history_until <= now:
                chat.history.clear()
                chat.history_seq = 0
            if _empty(chat):
                del self._chats[key]
                self._ready.pop(key, None)
                self._outbox_due.pop(key, None)

    async def close(self) -> None:
        return None

    async def enqueue_all(self, messages: Sequence[Incoming]) -> list[Enqueued]:
        return [await self.enqueue(m) for m in messages]

    async def enqueue(self, message: Incoming) -> Enqueued:
        lim, now = self.limits, time.time()
        with self._lock:
            self._tick(now)
            chat = self._chat(message.chat)
            if not self._first_time(chat, message.message_id, now):
                return Enqueued.DUPLICATE
            if lim.sender_rate > 0:
                count, until = chat.rates.get(message.sender, (0, now + lim.rate_window))
                if until <= now:
                    count, until = 0, now + lim.rate_window
                count += 1
                chat.rates[message.sender] = (count, until)
                if count > lim.sender_rate:
                    # The counter remembers having said so: once per window (as in Redis).
                    if count == lim.sender_rate + 1:
                        slow = Reply.to(message, SLOW_DOWN_TEXT, ReplyKind.SLOW_DOWN)
                        self._push_reply(chat, slow, now)
                    return Enqueued.RATE_LIMITED
            if len(chat.inbox) >= lim.backlog:
                busy = BUSY_TEXT.format(backlog=lim.backlog)
                self._push_reply(chat, Reply.to(message, busy, ReplyKind.BUSY), now)
                return Enqueued.BUSY
            chat.inbox.append(message)
            if chat.token is None:
                self._ready.setdefault(message.chat, now)
                if self._wake is not None:
                    self._wake.set()
            return Enqueued.QUEUED

    def _first_time(self, chat: _Chat, message_id: str, now: float) -> bool:
        """Remember a platform message id; False if it was seen within the dedup window."""
        lim = self.limits
        seen_at = chat.seen.get(message_id)
        if seen_at is not None and seen_at > now - lim.dedup_window:
            return False
        chat.seen.pop(message_id, None)  # seen before the window: it goes to the end again
        chat.seen[message_id] = now
        for old, at in list(chat.seen.items()):  # oldest first: dicts keep insertion order
            if at > now - lim.dedup_window and len(chat.seen) <= lim.dedup_ids:
                break
            del chat.seen[old]
        return True

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a chat becomes ready or after `timeout`."""
        if self._wake is None:
            self._wake = asyncio.Event()
        await _wait(self._wake, timeout)

    async def claim(self, max_chats: int) -> list[Claim]:
        now = time.time()
        with self._lock:
            self._tick(now)
            for key, chat in self._chats.items():
                if chat.token is not None and chat.lease_until <= now:
                    chat.token = None
                    if chat.inbox:
                        self._ready[key] = now
            due = sorted(
                (at, i, key) for i, (key, at) in enumerate(self._ready.items()) if at <= now
            )
            claims = []
            for _, _, key in due[:max_chats]:
                del self._ready[key]
                chat = self._chats[key]
                head = chat.inbox[0]
                chat.attempts = chat.attempts + 1 if chat.lease_msg == head.message_id else 1
                chat.lease_msg = head.message_id
                chat.token = f"mem:{next(self._tokens)}"
                chat.lease_until = now + self.limits.lease
                context = self._live_context(chat, head.thread, now)
                if context:
                    chat.contexts[head.thread] = (context, now + self.limits.context_ttl)
                claims.append(Claim(head, chat.attempts, chat.token, tuple(context)))
            return claims

    def _holds(self, claim: Claim) -> _Chat | None:
        chat = self._chats.get(claim.message.chat)
        if chat is None or chat.token != claim.token or not chat.inbox:
            return None
        return chat if chat.inbox[0].message_id == claim.message.message_id else None

    def _unlease(self, key: ChatKey, chat: _Chat, ready_at: float) -> None:
        chat.token = None
        if chat.inbox:
            self._ready[key] = ready_at

    async def complete_all(self, answers: Sequence[tuple[Claim, Reply]]) -> list[Outcome]:
        return [await self.complete(claim, reply) for claim, reply in answers]

    async def complete(self, claim: Claim, reply: Reply) -> Outcome:
        lim, now, m = self.limits, time.time(), claim.message
        with self._lock:
            chat = self._holds(claim)
            if chat is None:
                return Outcome.LOST
            # Everything that can raise comes before the first change: all or nothing, as
            # the Lua script is in Redis.
            turns = self._live_context(chat, m.thread, now)
            if m.kind is EventKind.QUESTION:
                turns = [*turns, m.text, reply.text][-lim.context_turns :]
                while len(turns) > 1 and sum(len(t.encode()) for t in turns) > lim.context_bytes:
                    turns.pop(0)
            chat.inbox.popleft()
            chat.lease_msg, chat.attempts = None, 0
            self._push_reply(chat, reply, now)
            if m.kind is EventKind.RESET:
                chat.contexts.pop(m.thread, None)
            elif m.kind is EventKind.QUESTION:
                chat.contexts[m.thread] = (turns, now + lim.context_ttl)
            self._unlease(m.chat, chat, now)
            return Outcome.OK

    async def fail(self, claim: Claim, error: str) -> Outcome:
        now, m = time.time(), claim.message
        with self._lock:
            chat = self._holds(claim)
            if chat is None:
                return Outcome.LOST
            if chat.attempts >= self.limits.max_attempts:
                chat.inbox.popleft()
                chat.lease_msg, chat.attempts = None, 0
                self._dead.append(
                    {
                        "chat": str(m.chat),
                        "message": m.to_json(),
                        "error": error[:2000],
                        "at": int(now * 1000),
                    }
                )
                self._push_reply(chat, Reply.to(m, FAILED_TEXT, ReplyKind.FAILED), now)
                self._unlease(m.chat, chat, now)
                return Outcome.DEAD
            self._unlease(m.chat, chat, now + self.limits.retry_delay)
            return Outcome.RETRY

    async def release(self, claim: Claim) -> Outcome:
        with self._lock:
            chat = self._holds(claim)
            if chat is None:
                return Outcome.LOST
            chat.attempts -= 1
            self._unlease(claim.message.chat, chat, time.time())
            return Outcome.OK

    def _live_context(self, chat: _Chat, thread: str, now: float) -> list[str]:
        turns, until = chat.contexts.get(thread, ([], 0.0))
        return list(turns) if until > now else []

    async def context(self, chat: ChatKey, thread: str = "") -> list[str]:
        """The thread's recent turns, oldest first; reading refreshes their time to live."""
        now = time.time()
        with self._lock:
            state = self._chats.get(chat)
            if state is None:
                return []
            turns = self._live_context(state, thread, now)
            if turns:
                state.contexts[thread] = (turns, now + self.limits.context_ttl)
            return turns

    # -- room history (the web chat) --------------------------------------------------------

    async def append_history(self, chat: ChatKey, entry: str, keep: int, ttl: float) -> int:
        now = time.time()
        with self._lock:
            self._tick(now)
            state = self._chat(chat)
            if state.history_until <= now:  # quiet for `ttl`: forgotten, numbering restarts
                state.history.clear()
                state.history_seq = 0
            state.history_seq += 1
            state.history.append((state.history_seq, entry))
            while len(state.history) > max(keep, 0):
                state.history.popleft()
            state.history_until = now + ttl
            return state.history_seq

    async def history(self, chat: ChatKey, after: int = 0) -> History:
        with self._lock:
            state = self._peek(chat)
            if state.history_until <= time.time():
                return History(0, ())
            entries = tuple((seq, e) for seq, e in state.history if seq > after)
            return History(state.history_seq, entries)

    # -- egress ---------------------------------------------------------------------------

    def _push_reply(self, chat: _Chat, reply: Reply, now: float) -> None:
        chat.outbox.append(reply)
        if reply.chat not in self._outbox_due:
            self._outbox_due[reply.chat] = now
            wake = self._outbox_wake.get(reply.chat.platform)
            if wake is not None:
                wake.set()

    def _holds_send(self, pending: Pending, now: float) -> _Chat | None:
        """The chat, while `pending`'s send lease is still the chat's."""
        chat = self._chats.get(pending.chat)
        if chat is None or chat.send_token != pending.token or chat.send_until <= now:
            return None
        return chat

    async def claim_replies(
        self, platform: str, max_chats: int, max_replies: int, lease: float, owner: str
    ) -> list[Pending]:
        now = time.time()
        with self._lock:
            self._tick(now)
            due = sorted(
                (at, i, key)
                for i, (key, at) in enumerate(self._outbox_due.items())
                if at <= now and key.platform == platform
            )
            pending = []
            for _, _, key in due[:max_chats]:
                chat = self._chats.get(key)
                if chat is None or not chat.outbox:
                    self._outbox_due.pop(key, None)
                    continue
                if chat.send_token is not None and chat.send_until > now:
                    self._outbox_due[key] = chat.send_until
                    continue
                chat.send_token = f"send:{next(self._tokens)}"
                chat.send_owner, chat.send_until = owner, now + lease
                self._outbox_due[key] = chat.send_until
                replies = tuple(itertools.islice(chat.outbox, max_replies))
                pending.append(Pending(key, replies, chat.send_token, tuple(chat.sent), lease))
            return pending

    async def ack_replies(
        self, pending: Pending, sent: Sequence[str], messages: int, limits: SendLimits
    ) -> Outcome:
        now = time.time()
        with self._lock:
            chat = self._holds_send(pending, now)
            if chat is None:
                return Outcome.LOST
            for reply_id in sent:
                if not chat.outbox or chat.outbox[0].in_reply_to != reply_id:
                    break
                chat.outbox.popleft()
            if limits.per_chat > 0 and messages > 0:
                recent = [t for t in chat.sent if t > now - limits.window] + [now] * messages
                chat.sent = recent[-limits.per_chat :]
                chat.sent_until = now + limits.window
            self._extend_send(pending, chat, now)
            return Outcome.OK

    def _extend_send(self, pending: Pending, chat: _Chat, now: float) -> None:
        """The sender holding the chat keeps it for another lease."""
        chat.send_until = now + pending.lease
        if pending.chat in self._outbox_due:
            self._outbox_due[pending.chat] = chat.send_until

    async def renew_replies(self, pending: Pending) -> Outcome:
        now = time.time()
        with self._lock:
            chat = self._holds_send(pending, now)
            if chat is None:
                return Outcome.LOST
            self._extend_send(pending, chat, now)
            return Outcome.OK

    async def finish_replies(
        self, pending: Pending, limits: SendLimits, retry_at: float = 0.0
    ) -> Outcome:
        now = time.time()
        with self._lock:
            chat = self._holds_send(pending, now)
            if chat is None:
                return Outcome.LOST
            chat.send_token = None
            if not chat.outbox:
                self._outbox_due.pop(pending.chat, None)
                return Outcome.OK
            due = max(now, retry_at)
            if limits.per_chat > 0:
                chat.sent = [t for t in chat.sent if t > now - limits.window]
                if len(chat.sent) >= limits.per_chat:
                    due = max(due, chat.sent[-limits.per_chat] + limits.window)
            self._outbox_due[pending.chat] = due
            return Outcome.OK

    async def reclaim_replies(self, platform: str, owner: str) -> int:
        now, taken = time.time(), 0
        with self._lock:
            for key, chat in self._chats.items():
                if key.platform != platform or chat.send_token is None:
                    continue
                if chat.send_owner != owner or chat.send_until <= now:
                    continue
                chat.send_token = None
                if chat.outbox:
                    self._outbox_due[key] = now
                    taken += 1
                else:
                    self._outbox_due.pop(key, None)
            return taken

    async def wait_for_replies(self, platform: str, timeout: float) -> None:
        await _wait(self._outbox_wake.setdefault(platform, asyncio.Event()), timeout)

    async def replies(self, chat: ChatKey, limit: int = 100) -> list[Reply]:
        with self._lock:
            return list(itertools.islice(self._peek(chat).outbox, limit))

    async def depth(self, platform: str) -> tuple[int, int]:
        with self._lock:
            busy = sum(1 for c in self._chats.values() if c.inbox)
            return busy, sum(1 for key in self._outbox_due if key.platform == platform)

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
        return None

    async def backlog(self, chat: ChatKey) -> int:
        with self._lock:
            return len(self._peek(chat).inbox)

    async def dead_letters(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self._dead)


def _quiet(chat: _Chat) -> bool:
    """Nothing queued, nothing to send, not being answered or sent: only history and
    context, and what deduplication and rate limits remember."""
    return not chat.inbox and not chat.outbox and chat.token is None and chat.send_token is None


def _empty(chat: _Chat) -> bool:
    """Quiet, and nothing left that Redis would still keep (the sweep ran first)."""
    return _quiet(chat) and not (
        chat.contexts or chat.rates or chat.seen or chat.sent or chat.history_seq
    )


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()
