"""Egress: send each chat's replies from the outbox, in order, within the platform's rules.

A `Sender` leases chats with due replies from the store, hands each reply (or, for a chat
that has fallen behind its rate limit, several replies coalesced into one message) to the
platform's `Outlet`, and acknowledges each message in the store as soon as the platform
has accepted it. Chats are served concurrently; one chat's replies go out one at a time,
by one sender at a time: the chat's send lease is fenced by a token, which the sender
renews while it sends, so a sender that stalled past its lease can no longer touch a chat
another sender has taken over. A 429 defers that chat alone; a network error or 5xx is
retried with backoff; a permanent refusal drops the reply. The store being unreachable is
waited out.

Delivery is exactly once but for one gap, where it is at least once: a message the
platform accepted whose acknowledgement never reached the store, because the process was
killed (or lost the store for longer than the send lease, or stalled past the lease)
between the platform's answer and the ack. That is at most the one send in flight in
each chat being served; whoever serves the chat next sends it again (the same adapter,
restarted on this host, takes its chats back at once; another sender, when the lease runs
out). Every message acknowledged before it goes out once, and nothing is lost.

Pacing: one chat gets at most its `SendLimits.per_chat` messages per window, counted from
the store's record of the sends, so every sender of a platform shares the count; the
outlet may give chats of different kinds different limits (`Outlet.limits_for`). Across
all chats, one sender leaves at least `1 / (global_rate * PACE_MARGIN)` seconds between
two sends, measured from the last actual send, so a late wake-up never turns into a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core import telemetry
from core.errors import StoreAuthError, StoreUnavailable
from core.messages import ChatKey, Reply
from core.queue.types import Outbox, Outcome, Pending, SendLimits
from core.retry import Backoff, unless_stopped

log = logging.getLogger("parley.egress")

# Of the platform's overall rate: its clock and ours differ, and a message's way there
# takes a varying time, so two sends spaced exactly may arrive closer than allowed.
PACE_MARGIN = 0.9


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
    limits: SendLimits  # the platform's usual limits; its `lease` is the send lease
    max_length: int  # characters per platform message
    coalesce: bool  # may several replies to one chat share a message?

    def limits_for(self, chat: ChatKey) -> SendLimits:
        """The limits of sending to `chat` (a private chat's may differ from a group's)."""
        ...

    async def send(self, replies: Sequence[Reply]) -> None:
        """Send one message carrying `replies` (one, or several coalesced), or raise."""
        ...


def sender_identity(platform: str, instance: str = "") -> str:
    """Who holds the send leases of one adapter: the same across its restarts on this host,
    so a restarted process takes its chats back at once. Several processes of one platform
    on one host need an `instance` each, or they would take each other's chats."""
    name = f"{platform}@{socket.gethostname()}"
    return f"{name}/{instance}" if instance else name


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


def plan(pending: Pending, outlet: Outlet, now: float | None = None) -> list[tuple[Reply, ...]]:
    """The messages to send now: one per reply while the chat's rate limit allows; when the
    chat has more replies than its window has room for, as few coalesced messages as fit."""
    replies = pending.replies
    limits = outlet.limits_for(pending.chat)
    per_chat = limits.per_chat
    room = max(per_chat - pending.recent_sends(limits.window, now), 0) if per_chat else len(replies)
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
    lost: int = 0  # chats whose send lease went to another sender while this one held it


@dataclass
class _Held:
    """A chat this sender serves: its lease, and until when it lasts (monotonic seconds)."""

    pending: Pending
    until: float
    lost: bool = False

    def renewed(self, at: float) -> None:
        self.until = at + self.pending.lease


