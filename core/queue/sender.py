"""Egress: send each chat's replies from the outbox, in order, within the platform's rules.

A `Sender` leases chats with due replies from the store, hands each reply (or, for a chat
that has fallen behind its rate limit, several replies coalesced into one message) to the
platform's `Outlet`, and acknowledges only what the platform accepted. Chats are served
concurrently; one chat's replies go out one at a time. A 429 defers that chat alone; a
network error or 5xx is retried with backoff; a permanent refusal drops the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core import telemetry
from core.messages import ChatKey, Reply
from core.queue.outage import STORE_DOWN, Outage
from core.queue.types import Pending, SendLimits, Store

log = logging.getLogger("parley.egress")


class RetryAfter(Exception):
    """The platform asked to wait `seconds` before sending to this chat again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds:g} s")
        self.seconds = seconds


class Undeliverable(Exception):
    """The platform will never accept this message (chat gone, bot removed, ...)."""


class Outlet(Protocol):
    """The platform side of egress."""

    platform: str
    limits: SendLimits
    max_length: int  # characters per platform message
    coalesce: bool  # may several replies to one chat share a message?

    async def send(self, replies: Sequence[Reply]) -> None:
        """Send one message carrying `replies` (one, or several coalesced), or raise."""
        ...


def body(reply: Reply) -> str:
    """The reply's text with its note (e.g. that the question was cut short), if any."""
    return f"{reply.text}\n({reply.note})" if reply.note else reply.text


def coalesced_text(replies: Sequence[Reply]) -> str:
    """Several replies as one message: a line per reply, addressed to its asker."""
    return "\n".join(f"{r.asker_name or r.asker}: {body(r)}" for r in replies)


