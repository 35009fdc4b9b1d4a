"""What every platform adapter shares: ingress into the queue, egress from it, the run loop.

An adapter translates between its platform and `core` types. Ingress goes through
`Adapter.ask` (truncation with a note, a help reply for an empty question, metrics,
enqueue), `Adapter.reset` and `Adapter.help`: commands are chat events like questions and
wait their turn in the chat's queue. A question's text passes `core.gate` there, whatever
the platform. Egress is
a `Sender` calling the adapter's `send`. `guard` wraps the handling of one platform event,
so a bad one is logged (rate-limited) and never stops the loop.

`run` retries the platform handshake (`start`) while the platform cannot be reached,
not ready meanwhile and saying why; only an error no wait heals (a refused token) ends it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence

from adapters.http import Throttle
from core import gate, telemetry
from core.messages import ChatKey, EventKind, Incoming, Reply
from core.queue.sender import Sender, Undeliverable
from core.queue.types import Enqueued, SendLimits, Store
from core.retry import Backoff, Stopped, retry

log = logging.getLogger("parley.adapter")

EMPTY_HELP = "Ask me something: {how}"
TRUNCATED_NOTE = "your message was long; I read its first {limit:,} characters"
RESET_TEXT = "Done: I have forgotten our conversation here."

PARTS_REMEMBERED = 10_000  # replies whose sent parts are remembered after a failure


class Adapter(abc.ABC):
    """One platform. Subclasses set the class attributes and implement `start` (connect,
    register webhooks, start receiving), `stop` and `send`."""

    platform: str
    title: str = ""  # the platform's name in messages ("Telegram"); `platform` by default
    max_length: int = 4000  # characters per platform message
    coalesce: bool = False
    # Errors of `start` that waiting heals (the platform unreachable, overloaded); `run`
    # tries again after them, with a pause of `start_backoff` seconds (first, longest).
    unreachable: tuple[type[BaseException], ...] = ()
    start_backoff: tuple[float, float] = (1.0, 60.0)

    def __init__(
        self,
        store: Store,
        *,
        limits: SendLimits | None = None,
        max_chars: int = 1000,
        global_rate: float = 0.0,
        concurrency: int = 16,
    ) -> None:
        self.store = store
        self.limits = limits or SendLimits()
        self.max_chars = max_chars  # longest question passed to the model
        self.sender = Sender(store, self, concurrency=concurrency, global_rate=global_rate)
        self.ready_reason: str | None = "starting"  # None once serving
        self._quiet = Throttle()
        self._stop: asyncio.Event | None = None  # `run`'s
        self._failure: BaseException | None = None
        self._parts_sent: dict[Hashable, int] = {}  # long replies cut short by a failure

    # -- life cycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to the platform; raise if it cannot be used (bad token, ...)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop receiving and release platform resources."""

    async def run(
        self,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None = None,
        on_waiting: Callable[[str], None] | None = None,
    ) -> None:
        """Start, send replies until `stop` is set, then stop.

        While the platform cannot be reached, `start` is tried again with backoff (not
        ready meanwhile, `on_waiting` told why); `stop` ends the wait. Errors no wait heals
        (a refused token: `ConfigError`) are raised at once, as is an error that ended a
        part of the adapter for good while it served (see `fail`).
        """
        self._stop = stop
        what = self.title or self.platform
        backoff = Backoff(log, what, *self.start_backoff)

        async def attempt() -> None:
            try:
                await self.start()
            except self.unreachable as exc:
                self.ready_reason = f"{what} unreachable: {self.describe(exc)}"
                if on_waiting is not None:
                    on_waiting(self.ready_reason)
                raise

        try:
            await retry(
                attempt,
                backoff=backoff,
                stop=stop,
                transient=self.unreachable,
                retry_after=self.wait_hint,
            )
        except Stopped:
            self.ready_reason = "stopping"
            return
        self.ready_reason = None
        log.info("%s adapter serving", self.platform)
        if on_ready is not None:
            on_ready()
        try:
            await self.sender.run(stop)
        finally:
            self.ready_reason = "stopping"
            await self.stop()
        if self._failure is not None:
            raise self._failure

    def fail(self, exc: BaseException) -> None:
        """A part of the adapter that runs beside the sender (a poller) ended for good:
        stop serving, and have `run` raise `exc`."""
        self._failure = exc
        self.ready_reason = "stopping"
        if self._stop is not None:
            self._stop.set()

    def describe(self, exc: BaseException) -> str:
        """`exc` in a line, for logs and /healthz (subclasses mask secrets)."""
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}"[:300] if text else type(exc).__name__

    def wait_hint(self, exc: BaseException) -> float:
        """Seconds the platform asked to wait before trying again after `exc` (429)."""
        return 0.0

    def limits_for(self, chat: ChatKey) -> SendLimits:
        """The limits of sending to `chat`; a platform whose chats differ (private chats and
        groups) overrides this."""
        return self.limits

    async def health(self) -> str | None:
        """None when ready to serve, else why not."""
        if self.ready_reason:
            return self.ready_reason
        try:
            await self.store.ping()
        except Exception as exc:
            return f"store unreachable: {type(exc).__name__}"
        return None

    # -- ingress ------------------------------------------------------------------------------

    def received(self) -> None:
        telemetry.RECEIVED.labels(self.platform).inc()

    def ignored(self, reason: str) -> None:
        telemetry.IGNORED.labels(self.platform, reason).inc()
        log.debug("%s event ignored: %s", self.platform, reason)

    def rejected(self, reason: str) -> None:
        """Count a refused request; log it unless that reason was logged a moment ago (a
        flood of bad requests must not become a flood of log lines). `reason` is one of a
        few fixed labels, never text from the request."""
        telemetry.REJECTED.labels(self.platform, reason).inc()
        held = self._quiet.allow(reason)
        if held is not None:
            more = f" (and {held} more since the last line)" if held else ""
            log.warning("%s request rejected: %s%s", self.platform, reason, more)

    async def ask(self, message: Incoming, how: str = "mention me with a question") -> Enqueued:
        """Queue a question for the model; an empty one gets a short help reply instead."""
        text = gate.text(message.text)
        if not text:
            return await self.help(message, EMPTY_HELP.format(how=how))
        if len(text) > self.max_chars:
            note = TRUNCATED_NOTE.format(limit=self.max_chars)
            message = dataclasses.replace(message, text=text[: self.max_chars], note=note)
        elif text != message.text:
            message = dataclasses.replace(message, text=text)
        return await self._enqueue(message)

    async def help(self, message: Incoming, text: str) -> Enqueued:
        """Queue a help request, answered with `text` when its turn comes."""
        return await self._enqueue(dataclasses.replace(message, kind=EventKind.HELP, answer=text))

    async def reset(self, message: Incoming) -> Enqueued:
        """Queue a reset: when its turn comes, the thread's context is forgotten (after the
        exchanges queued before it) and the asker is told so."""
        return await self._enqueue(
            dataclasses.replace(message, kind=EventKind.RESET, answer=RESET_TEXT)
        )

    async def _enqueue(self, message: Incoming) -> Enqueued:
        result = await self.store.enqueue(message)
        telemetry.ENQUEUED.labels(self.platform, result.value).inc()
        # Counted always, logged once in a while: a flood of questions is a flood of these.
        if result is not Enqueued.QUEUED and (held := self._quiet.allow(result.value)) is not None:
            log.info(
                "%s message %s: %s%s",
                message.chat,
                message.message_id,
                result.value,
                f" (and {held} more since the last line)" if held else "",
                extra={"chat": str(message.chat), "message_id": message.message_id},
            )
        return result

    # -- egress -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def send(self, replies: Sequence[Reply]) -> None:
        """Send one message carrying `replies` to their chat; raise `RetryAfter`,
        `Undeliverable`, or anything else for a transient failure."""

    async def send_parts(
        self, key: Hashable, parts: Sequence[str], send: Callable[[str], Awaitable[None]]
    ) -> None:
        """`send` each of one reply's parts in order. After a failure halfway (a 429), the
        Sender sends the whole reply again: the parts the platform already has are
        skipped. `key` names the reply."""
        try:
            for number in range(self._parts_sent.get(key, 0), len(parts)):
                await send(parts[number])
                if number + 1 < len(parts):
                    self._parts_sent[key] = number + 1
                    if len(self._parts_sent) > PARTS_REMEMBERED:  # replies never sent again
                        del self._parts_sent[next(iter(self._parts_sent))]
        except Undeliverable:
            self._parts_sent.pop(key, None)
            raise
        self._parts_sent.pop(key, None)

    # -- helpers --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Log and swallow what goes wrong handling one event, so the loop goes on."""
        try:
            yield
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._quiet.allow("failed") is not None:
                log.exception("%s: failed to handle %s", self.platform, what)