class Sender:
    """Runs egress for one platform until stopped."""

    def __init__(
        self,
        store: Outbox,
        outlet: Outlet,
        concurrency: int = 16,
        max_replies: int = 50,
        global_rate: float = 0.0,
        max_attempts: int = 8,
        idle_timeout: float = 0.25,
        identity: str | None = None,
    ) -> None:
        self.store = store
        self.outlet = outlet
        self.concurrency = concurrency  # chats served at once
        self.max_replies = max_replies  # replies taken per chat per lease
        self.max_attempts = max_attempts  # transient failures before a reply is dropped
        self.idle_timeout = idle_timeout  # also how late a rate-limited chat may be served
        self.identity = identity or sender_identity(outlet.platform)
        self.stats = SenderStats()
        self._spacing = 1.0 / (global_rate * PACE_MARGIN) if global_rate > 0 else 0.0
        self._last_send = float("-inf")
        self._pace = asyncio.Lock()
        self._failures: dict[ChatKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: dict[ChatKey, asyncio.Task[None]] = {}  # the latest task per chat
        # Accepted by the platform, refused by the store (the lease had run out), for the
        # task of this process that claimed the chat again: (reply ids, messages) each.
        self._unrecorded: dict[ChatKey, list[tuple[list[str], int]]] = {}
        self._backoff = Backoff(log, "store")  # shared by the loop and every chat served
        self._stop = asyncio.Event()  # set: chats in hand send nothing more
        self._abandon = asyncio.Event()  # set: chats in hand stop even recording

    @property
    def platform(self) -> str:
        return self.outlet.platform

    async def run(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        """Send until `stop` is set; then give chats in flight up to `grace` s to finish
        the message in hand and hand their chats back.

        First takes back the chats a previous process of this sender's identity held.
        Raises `StoreAuthError` if the store refuses the credentials; waits out the store
        being unreachable."""
        self._stop = stop
        reclaimed = False
        pause = 0.0  # after a step failed for another reason than the store
        while not stop.is_set():
            try:
                if not reclaimed:
                    await self._reclaim()
                    reclaimed = True
                started = await self.step()
                if self._tasks:
                    # A chat finishing may leave replies due at once: look again soon.
                    await asyncio.wait(self._tasks, timeout=0.05, return_when="FIRST_COMPLETED")
                elif not started:
                    wait = self.store.wait_for_replies(self.platform, self.idle_timeout)
                    await unless_stopped(wait, stop)
                self._backoff.ok()
                pause = 0.0
            except StoreAuthError:
                raise  # a wrong password does not heal by waiting
            except StoreUnavailable as exc:
                await self._backoff.wait(exc, stop)
            except Exception:  # a bug, or data no one expected: the other chats go on
                log.exception("%s: sending failed; going on", self.platform)
                pause = min(max(pause * 2, 0.1), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        # Still in flight after the grace: abandoned. Their leases run out (or this
        # identity's next process takes them back); the one send in flight may go again.
        self._abandon.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _reclaim(self) -> None:
        taken = await self.store.reclaim_replies(self.platform, self.identity)
        if taken:
            log.info(
                "%s: took back %d chats that %s held before it restarted",
                self.platform,
                taken,
                self.identity,
            )

    async def step(self) -> int:
        """Lease the due chats that there is room for and start serving them."""
        room = self.concurrency - len(self._tasks)
        if room <= 0:
            return 0
        pending = await self.store.claim_replies(
            self.platform, room, self.max_replies, self.outlet.limits.lease, self.identity
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
        chat = pending.chat
        previous = self._serving.get(chat)
        current = asyncio.current_task()
        assert current is not None
        self._serving[chat] = current
        try:
            await self._serve_chat(pending, previous)
        except Exception:  # the chat's lease expires and it is served again later
            log.exception("%s: sending to %s failed", self.platform, chat)
        finally:
            if self._serving.get(chat) is current:
                del self._serving[chat]
                self._unrecorded.pop(chat, None)

    async def _serve_chat(self, pending: Pending, previous: asyncio.Task[None] | None) -> None:
        held = _Held(pending, time.monotonic() + pending.lease)
        renewing = asyncio.create_task(self._renew(held))
        try:
            if previous is not None:
                # This process claimed the chat again while still sending to it: its first
                # lease ran out (a stall, the store out of reach). The first task stops at
                # its next step; wait for it, so two sends to one chat never overlap, and
                # record what it sent instead of sending it again.
                await asyncio.wait([previous])
                pending = await self._record_unrecorded(held)
            await self._send_all(held, pending)
        finally:
            renewing.cancel()

    async def _record_unrecorded(self, held: _Held) -> Pending:
        """Ack, under this lease, what the earlier task sent but could not record; the
        replies still to send."""
        pending = held.pending
        chat, done = pending.chat, set()
        limits = self.outlet.limits_for(chat)
        for ids, messages in self._unrecorded.pop(chat, []):
            if not await self._ack(held, ids, messages, limits):
                break
            done.update(ids)
        return dataclasses.replace(
            pending, replies=tuple(r for r in pending.replies if r.in_reply_to not in done)
        )

    async def _send_all(self, held: _Held, pending: Pending) -> None:
        platform, chat = self.platform, pending.chat
        limits = self.outlet.limits_for(chat)
        retry_at = 0.0
        for group in plan(pending, self.outlet):
            if held.lost or self._stop.is_set():
                break
            ids = [r.in_reply_to for r in group]
            try:
                await self._paced()
                if held.lost:
                    break
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
                if not await self._ack(held, ids, 0, limits):
                    break
                continue
            except StoreUnavailable as exc:
                # The outlet needs the store too (a web room keeps its history there): no
                # fault of the reply's, so it counts no attempt; it goes when the store is back.
                log.warning("sending to %s waits for the store: %s", chat, exc)
                retry_at = time.time() + 1.0
                break
            except Exception as exc:  # network, 5xx, a bug in one reply: retry, then drop
                failures = self._failures.get(chat, 0) + 1
                if failures >= self.max_attempts:
                    self._failures.pop(chat, None)
                    self._drop(chat, group, "failed", repr(exc))
                    if not await self._ack(held, ids, 0, limits):
                        break
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
                self._count_sent(group)
                if not await self._ack(held, ids, 1, limits):
                    break
        if not held.lost:
            await self._finish(held, limits, retry_at)

    async def _ack(self, held: _Held, ids: list[str], messages: int, limits: SendLimits) -> bool:
        """Record at once what the platform accepted (or what was given up), so a sender
        killed after this never sends it again; False when the chat is no longer ours."""
        while True:
            started = time.monotonic()
            try:
                outcome = await self.store.ack_replies(held.pending, ids, messages, limits)
            except StoreUnavailable as exc:
                # Keep trying while the lease lasts; after that the chat may be another's.
                if time.monotonic() > held.until or not await self._backoff.wait(
                    exc, self._abandon
                ):
                    log.error(
                        "could not record %d replies sent to %s; they may be sent again",
                        len(ids),
                        held.pending.chat,
                        extra={"chat": str(held.pending.chat), "message_id": ids[0]},
                    )
                    held.lost = True
                    self._hand_over(held, ids, messages)
                    return False
                continue
            self._backoff.ok()
            if outcome is Outcome.LOST:
                self._lost(held)
                self._hand_over(held, ids, messages)
                return False
            held.renewed(started)
            return True

    def _hand_over(self, held: _Held, ids: list[str], messages: int) -> None:
        """Leave what could not be recorded to this process's newer task of the chat, if
        there is one (it records it under its own lease, instead of sending it again)."""
        if self._serving.get(held.pending.chat) is not asyncio.current_task():
            self._unrecorded.setdefault(held.pending.chat, []).append((ids, messages))

    async def _renew(self, held: _Held) -> None:
        """Extend the lease while the chat is served, so a slow platform (or a long reply in
        several parts) does not let a second sender start on the same replies."""
        chat = held.pending.chat
        while not held.lost:
            await asyncio.sleep(held.pending.lease / 3)
            started = time.monotonic()
            try:
                outcome = await self.store.renew_replies(held.pending)
            except StoreUnavailable:
                continue  # the next tick tries again; the acks keep trying too
            except Exception:
                log.exception("%s: renewing the lease of %s failed", self.platform, chat)
                continue
            if outcome is Outcome.LOST:
                self._lost(held)
                return
            held.renewed(started)

    async def _finish(self, held: _Held, limits: SendLimits, retry_at: float) -> None:
        """Hand the chat back, due when its rate limit and `retry_at` allow."""
        while True:
            try:
                outcome = await self.store.finish_replies(held.pending, limits, retry_at)
            except StoreUnavailable as exc:
                if time.monotonic() > held.until or not await self._backoff.wait(
                    exc, self._abandon
                ):
                    return  # the lease runs out instead, and the chat is served again
                continue
            self._backoff.ok()
            if outcome is Outcome.LOST:
                self._lost(held)
            return

    def _lost(self, held: _Held) -> None:
        if not held.lost:
            held.lost = True
            self.stats.lost += 1
            log.warning(
                "%s: the send lease of %s ran out and went to another sender; leaving it",
                self.platform,
                held.pending.chat,
                extra={"chat": str(held.pending.chat)},
            )

    async def _paced(self) -> None:
        """Wait for the platform's overall rate (messages per second across all chats):
        strictly spaced from the last send that actually happened, never catching up."""
        if not self._spacing:
            return
        async with self._pace:
            wait = self._last_send + self._spacing - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_send = time.monotonic()

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
