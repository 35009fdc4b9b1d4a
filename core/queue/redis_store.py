"""The Redis store: what production and several workers on several machines share.

With `core.queue.redis_errors`, the one place that knows Redis: every failure of the
backend leaves the store as one of `core.errors`' store errors, so the worker, the
senders, the adapters and the processes wait out an outage, or stop on a refused
password, without importing redis-py.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from core.messages import ChatKey, EventKind, Incoming, Reply, ReplyKind
from core.queue import scripts
from core.queue.keys import Keys
from core.queue.redis_errors import backend_errors_translated
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


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _context_change(message: Incoming, reply: Reply) -> list[str]:
    """COMPLETE's last arguments: what answering `message` does to its thread's context."""
    if message.kind is EventKind.RESET:
        return ["reset"]
    if message.kind is EventKind.QUESTION:
        return ["extend", message.text, reply.text]
    return ["keep"]


@backend_errors_translated
class RedisStore:
    """Inbox, outbox and context of every chat, in Redis (or Redis Cluster).

    Its methods raise `StoreUnavailable` while Redis cannot be reached, `StoreAuthError`
    when it refuses the credentials, and `StoreError` for any other failure of Redis.
    """

    def __init__(
        self, client: aioredis.Redis, limits: Limits | None = None, keys: Keys | None = None
    ) -> None:
        self.redis = client
        self.limits = limits or Limits()
        self.keys = keys or Keys()
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in (
                "ENQUEUE",
                "CLAIM",
                "COMPLETE",
                "FAIL",
                "RELEASE",
                "CLAIM_REPLIES",
                "ACK_REPLIES",
                "RENEW_REPLIES",
                "FINISH_REPLIES",
                "RECLAIM_REPLIES",
                "APPEND_HISTORY",
            )
        }
        self._worker = secrets.token_hex(6)
        self._claims = 0
        self._next_partition = 0
        self._next_outbox = 0
        self._pubsubs: dict[str, Any] = {}  # channel: subscription
        self._woken: int | None = None  # partition of the chat whose wake-up we received

    @classmethod
    def from_url(
        cls, url: str, limits: Limits | None = None, keys: Keys | None = None
    ) -> RedisStore:
        """redis://, rediss:// (TLS) or unix:// URL, password included.

        Concurrent calls share up to 64 connections and wait for a free one.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=64, timeout=30
        )
        return cls(aioredis.Redis(connection_pool=pool), limits, keys)

    async def close(self) -> None:
        for pubsub in self._pubsubs.values():
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await self.redis.aclose()

    def _now(self) -> int:
        return _ms(time.time())

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    # -- ingress ------------------------------------------------------------------------------

    async def enqueue(self, message: Incoming) -> Enqueued:
        """Queue a message (see `Enqueued` for what can happen to it)."""
        (result,) = await self.enqueue_all([message])
        return result

    async def enqueue_all(self, messages: Sequence[Incoming]) -> list[Enqueued]:
        """`enqueue` for several messages, in order, in one round trip."""
        k, lim, now = self.keys, self.limits, self._now()
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in messages:
                p = k.partition(m.chat)
                busy = Reply.to(m, BUSY_TEXT.format(backlog=lim.backlog), ReplyKind.BUSY)
                slow_down = Reply.to(m, SLOW_DOWN_TEXT, ReplyKind.SLOW_DOWN)
                keys = [
                    k.inbox(m.chat),
                    k.seen(m.chat),
                    k.ready(p),
                    k.leases(p),
                    k.rate(m.chat, m.sender),
                    k.outbox(m.chat),
                    k.outbox_ready(p, m.chat.platform),
                ]
                args: list[str | int] = [
                    str(m.chat),
                    m.message_id,
                    m.to_json(),
                    now,
                    lim.backlog,
                    _ms(lim.dedup_window),
                    lim.sender_rate,
                    _ms(lim.rate_window),
                    busy.to_json(),
                    lim.dedup_ids,
                    k.wake,
                    k.outbox_wake(m.chat.platform),
                    slow_down.to_json(),
                ]
                await self._scripts["ENQUEUE"](keys=keys, args=args, client=pipe)
            return [Enqueued(r) for r in await pipe.execute()]

    # -- the worker's side ------------------------------------------------------------------

    async def claim(self, max_chats: int) -> list[Claim]:
        """Lease the head messages of up to `max_chats` ready chats, oldest-ready first."""
        now = self._now()
        woken, self._woken = self._woken, None
        if woken is not None:
            # Just woken by a chat becoming ready: its partition is where the work is.
            claims = await self._claim_in([woken], max_chats, now)
            if claims:
                return claims
        return await self._claim_in(await self._busy_partitions(now), max_chats, now)

    async def _busy_partitions(self, now: int) -> list[int]:
        """One round trip finds the partitions with work; the start rotates for fairness."""
        k = self.keys
        order = [(self._next_partition + i) % k.partitions for i in range(k.partitions)]
        self._next_partition = (self._next_partition + 1) % k.partitions
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in order:
                pipe.zrangebyscore(k.ready(p), "-inf", now, start=0, num=1)
                pipe.zrangebyscore(k.leases(p), "-inf", now, start=0, num=1)
            peek = await pipe.execute()
        return [p for i, p in enumerate(order) if peek[2 * i] or peek[2 * i + 1]]

    async def _claim_in(self, partitions: list[int], max_chats: int, now: int) -> list[Claim]:
        k = self.keys
        claims: list[Claim] = []
        for p in partitions:
            if len(claims) >= max_chats:
                break
            self._claims += 1
            token = f"{self._worker}:{self._claims}"
            raw = await self._run(
                "CLAIM",
                [k.ready(p), k.leases(p)],
                [
                    now,
                    _ms(self.limits.lease),
                    max_chats - len(claims),
                    token,
                    k.chat_prefix(p),
                    _ms(self.limits.context_ttl),
                ],
            )
            for i in range(0, len(raw), 4):
                message = Incoming.from_json(raw[i + 1])
                context = tuple(json.loads(raw[i + 3])) if raw[i + 3] != "{}" else ()
                claims.append(Claim(message, int(raw[i + 2]), token, context))
        return claims

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a chat becomes ready (published by `enqueue`) or after `timeout`."""
        chat = await self._wait_on(self.keys.wake, timeout)
        if chat is not None:
            self._woken = self.keys.partition(ChatKey.parse(chat))

    async def _wait_on(self, channel: str, timeout: float) -> str | None:
        """The next message published on `channel` within `timeout`, if any."""
        pubsub = self._pubsubs.get(channel)
        try:
            if pubsub is None:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                self._pubsubs[channel] = pubsub
                await pubsub.subscribe(channel)
            message = await pubsub.get_message(timeout=timeout)
            return None if message is None else str(message["data"])
        except BaseException:
            self._pubsubs.pop(channel, None)  # subscribe afresh next time
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            raise

    def _lease_keys(self, chat: ChatKey) -> list[str]:
        k, p = self.keys, self.keys.partition(chat)
        return [k.inbox(chat), k.lease(chat), k.leases(p), k.ready(p)]

    async def complete(self, claim: Claim, reply: Reply) -> Outcome:
        """Publish the reply, drop the message and extend the context, all at once."""
        (outcome,) = await self.complete_all([(claim, reply)])
        return outcome

    async def complete_all(self, answers: Sequence[tuple[Claim, Reply]]) -> list[Outcome]:
        """`complete` for a batch, in one round trip (each one still its own atomic step)."""
        k, lim, now = self.keys, self.limits, self._now()
        async with self.redis.pipeline(transaction=False) as pipe:
            for claim, reply in answers:
                m = claim.message
                keys = [
                    *self._lease_keys(m.chat),
                    k.context(m.chat, m.thread),
                    k.outbox(m.chat),
                    k.outbox_ready(k.partition(m.chat), m.chat.platform),
                ]
                args: list[str | int] = [
                    str(m.chat),
                    claim.token,
                    m.message_id,
                    reply.to_json(),
                    now,
                    lim.context_turns,
                    lim.context_bytes,
                    _ms(lim.context_ttl),
                    k.outbox_wake(m.chat.platform),
                    *_context_change(m, reply),
                ]
                await self._scripts["COMPLETE"](keys=keys, args=args, client=pipe)
            return [Outcome(r) for r in await pipe.execute()]

    async def fail(self, claim: Claim, error: str) -> Outcome:
        m, k, lim = claim.message, self.keys, self.limits
        p = k.partition(m.chat)
        apology = Reply.to(m, FAILED_TEXT, ReplyKind.FAILED)
        result = await self._run(
            "FAIL",
            [
                *self._lease_keys(m.chat),
                k.dead(p),
                k.outbox(m.chat),
                k.outbox_ready(p, m.chat.platform),
            ],
            [
                str(m.chat),
                claim.token,
                m.message_id,
                self._now(),
                lim.max_attempts,
                error[:2000],
                _ms(lim.retry_delay),
                apology.to_json(),
                k.outbox_wake(m.chat.platform),
            ],
        )
        return Outcome(result)

    async def release(self, claim: Claim) -> Outcome:
        m = claim.message
        return Outcome(
            await self._run(
                "RELEASE", self._lease_keys(m.chat), [str(m.chat), claim.token, self._now()]
            )
        )

    # -- context ------------------------------------------------------------------------------

    async def context(self, chat: ChatKey, thread: str = "") -> list[str]:
        """The chat's recent turns, oldest first; reading refreshes their time to live."""
        key = self.keys.context(chat, thread)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.pexpire(key, _ms(self.limits.context_ttl))
            turns, _ = await pipe.execute()
        return list(turns)

    # -- room history (the web chat) --------------------------------------------------------

    async def append_history(self, chat: ChatKey, entry: str, keep: int, ttl: float) -> int:
        """Add `entry` to the chat's history, keep its last `keep` entries, and return the
        entry's sequence number (1, 2, ...). A history quiet for `ttl` seconds is forgotten."""
        k = self.keys
        seq = await self._run(
            "APPEND_HISTORY", [k.history(chat), k.history_seq(chat)], [entry, keep, _ms(ttl)]
        )
        return int(seq)

    async def history(self, chat: ChatKey, after: int = 0) -> History:
        """The kept entries numbered after `after`, and the latest number."""
        k = self.keys
        # MULTI: the counter and the list are read at one moment, never between an append's
        # INCR and RPUSH (the script is atomic anyway; this keeps the pair consistent).
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(k.history_seq(chat))
            pipe.lrange(k.history(chat), 0, -1)
            last, raw = await pipe.execute()
        entries = []
        for item in raw:
            seq, _, entry = item.partition(" ")
            if int(seq) > after:
                entries.append((int(seq), entry))
        return History(int(last or 0), tuple(entries))

    # -- egress ---------------------------------------------------------------------------

    async def claim_replies(
        self, platform: str, max_chats: int, max_replies: int, lease: float, owner: str
    ) -> list[Pending]:
        """Lease up to `max_chats` chats whose replies are due, with up to `max_replies`
        each, to the sender `owner` for `lease` seconds."""
        k, now = self.keys, self._now()
        order = [(self._next_outbox + i) % k.partitions for i in range(k.partitions)]
        self._next_outbox = (self._next_outbox + 1) % k.partitions
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in order:
                pipe.zrangebyscore(k.outbox_ready(p, platform), "-inf", now, start=0, num=1)
            peek = await pipe.execute()
        pending: list[Pending] = []
        for p, due in zip(order, peek, strict=True):
            if not due or len(pending) >= max_chats:
                continue
            self._claims += 1
            raw = await self._run(
                "CLAIM_REPLIES",
                [k.outbox_ready(p, platform), k.outbox_owners(p, platform)],
                [
                    now,
                    _ms(lease),
                    max_chats - len(pending),
                    max_replies,
                    k.chat_prefix(p),
                    owner,
                    f"{self._worker}:{self._claims}",
                ],
            )
            for i in range(0, len(raw), 4):
                sent_at = tuple(float(t) / 1000 for t in raw[i + 2].split(",") if t)
                replies = tuple(Reply.from_json(r) for r in json.loads(raw[i + 3]))
                pending.append(Pending(ChatKey.parse(raw[i]), replies, raw[i + 1], sent_at, lease))
        return pending

    async def ack_replies(
        self, pending: Pending, sent: Sequence[str], messages: int, limits: SendLimits
    ) -> Outcome:
        """Drop the replies `sent` (by `in_reply_to`, while at the outbox's head) and count the
        `messages` that carried them against the chat's rate limit, at once, as soon as the
        platform accepted them; this also extends the lease. LOST (and nothing changes)
        when the lease has gone to another sender."""
        chat, k = pending.chat, self.keys
        result = await self._run(
            "ACK_REPLIES",
            [
                k.outbox(chat),
                k.send_lease(chat),
                k.sent(chat),
                k.outbox_ready(k.partition(chat), chat.platform),
            ],
            [
                str(chat),
                pending.token,
                self._now(),
                _ms(pending.lease),
                messages,
                limits.per_chat,
                _ms(limits.window),
                *sent,
            ],
        )
        return Outcome(result)

    async def renew_replies(self, pending: Pending) -> Outcome:
        """Extend the lease by `pending.lease` seconds; LOST if it has gone to another."""
        chat, k = pending.chat, self.keys
        result = await self._run(
            "RENEW_REPLIES",
            [k.send_lease(chat), k.outbox_ready(k.partition(chat), chat.platform)],
            [str(chat), pending.token, self._now(), _ms(pending.lease)],
        )
        return Outcome(result)

    async def finish_replies(
        self, pending: Pending, limits: SendLimits, retry_at: float = 0.0
    ) -> Outcome:
        """End the lease: the chat's replies left are due when its rate limit and
        `retry_at` (epoch seconds) allow. LOST if the lease had gone to another sender."""
        chat, k = pending.chat, self.keys
        p = k.partition(chat)
        result = await self._run(
            "FINISH_REPLIES",
            [
                k.outbox(chat),
                k.send_lease(chat),
                k.sent(chat),
                k.outbox_ready(p, chat.platform),
                k.outbox_owners(p, chat.platform),
            ],
            [
                str(chat),
                pending.token,
                self._now(),
                limits.per_chat,
                _ms(limits.window),
                _ms(retry_at),
            ],
        )
        return Outcome(result)

    async def reclaim_replies(self, platform: str, owner: str) -> int:
        """Make the chats leased to `owner` (a sender identity whose previous process died)
        due now; returns how many had replies left."""
        k, now, taken = self.keys, self._now(), 0
        for p in range(k.partitions):
            taken += int(
                await self._run(
                    "RECLAIM_REPLIES",
                    [k.outbox_owners(p, platform), k.outbox_ready(p, platform)],
                    [owner, now, k.chat_prefix(p)],
                )
            )
        return taken

    async def wait_for_replies(self, platform: str, timeout: float) -> None:
        """Return when a chat gets a first unsent reply for `platform`, or after `timeout`."""
        await self._wait_on(self.keys.outbox_wake(platform), timeout)

    async def replies(self, chat: ChatKey, limit: int = 100) -> list[Reply]:
        """The chat's unsent replies, in order (they stay until a sender finishes them)."""
        raw = await self.redis.lrange(self.keys.outbox(chat), 0, limit - 1)
        return [Reply.from_json(r) for r in raw]

    async def depth(self, platform: str) -> tuple[int, int]:
        """Chats waiting for a worker (any platform), and `platform`'s chats with unsent replies."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(k.partitions):
                pipe.zcard(k.ready(p))
                pipe.zcard(k.leases(p))
                pipe.zcard(k.outbox_ready(p, platform))
            counts = await pipe.execute()
        return sum(counts[0::3]) + sum(counts[1::3]), sum(counts[2::3])

    # -- inspection ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
        await self.redis.ping()

    async def backlog(self, chat: ChatKey) -> int:
        return int(await self.redis.llen(self.keys.inbox(chat)))

    async def dead_letters(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for p in range(self.keys.partitions):
            out.extend(json.loads(d) for d in await self.redis.lrange(self.keys.dead(p), 0, -1))
        return out
