"""The worker loop: claim the heads of ready chats, answer them in one batch, complete.

A head is a question or a command (reset, help): questions go to the model together,
commands are answered with their own text, and the store acts on a reset as it completes
it, so every event of a chat takes effect in the order it arrived.

The responder is a plain function from contexts (each a list of turns, the question last)
to replies; it runs in a thread so the event loop stays free for the store and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core import telemetry
from core.errors import StoreAuthError, StoreUnavailable
from core.messages import EventKind, Reply, ReplyKind
from core.queue.types import Claim, Inbox, Outcome
from core.retry import Backoff, unless_stopped

log = logging.getLogger("parley.worker")

Respond = Callable[[Sequence[Sequence[str]]], list[str]]

REPLY_KINDS = {
    EventKind.QUESTION: ReplyKind.ANSWER,
    EventKind.RESET: ReplyKind.RESET,
    EventKind.HELP: ReplyKind.HELP,
}


@dataclass
class WorkerStats:
    batches: int = 0
    answered: int = 0
    failed: int = 0
    lost: int = 0
    outages: int = 0


class Worker:
    """Answers messages from an `Inbox` with a `Respond` function, batch by batch."""

    def __init__(
        self,
        store: Inbox,
        respond: Respond,
        batch_size: int = 32,
        max_wait: float = 0.005,
        idle_timeout: float = 0.5,
    ) -> None:
        self.store = store
        self.respond = respond
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.idle_timeout = idle_timeout  # how often an idle worker looks without a wake-up
        self.stats = WorkerStats()
        self._held: list[Claim] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; then finish the batch in hand and return.

        Waits out the store being unreachable; raises `StoreAuthError` if it refuses the
        credentials."""
        backoff = Backoff(log, "store")
        pause = 0.0  # after a step failed for another reason than the store
        while not stop.is_set():
            try:
                if not await self.step():
                    # Woken by new work; the timeout also catches retries and expired leases.
                    await unless_stopped(self.store.wait_for_work(self.idle_timeout), stop)
                backoff.ok()
                pause = 0.0
            except StoreAuthError:
                raise  # a wrong password does not heal by waiting
            except StoreUnavailable as exc:
                await backoff.wait(exc, stop)
                self.stats.outages = backoff.outages
            except Exception:
                # A bug, or data no one expected: the chats in hand go back to the queue
                # when their leases expire, and the worker goes on with the others.
                log.exception("worker step failed; going on")
                self._held = []
                pause = min(max(pause * 2, 0.1), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        await self._release_held()

    async def step(self) -> int:
        """Claim, answer and complete one batch; returns how many messages it took."""
        if not self._held:
            self._held = await self._claim_batch()
        if not self._held:
            return 0
        claims = self._held
        # Commands are answered with their own text; only questions go to the model.
        questions = [c for c in claims if c.message.kind is EventKind.QUESTION]
        answered = iter(await self._answer([[*c.context, c.message.text] for c in questions]))
        results = [
            next(answered) if c.message.kind is EventKind.QUESTION else c.message.answer
            for c in claims
        ]
        self.stats.batches += 1
        answers = [
            (c, Reply.to(c.message, r, REPLY_KINDS[c.message.kind]))
            for c, r in zip(claims, results, strict=True)
            if isinstance(r, str)
        ]
        outcomes = await self._complete(answers)
        self.stats.answered += outcomes.count(Outcome.OK)
        self.stats.lost += outcomes.count(Outcome.LOST)
        telemetry.BATCH.observe(len(claims))
        for outcome in outcomes:
            telemetry.ANSWERED.labels(outcome.value).inc()
        for claim, result in zip(claims, results, strict=True):
            if not isinstance(result, str):
                outcome = await self._fail(claim, "the responder failed", result)
                telemetry.ANSWERED.labels(outcome.value).inc()
                self.stats.lost += outcome == Outcome.LOST
        self._held = []
        return len(claims)

    async def _complete(self, answers: list[tuple[Claim, Reply]]) -> list[Outcome]:
        """Store a batch's answers; if the batch fails, each alone, and one that still
        cannot be stored is failed (dead-lettered in the end) so its chat goes on."""
        try:
            return await self.store.complete_all(answers)
        except (StoreUnavailable, StoreAuthError):
            raise  # the store's trouble, not these answers': the batch is tried again
        except Exception as exc:
            if len(answers) == 1:
                return [await self._fail(answers[0][0], "could not store the reply", exc)]
        outcomes: list[Outcome] = []
        for answer in answers:
            outcomes.extend(await self._complete([answer]))
        return outcomes

    async def _fail(self, claim: Claim, what: str, exc: BaseException) -> Outcome:
        """Log why a message failed and fail it in the store (dead-lettered in the end)."""
        # The exception's type and text, not its repr: that could carry the message's text.
        error = f"{what}: {type(exc).__name__}: {exc}"
        log.error(
            "%s message %s (attempt %d): %s",
            claim.message.chat,
            claim.message.message_id,
            claim.attempts,
            error,
            extra={"chat": str(claim.message.chat), "message_id": claim.message.message_id},
        )
        self.stats.failed += 1
        return await self.store.fail(claim, error)

    async def _claim_batch(self) -> list[Claim]:
        claims = await self.store.claim(self.batch_size)
        deadline = time.monotonic() + self.max_wait
        # Micro-batching: when several chats are active, more are likely a moment away; a
        # lone message is answered at once.
        while 1 < len(claims) < self.batch_size and time.monotonic() < deadline:
            await asyncio.sleep(self.max_wait / 5)
            claims += await self.store.claim(self.batch_size - len(claims))
        return claims

    async def _answer(self, contexts: list[list[str]]) -> list[str | BaseException]:
        """Replies for a batch; if the batch fails, each message alone, to find the culprit."""
        if not contexts:
            return []
        try:
            return list(await asyncio.to_thread(self.respond, contexts))
        except Exception as exc:  # a responder bug must not stop the worker
            if len(contexts) == 1:
                return [exc]
        out: list[str | BaseException] = []
        for context in contexts:
            out.extend(await self._answer([context]))
        return out

    async def _release_held(self) -> None:
        for claim in self._held:
            # If the store is down, the lease expires and another worker takes the chat over.
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(claim)
        self._held = []