def split_text(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line or word ends if possible."""
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*parts, text] if text or not parts else parts


def plan(pending: Pending, outlet: Outlet) -> list[tuple[Reply, ...]]:
    """The messages to send now: one per reply while the rate limit allows; when the chat
    has more replies than its window has room for, as few coalesced messages as fit."""
    replies = pending.replies
    per_chat = outlet.limits.per_chat
    room = max(per_chat - pending.recent_sends, 0) if per_chat else len(replies)
    if len(replies) <= room or not outlet.coalesce:
        return [(r,) for r in replies[: max(room, 0)]]
    groups: list[tuple[Reply, ...]] = []
    group: list[Reply] = []
    for reply in replies:
        if group and len(coalesced_text([*group, reply])) > outlet.max_length:
            groups.append(tuple(group))
            group = []
        group.append(reply)
    groups.append(tuple(group))
    return groups[:room]


@dataclass
class SenderStats:
    sent: int = 0
    messages: int = 0
    retried: int = 0
    dropped: int = 0


class Sender:
    """Runs egress for one platform until stopped."""

    def __init__(
        self,
        store: Store,
        outlet: Outlet,
        concurrency: int = 16,
        max_replies: int = 50,
        global_rate: float = 0.0,
        max_attempts: int = 8,
        idle_timeout: float = 0.25,
    ) -> None:
        self.store = store
        self.outlet = outlet
        self.concurrency = concurrency  # chats served at once
        self.max_replies = max_replies  # replies taken per chat per lease
        self.max_attempts = max_attempts  # transient failures before a reply is dropped
        self.idle_timeout = idle_timeout  # also how late a rate-limited chat may be served
        self.stats = SenderStats()
        self._spacing = 1.0 / global_rate if global_rate > 0 else 0.0
        self._next_send = 0.0
        self._pace = asyncio.Lock()
        self._failures: dict[ChatKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def platform(self) -> str:
        return self.outlet.platform

    async def run(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        """Send until `stop` is set; then let chats in flight finish for up to `grace` s."""
        outage = Outage(log)
        pause = 0.0  # after a step failed for another reason than the store
        while not stop.is_set():
            try:
                started = await self.step()
                outage.over()
                pause = 0.0
            except STORE_DOWN as exc:
                await outage.wait(exc, stop)
                continue
            except Exception:  # a bug, or data no one expected: the other chats go on
                log.exception("%s: sending failed; going on", self.platform)
                pause = min(max(pause * 2, 0.1), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                continue
            if self._tasks:
                # A chat finishing may leave replies due at once: look again soon.
                await asyncio.wait(self._tasks, timeout=0.05, return_when="FIRST_COMPLETED")
            elif not started:
                await self.store.wait_for_replies(self.platform, self.idle_timeout)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)

    async def step(self) -> int:
        """Lease the due chats that there is room for and start serving them."""
        room = self.concurrency - len(self._tasks)
        if room <= 0:
            return 0
        pending = await self.store.claim_replies(
            self.platform, room, self.max_replies, self.outlet.limits
        )
        for p in pending:
            task = asyncio.create_task(self._serve(p))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(pending)

    async def drain(self) -> None:
        """Serve everything due now, and wait for it (tests and one-shot use)."""
        while await self.step() or self._tasks:
            if self._tasks:
                await asyncio.wait(self._tasks)

    async def _serve(self, pending: Pending) -> None:
        try:
            await self._serve_chat(pending)
        except Exception:  # the chat's lease expires and it is served again later
            log.exception("%s: sending to %s failed", self.platform, pending.chat)

    async def _serve_chat(self, pending: Pending) -> None:
        chat, platform = pending.chat, self.platform
        done: list[str] = []
        messages = 0
        retry_at = 0.0
        for group in plan(pending, self.outlet):
            ids = [r.in_reply_to for r in group]
            try:
                await self._paced()
                await self.outlet.send(group)
            except RetryAfter as exc:
                telemetry.RETRIED.labels(platform, "rate_limited").inc()
                self.stats.retried += 1
                log.warning(
                    "%s asked to wait %.1f s before sending to %s",
                    platform,
                    exc.seconds,
                    chat,
                    extra={"chat": str(chat), "message_id": ids[0]},
                )
                retry_at = time.time() + exc.seconds
                break
            except Undeliverable as exc:
                self._drop(chat, group, "undeliverable", str(exc))
                done += ids
                continue
            except Exception as exc:  # network, 5xx, a bug in one reply: retry, then drop
                failures = self._failures.get(chat, 0) + 1
                if failures >= self.max_attempts:
                    self._failures.pop(chat, None)
                    self._drop(chat, group, "failed", repr(exc))
                    done += ids
                    continue
                self._failures[chat] = failures
                telemetry.RETRIED.labels(platform, "error").inc()
                self.stats.retried += 1
                delay = min(2.0 ** (failures - 1), 60.0)
                log.warning(
                    "sending to %s failed (attempt %d, again in %.0f s): %r",
                    chat,
                    failures,
                    delay,
                    exc,
                    extra={"chat": str(chat), "message_id": ids[0]},
                )
                retry_at = time.time() + delay
                break
            else:
                self._failures.pop(chat, None)
                done += ids
                messages += 1
                self._count_sent(group)
        await self._finish(chat, done, messages, retry_at)

    async def _finish(self, chat: ChatKey, done: list[str], messages: int, retry_at: float) -> None:
        # What the platform accepted must leave the outbox, or it would be sent twice:
        # keep trying while the chat's lease lasts.
        deadline = time.monotonic() + self.outlet.limits.lease
        delay = 0.1
        while True:
            try:
                await self.store.finish_replies(chat, done, messages, self.outlet.limits, retry_at)
                return
            except STORE_DOWN as exc:
                if time.monotonic() + delay > deadline:
                    log.error("could not record replies sent to %s: %r", chat, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _paced(self) -> None:
        """Wait for the platform's overall rate (messages per second across all chats)."""
        if not self._spacing:
            return
        async with self._pace:
            now = time.monotonic()
            wait = self._next_send - now
            self._next_send = max(now, self._next_send) + self._spacing
            if wait > 0:
                await asyncio.sleep(wait)

    def _count_sent(self, group: tuple[Reply, ...]) -> None:
        platform, now = self.platform, time.time()
        self.stats.sent += len(group)
        self.stats.messages += 1
        telemetry.SENT.labels(platform).inc(len(group))
        telemetry.MESSAGES_SENT.labels(platform).inc()
        for reply in group:
            if reply.received_at:
                telemetry.LATENCY.labels(platform).observe(max(now - reply.received_at, 0.0))

    def _drop(self, chat: ChatKey, group: tuple[Reply, ...], reason: str, detail: str) -> None:
        self.stats.dropped += len(group)
        telemetry.DROPPED.labels(self.platform, reason).inc(len(group))
        log.error(
            "dropped %d replies to %s (%s): %s",
            len(group),
            chat,
            reason,
            detail,
            extra={"chat": str(chat), "message_id": group[0].in_reply_to},
        )
