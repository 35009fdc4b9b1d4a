"""The Telegram adapter against the fake Bot API, driven by the real python-telegram-bot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from telegram import Update

from adapters.base import EMPTY_HELP, RESET_TEXT
from adapters.ops import serve
from adapters.telegram import WEBHOOK_PATH, TelegramAdapter, Webhook
from bots.cli import EX_CONFIG, main
from bots.settings import load_settings
from bots.telegram import build_telegram
from core.errors import ConfigError, StoreUnavailable
from core.messages import ChatKey, EventKind, Incoming, Reply
from core.queue.memory_store import MemoryStore
from core.queue.sender import split_text
from core.queue.types import Enqueued, Limits
from core.queue.worker import Worker
from support.fakes.telegram_api import JSON, WEBHOOK_SECRET, FakeTelegram
from support.probes import closed_port, health_until

GROUP, OTHER_GROUP = -1001, -1002
ALICE = FakeTelegram.user(11, "alice")
BOB = FakeTelegram.user(12, first_name="Bob")
SECRET = WEBHOOK_SECRET


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(group_window=5.0) as fake:
        yield fake


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(Limits(sender_rate=0))


def make(
    fake: FakeTelegram, store: MemoryStore, api_url: str | None = None, **options: Any
) -> TelegramAdapter:
    adapter = TelegramAdapter(
        store, fake.token, api_url=api_url or fake.api_url, poll_timeout=1, **options
    )
    adapter.poll_backoff = (0.05, 0.2)
    adapter.start_backoff = (0.05, 0.2)
    return adapter


def echo(contexts: Sequence[Sequence[str]]) -> list[str]:
    return [f"re: {c[-1]}" for c in contexts]


@contextlib.asynccontextmanager
async def running(
    adapter: TelegramAdapter,
    respond: Callable[[Sequence[Sequence[str]]], list[str]] = echo,
    wait: bool = True,
) -> AsyncIterator[TelegramAdapter]:
    """The adapter and an in-process worker, until the block ends (`wait`: from when the
    adapter is ready)."""
    stop = asyncio.Event()
    worker = Worker(adapter.store, respond, idle_timeout=0.05)
    tasks = [asyncio.create_task(adapter.run(stop)), asyncio.create_task(worker.run(stop))]
    try:
        for _ in range(100 if wait else 0):
            if adapter.ready_reason is None or tasks[0].done():
                break
            await asyncio.sleep(0.02)
        assert adapter.ready_reason is None or not wait
        yield adapter
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def started(adapter: TelegramAdapter) -> AsyncIterator[TelegramAdapter]:
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


async def handle(adapter: TelegramAdapter, **update: JSON) -> JSON:
    data = {"update_id": int(time.monotonic_ns() % 10**9), **update}
    await adapter.handle(Update.de_json(data, adapter.bot))
    return data


async def queued(store: MemoryStore) -> list[Incoming]:
    """The head question of every chat (claimed, then handed back)."""
    claims = await store.claim(100)
    for claim in claims:
        await store.release(claim)
    return [c.message for c in claims if c.message.kind is EventKind.QUESTION]


async def answer_all(store: MemoryStore) -> None:
    """Act on every queued event as a worker would, answering questions with "re <text>"."""
    worker = Worker(store, lambda contexts: ["re " + c[-1] for c in contexts])
    while await worker.step():
        pass


def ignored(reason: str) -> float:
    labels = {"platform": "telegram", "reason": reason}
    return REGISTRY.get_sample_value("parley_ignored_total", labels) or 0.0


def rejected(reason: str) -> float:
    labels = {"platform": "telegram", "reason": reason}
    return REGISTRY.get_sample_value("parley_rejected_total", labels) or 0.0


# -- who is answered ----------------------------------------------------------------------


async def test_a_mention_is_queued_without_the_mention(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    async with started(make(fake, store)) as adapter:
        msg = fake.message(GROUP, ALICE, "@parley_bot, how is the weather?")
        update = await handle(adapter, message=msg)
        [question] = await queued(store)
    assert question.chat == ChatKey("telegram", str(GROUP))
    assert question.text == "how is the weather?"
    assert question.message_id == str(update["update_id"])
    assert question.reply_to == str(msg["message_id"])
    assert (question.sender, question.sender_name, question.thread) == ("11", "@alice", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so @parley_bot what now", "so what now"),
        ("what now @PARLEY_BOT", "what now"),
        ("👋🏽 @parley_bot héllo", "👋🏽 héllo"),  # entity offsets count UTF-16 units
        ("@parley_bot and @carol, hi", "and @carol, hi"),
    ],
)
async def test_mentions_are_stripped(
    fake: FakeTelegram, store: MemoryStore, text: str, expected: str
) -> None:
    async with started(make(fake, store)) as adapter:
        await handle(adapter, message=fake.message(GROUP, BOB, text))
        [question] = await queued(store)
    assert question.text == expected
    assert question.sender_name == "Bob"


async def test_a_text_mention_of_the_bot_is_answered(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    bot = {"id": fake.bot_user["id"], "is_bot": True, "first_name": "Parley"}
    other = FakeTelegram.user(99)
    async with started(make(fake, store)) as adapter:
        before = ignored("chatter")
        entity = {"type": "text_mention", "offset": 0, "length": 6, "user": bot}
        await handle(
            adapter, message=fake.message(GROUP, ALICE, "Parley tell me", entities=[entity])
        )
        entity = {"type": "text_mention", "offset": 0, "length": 5, "user": other}
        msg = fake.message(OTHER_GROUP, ALICE, "Carol tell me", entities=[entity])
        await handle(adapter, message=msg)
        questions = await queued(store)
    assert [q.text for q in questions] == ["tell me"]
    assert ignored("chatter") == before + 1


async def test_replies_to_the_bot_are_answered_other_chatter_is_not(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    async with started(make(fake, store)) as adapter:
        before = ignored("chatter")
        mine = fake.bot_message(GROUP, "it is sunny")
        await handle(adapter, message=fake.message(GROUP, ALICE, "really?", reply_to=mine))
        theirs = fake.message(OTHER_GROUP, BOB, "hello all")
        for msg in (
            fake.message(OTHER_GROUP, ALICE, "hi bob", reply_to=theirs),
            fake.message(OTHER_GROUP, ALICE, "@carol what about parley_bot?"),
            fake.message(OTHER_GROUP, ALICE, "just chatting"),
        ):
            await handle(adapter, message=msg)
        questions = await queued(store)
    assert [(q.chat.chat, q.text) for q in questions] == [(str(GROUP), "really?")]
    assert ignored("chatter") == before + 3


async def test_every_private_message_is_answered(fake: FakeTelegram, store: MemoryStore) -> None:
    async with started(make(fake, store)) as adapter:
        await handle(adapter, message=fake.message(11, ALICE, "hello there"))
        [question] = await queued(store)
    assert (question.chat.chat, question.text) == ("11", "hello there")


async def test_ask_help_start_and_unknown_commands(fake: FakeTelegram, store: MemoryStore) -> None:
    async with started(make(fake, store)) as adapter:
        before = (ignored("other_bot_command"), ignored("unknown_command"))
        await handle(adapter, message=fake.message(GROUP, ALICE, "/ask how is the weather"))
        await handle(adapter, message=fake.message(OTHER_GROUP, BOB, "/ask@parley_bot what now"))
        await handle(adapter, message=fake.message(-1003, BOB, "/ask@other_bot what now"))
        await handle(adapter, message=fake.message(-1003, BOB, "/weather"))
        await handle(adapter, message=fake.message(-1004, BOB, "/ask"))
        await handle(adapter, message=fake.message(-1004, BOB, "@parley_bot"))
        await handle(adapter, message=fake.message(-1005, BOB, "/help"))
        await handle(adapter, message=fake.message(12, BOB, "/start"))
        questions = await queued(store)
        await answer_all(store)
        empty = await store.replies(ChatKey("telegram", "-1004"))
        group_help = await store.replies(ChatKey("telegram", "-1005"))
        private_help = await store.replies(ChatKey("telegram", "12"))
    assert sorted(q.text for q in questions) == ["how is the weather", "what now"]
    assert [r.text for r in empty] == [
        EMPTY_HELP.format(how="/ask your question"),
        EMPTY_HELP.format(how="@parley_bot your question"),
    ]
    assert "@parley_bot" in group_help[0].text and "/ask" in group_help[0].text
    assert "/reset" in private_help[0].text
    assert (ignored("other_bot_command"), ignored("unknown_command")) == (
        before[0] + 1,
        before[1] + 1,
    )


async def test_reset_forgets_the_chat_context(fake: FakeTelegram, store: MemoryStore) -> None:
    chat = ChatKey("telegram", str(GROUP))
    async with started(make(fake, store)) as adapter:
        await handle(adapter, message=fake.message(GROUP, ALICE, "@parley_bot hi"))
        await answer_all(store)
        assert await store.context(chat) == ["hi", "re hi"]
        await handle(adapter, message=fake.message(GROUP, ALICE, "@parley_bot still there?"))
        await handle(adapter, message=fake.message(GROUP, ALICE, "/reset@parley_bot"))
        await handle(adapter, message=fake.message(GROUP, BOB, "@parley_bot and now?"))
        # nothing is forgotten on arrival: the reset waits for the question asked before it
        assert await store.context(chat) == ["hi", "re hi"]
        await answer_all(store)
        assert await store.context(chat) == ["and now?", "re and now?"]
        assert [r.text for r in await store.replies(chat)] == [
            "re hi",
            "re still there?",
            RESET_TEXT,
            "re and now?",
        ]


@pytest.mark.parametrize(
    ("reason", "update"),
    [
        ("non_text", {"message": {"sticker": {"file_id": "s", "file_unique_id": "s", "width": 1,
                                              "height": 1, "is_animated": False,
                                              "is_video": False, "type": "regular"}}}),
        ("non_text", {"message": {"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1,
                                             "height": 1}], "caption": "@parley_bot look"}}),
        ("non_text", {"message": {"voice": {"file_id": "v", "file_unique_id": "v",
                                            "duration": 2}}}),
        ("service", {"message": {"new_chat_members": [ALICE]}}),
        ("migrated", {"message": {"migrate_to_chat_id": -100555}}),
        ("bot", {"message": {"from": {"id": 5, "is_bot": True, "first_name": "B"},
                             "text": "@parley_bot hi"}}),
        ("edited", {"edited_message": {"text": "@parley_bot hi", "edit_date": 1}}),
        ("channel", {"channel_post": {"text": "@parley_bot hi", "from": None}}),
        ("callback", {"callback_query": {"id": "1", "from": ALICE, "chat_instance": "c"}}),
        ("other_update", {"my_chat_member": None}),
    ],
)  # fmt: skip
async def test_other_updates_are_ignored_with_a_reason(
    fake: FakeTelegram, store: MemoryStore, reason: str, update: JSON
) -> None:
    kind, fields = next(iter(update.items()))
    if fields is not None:
        base = fake.message(GROUP, ALICE)
        fields = {k: v for k, v in {**base, **fields}.items() if v is not None}
    async with started(make(fake, store)) as adapter:
        before = ignored(reason)
        await handle(adapter, **({kind: fields} if fields is not None else {}))
        assert await queued(store) == []
    assert ignored(reason) == before + 1


async def test_only_allowed_chats_are_served(fake: FakeTelegram, store: MemoryStore) -> None:
    async with started(make(fake, store, allowed_chats=[GROUP])) as adapter:
        before = ignored("not_allowed")
        await handle(adapter, message=fake.message(GROUP, ALICE, "@parley_bot hi"))
        await handle(adapter, message=fake.message(OTHER_GROUP, ALICE, "@parley_bot hi"))
        await handle(adapter, message=fake.message(11, ALICE, "hi"))
        questions = await queued(store)
    assert [q.chat.chat for q in questions] == [str(GROUP)]
    assert ignored("not_allowed") == before + 2


# -- polling and webhooks -----------------------------------------------------------------


async def test_polling_answers_in_order_quoting_each_question(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    async with running(make(fake, store)):
        asked = [fake.message(GROUP, ALICE, f"@parley_bot question {i}") for i in range(5)]
        for msg in asked[:3]:
            fake.add_update(message=msg)
            fake.add_update(message=fake.message(GROUP, BOB, "chatter"))
        await fake.wait_sent(3)
        for msg in asked[3:]:  # a later poll, with the offset moved on
            fake.add_update(message=msg)
        sent = await fake.wait_sent(5)
        # Every update, the chatter too, is confirmed by the next poll's offset.
        async with asyncio.timeout(5):
            while fake.pending_updates():
                await asyncio.sleep(0.02)
    assert [s.text for s in sent] == [f"re: question {i}" for i in range(5)]
    assert [s.reply_to for s in sent] == [m["message_id"] for m in asked]
    assert all(s.params["reply_parameters"]["allow_sending_without_reply"] for s in sent)
    assert fake.calls[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    assert fake.pending_updates() == 0


async def test_the_same_update_twice_is_answered_once(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    msg = fake.message(GROUP, ALICE, "@parley_bot once please")
    async with running(make(fake, store)):
        update = fake.add_update(message=msg)
        fake.add_update(dict(update))  # polled twice
        await fake.wait_sent(1)
        # Another adapter process receiving it again: the store drops it.
        async with started(make(fake, store)) as other:
            await other.handle(Update.de_json(update, other.bot))
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot next"))
        await fake.wait_sent(2)
        await asyncio.sleep(0.3)
    assert [s.text for s in fake.sent] == ["re: once please", "re: next"]


async def test_polling_survives_errors_and_logs_once_per_outage(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("getUpdates", 502, "Bad Gateway")
    fake.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request")
    fake.fail_next("getUpdates", 500, "Internal Server Error")
    fake.fail_next("getUpdates", 429, "Too Many Requests: retry after 1", {"retry_after": 1})
    with caplog.at_level(logging.WARNING, "parley.telegram"):
        async with running(make(fake, store)):
            fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot still there?"))
            [sent] = await fake.wait_sent(1, timeout=10)
    assert sent.text == "re: still there?"
    failures = [r for r in caplog.records if "getUpdates unreachable" in r.getMessage()]
    assert len(failures) == 1 and "NetworkError" in failures[0].getMessage()
    assert any("getUpdates reachable again" in r.getMessage() for r in caplog.records)


async def test_a_token_refused_while_polling_stops_the_adapter(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    adapter = make(fake, store)
    task = asyncio.create_task(adapter.run(asyncio.Event()))
    await health_until(adapter, lambda reason: reason is None)
    fake.fail_next("getUpdates", 401, "Unauthorized")  # the token revoked at @BotFather
    with pytest.raises(ConfigError, match="token"):
        await asyncio.wait_for(task, 5)  # not retried for ever
    assert fake.calls.count("getUpdates") <= 2  # the refused one was the last
    assert await adapter.health() == "stopping"


class FlakyStore(MemoryStore):
    """A store whose enqueue fails as an unreachable store would while `down`."""

    down = True

    async def enqueue(self, message: Incoming) -> Enqueued:
        if self.down:
            raise StoreUnavailable("Connection refused")
        return await super().enqueue(message)


async def test_an_update_is_held_while_the_store_is_down(fake: FakeTelegram) -> None:
    store = FlakyStore(Limits(sender_rate=0))
    async with running(make(fake, store)):
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot are you there?"))
        await asyncio.sleep(0.5)
        assert fake.sent == [] and fake.calls.count("getUpdates") == 1  # not confirmed
        store.down = False
        [sent] = await fake.wait_sent(1, timeout=10)
    assert sent.text == "re: are you there?"


class BrokenStore(MemoryStore):
    """A store that fails to take one question with an error no wait would heal."""

    tries = 0

    async def enqueue(self, message: Incoming) -> Enqueued:
        if message.text == "break":
            self.tries += 1
            raise OSError(22, "Invalid argument")
        return await super().enqueue(message)


async def test_an_update_failing_for_another_reason_is_skipped_not_retried(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore(Limits(sender_rate=0))
    async with running(make(fake, store)):
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot break"))
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot fine?"))
        [sent] = await fake.wait_sent(1, timeout=5)
    assert sent.text == "re: fine?"
    assert store.tries == 1
    assert any("failed to handle update" in r.getMessage() for r in caplog.records)


# -- starting -------------------------------------------------------------------------------


async def test_start_waits_for_the_bot_api_and_is_not_ready_meanwhile(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    fake.fail_next("getMe", 502, "Bad Gateway", times=3)
    async with running(make(fake, store), wait=False) as adapter:
        reason = await health_until(adapter, lambda r: r is not None and "unreachable" in r)
        assert reason is not None and reason.startswith("Telegram unreachable")
        assert "Bad Gateway" in reason
        await health_until(adapter, lambda r: r is None)
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot up now?"))
        [sent] = await fake.wait_sent(1)
    assert fake.calls[:5] == ["getMe"] * 4 + ["deleteWebhook"]
    assert sent.text == "re: up now?"


async def test_an_unreachable_bot_api_is_waited_for_until_stopped(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = make(fake, store, api_url=f"http://127.0.0.1:{closed_port()}")
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(adapter.run(stop))
        reason = await health_until(adapter, lambda r: r is not None and "unreachable" in r)
        await asyncio.sleep(0.6)  # several more tries
        assert not task.done()
        assert (await adapter.health() or "").startswith("Telegram unreachable")
        stop.set()
        await asyncio.wait_for(task, 5)  # returns: stopping is no error
    assert reason is not None and fake.token not in reason
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 1  # once per outage, not once per try


async def test_a_refused_token_stops_run_at_once(fake: FakeTelegram, store: MemoryStore) -> None:
    adapter = TelegramAdapter(store, "999:WRONG-token-value", api_url=fake.api_url)
    with pytest.raises(ConfigError, match="@BotFather"):
        await asyncio.wait_for(adapter.run(asyncio.Event()), 5)
    assert len(fake.requests) == 1  # asked once: no wait makes a refused token good


async def webhook_adapter(
    fake: FakeTelegram, store: MemoryStore
) -> tuple[TelegramAdapter, web.AppRunner, str]:
    """An adapter in webhook mode, its route served on a free port."""
    adapter = make(fake, store, webhook=Webhook("http://x/", SECRET))
    app = web.Application()
    adapter.add_routes(app)
    runner = await serve(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    adapter.hook = Webhook(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", SECRET)
    return adapter, runner, adapter.hook.url


async def test_webhook_checks_the_secret_and_the_json(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    adapter, runner, url = await webhook_adapter(fake, store)
    try:
        # Before getMe answered, an update cannot be judged: Telegram is told to retry.
        msg = fake.message(GROUP, ALICE, "@parley_bot early")
        assert await fake.post_webhook({"update_id": 1, "message": msg}, SECRET, url) == 503
        async with running(adapter):
            assert fake.webhook is not None
            assert fake.webhook["url"] == url and fake.webhook["secret_token"] == SECRET
            assert fake.webhook["allowed_updates"] == ["message"]
            before = rejected("bad_secret"), rejected("malformed")
            update = {"update_id": 2, "message": fake.message(GROUP, ALICE, "@parley_bot hi")}
            assert await fake.post_webhook(update, "wrong") == 403
            assert await fake.post_webhook(update, "") == 403  # no header at all
            assert await fake.post_webhook(b"{not json", SECRET) == 400
            assert await fake.post_webhook(b'["an", "array"]', SECRET) == 400
            assert await fake.post_webhook({"no_update_id": 1}, SECRET) == 400
            assert await store.backlog(ChatKey("telegram", str(GROUP))) == 0
            assert rejected("bad_secret") == before[0] + 2
            assert rejected("malformed") == before[1] + 3
            assert await fake.post_webhook(update) == 200
            assert await fake.post_webhook(update) == 200  # redelivered
            [sent] = await fake.wait_sent(1)
            assert sent.text == "re: hi"
            await asyncio.sleep(0.3)
            assert len(fake.sent) == 1
        assert "getUpdates" not in fake.calls
        assert fake.webhook is not None  # left in place: Telegram keeps updates for us
    finally:
        await runner.cleanup()


# -- hostile input ------------------------------------------------------------------------


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def not_answered() -> float:
    """Telegram events ignored or requests rejected so far, whatever the reason."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name in ("parley_ignored", "parley_rejected")
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("platform") == "telegram"
    )


async def test_lone_surrogates_reach_the_queue_as_replacement_characters(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    # JSON's \\ud800 escape decodes to a lone surrogate, which UTF-8 cannot encode.
    adapter, runner, _ = await webhook_adapter(fake, store)
    eve = FakeTelegram.user(13, first_name="Eve \udfff")
    try:
        async with running(adapter):
            msg = fake.message(GROUP, eve, "@parley_bot hi \ud800")
            assert await fake.post_webhook({"update_id": 5, "message": msg}) == 200
            [sent] = await fake.wait_sent(1)
            assert sent.text == "re: hi \ufffd"
            msg = fake.message(GROUP, ALICE, "/ask \udfff\ud800 there")
            assert await fake.post_webhook({"update_id": 6, "message": msg}) == 200
            await fake.wait_sent(2)
            assert fake.sent[1].text == "re: \ufffd\ufffd there"
    finally:
        await runner.cleanup()
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"text": 5},  # not a string
        {"text": ["@parley_bot", "hi"]},
        {"chat": None},  # no chat
        {"text": "", "entities": [{"type": "mention", "offset": 0, "length": 11}]},
        {"entities": [{"type": "mention", "offset": "0", "length": 11}]},
        {"message_id": "12"},
        {"from": {"id": "11", "is_bot": False, "first_name": "Alice"}},
        {"from": {"id": 11, "is_bot": False, "first_name": 7}},
        {"chat": {"id": 2**70, "type": "group"}},
    ],
)
async def test_malformed_messages_are_ignored_with_a_reason_not_a_traceback(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture, fields: JSON
) -> None:
    adapter, runner, _ = await webhook_adapter(fake, store)
    try:
        async with running(adapter):
            msg = {**fake.message(GROUP, ALICE, "@parley_bot hi"), **fields}
            msg = {k: v for k, v in msg.items() if v is not None}
            before = not_answered()
            assert await fake.post_webhook({"update_id": 7, "message": msg}) in (200, 400)
            assert not_answered() == before + 1  # with a reason: malformed, chatter, ...
            assert await queued(store) == []
            good = fake.message(GROUP, ALICE, "@parley_bot and now?")
            assert await fake.post_webhook({"update_id": 8, "message": good}) == 200
            await fake.wait_sent(1)
    finally:
        await runner.cleanup()
    assert errors_logged(caplog) == []


async def test_webhook_bodies_are_bounded_in_size_and_time(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    adapter, runner, url = await webhook_adapter(fake, store)
    adapter.body_timeout = 0.5
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"update_id": 1, '
        await asyncio.sleep(30)

    try:
        async with running(adapter), aiohttp.ClientSession() as http:
            big = b'{"update_id": 9, "pad": "' + b"x" * (1024 * 1024) + b'"}'
            assert await fake.post_webhook(big) == 413
            started = time.monotonic()
            async with http.post(url, data=endless(), headers=headers) as response:
                assert response.status == 408
            assert time.monotonic() - started < 5
            # a forged request is refused before its body is read
            forged = {**headers, "X-Telegram-Bot-Api-Secret-Token": "wrong"}
            async with http.post(url, data=endless(), headers=forged) as response:
                assert response.status == 403
            assert await fake.post_webhook(b'{"update_id": ' + b"[" * 50_000) == 400
            good = fake.message(GROUP, ALICE, "@parley_bot fine?")
            assert await fake.post_webhook({"update_id": 10, "message": good}) == 200
            await fake.wait_sent(1)
    finally:
        await runner.cleanup()
    assert errors_logged(caplog) == []


# -- sending ------------------------------------------------------------------------------


async def test_429_defers_that_group_only(fake: FakeTelegram, store: MemoryStore) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", {"retry_after": 1})
    async with running(make(fake, store)) as adapter:
        started_at = time.time()
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot first"))
        await asyncio.sleep(0.3)  # its send is refused
        fake.add_update(message=fake.message(OTHER_GROUP, BOB, "@parley_bot second"))
        sent = await fake.wait_sent(2, timeout=5)
        assert adapter.sender.stats.retried == 1
    assert [(s.chat_id, s.text) for s in sent] == [
        (OTHER_GROUP, "re: second"),
        (GROUP, "re: first"),
    ]
    assert sent[0].at - started_at < 0.9  # not held up by the other group's 429
    assert sent[1].at - started_at >= 1.0  # waited the retry_after


async def test_long_replies_are_split_and_resumed_after_a_429(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    long = " ".join(f"word{i}" for i in range(1500))  # about 11,700 characters
    parts = split_text(long, 4096)
    assert len(parts) == 4

    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        return [long for _ in contexts]

    async with running(make(fake, store), respond):
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot tell me everything"))
        await fake.wait_sent(1)
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", {"retry_after": 1})
        await fake.wait_sent(4, timeout=5)
        await asyncio.sleep(0.2)
    assert fake.calls.count("sendMessage") == 5  # one was refused with a 429
    # The part sent before the 429 is not sent again.
    assert [s.text for s in fake.sent] == parts
    assert {s.reply_to for s in fake.sent} == {fake.sent[0].reply_to}


def test_private_chats_and_groups_are_paced_by_their_own_limits(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    adapter = make(fake, store, group_rate=20, rate_window=60.0)
    private = adapter.limits_for(ChatKey("telegram", "11"))
    group = adapter.limits_for(ChatKey("telegram", str(GROUP)))
    # Telegram: about a message a second to one person, 20 a minute to one group; the
    # windows have a margin, so that no send is the limit's last plus one.
    assert private.per_chat == 1 and 1.0 < private.window <= 1.5
    assert group.per_chat == 20 and 60.0 < group.window <= 75.0
    assert adapter.limits_for(ChatKey("telegram", "-100777")) == group  # a supergroup
    assert adapter.limits == group  # for whatever does not ask per chat: the stricter


async def test_a_burst_to_private_chats_and_groups_gets_no_429(store: MemoryStore) -> None:
    people = [11, 12, 13, 14, 15, 16]
    groups = [-1001, -1002, -1003]
    async with FakeTelegram(group_window=3.0) as fake:  # 30/s overall, 1/s per person
        asked = set()
        for n in range(25):
            for group in groups:
                asked.add(text := f"g{-group}-{n}")
                fake.add_update(message=fake.message(group, ALICE, f"@parley_bot {text}"))
            for person in people if n < 3 else ():
                asked.add(text := f"p{person}-{n}")
                user = FakeTelegram.user(person, f"user{person}")
                fake.add_update(message=fake.message(person, user, text))
        async with running(make(fake, store, rate_window=3.0)):
            for _ in range(300):
                answered = {m for s in fake.sent for m in re.findall(r"re: (\S+)", s.text)}
                if answered >= asked:
                    break
                await asyncio.sleep(0.1)
        assert answered == asked
        assert fake.throttled == 0  # no 429 that pacing could have avoided


async def test_coalesced_replies_share_one_message(fake: FakeTelegram, store: MemoryStore) -> None:
    chat = ChatKey("telegram", str(GROUP))
    questions = [
        Incoming(chat, "11", "a", "u1", sender_name="@alice", reply_to="7"),
        Incoming(chat, "12", "b", "u2", sender_name="Bob", reply_to="8"),
    ]
    async with started(make(fake, store)) as adapter:
        await adapter.send([Reply.to(q, f"answer {q.text}") for q in questions])
    [sent] = fake.sent
    assert sent.text == "@alice: answer a\nBob: answer b"
    assert sent.reply_to == 8


async def test_refusals_and_migrations(fake: FakeTelegram, store: MemoryStore) -> None:
    fake.fail_next("sendMessage", 403, "Forbidden: bot was kicked from the supergroup chat")
    fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
    fake.fail_next(
        "sendMessage",
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        {"migrate_to_chat_id": -100777},
    )
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    async with running(make(fake, store)) as adapter:
        for text in ("kicked", "not found", "migrated", "retried"):
            fake.add_update(message=fake.message(GROUP, ALICE, f"@parley_bot {text}"))
        sent = await fake.wait_sent(2, timeout=5)
        stats = adapter.sender.stats
    assert [(s.chat_id, s.text) for s in sent] == [
        (-100777, "re: migrated"),
        (-100777, "re: retried"),
    ]
    assert (stats.dropped, stats.retried) == (2, 1)


# -- health, configuration, secrets -------------------------------------------------------


async def test_ready_only_after_get_me(fake: FakeTelegram, store: MemoryStore) -> None:
    adapter = make(fake, store)
    assert await adapter.health() == "starting"
    async with running(adapter):
        assert await adapter.health() is None
        assert fake.calls[0] == "getMe"


async def test_a_wrong_token_stops_start_without_showing_it(
    fake: FakeTelegram, store: MemoryStore
) -> None:
    token = "999:WRONG-token-value"
    adapter = TelegramAdapter(store, token, api_url=fake.api_url)
    with pytest.raises(ConfigError) as caught:
        await adapter.start()
    assert token not in str(caught.value) and "@BotFather" in str(caught.value)
    assert adapter.ready_reason == "starting"


async def test_the_token_never_reaches_the_logs(
    fake: FakeTelegram, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next("getUpdates", 502, "Bad Gateway")
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    async with running(make(fake, store)):
        fake.add_update(message=fake.message(GROUP, ALICE, "@parley_bot hi"))
        fake.add_update(message=fake.message(GROUP, ALICE, "chatter"))
        await fake.wait_sent(1, timeout=5)
    assert any(fake.token in path for path in fake.requests)  # it was in every URL
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert fake.token not in logged
    assert fake.token.split(":")[1] not in logged


def test_settings_build_the_adapter(fake: FakeTelegram, store: MemoryStore) -> None:
    settings = load_settings(
        telegram_token=fake.token,
        telegram_api_url=fake.api_url,
        telegram_mode="webhook",
        telegram_webhook_url="https://bot.example.com/telegram",
        telegram_webhook_secret=SECRET,
        telegram_allowed_chats=[GROUP],
        telegram_group_rate=7,
    ).telegram(shared_queue=False)
    adapter, app = build_telegram(settings, store, rate_window=3.0)
    group = adapter.limits_for(ChatKey("telegram", str(GROUP)))
    assert group.per_chat == 7 and 3.0 < group.window < 3.5  # with a margin
    assert adapter.allowed_chats == {GROUP}
    assert [r.resource.canonical for r in app.router.routes() if r.resource] == [WEBHOOK_PATH]
    assert adapter.hook == ("https://bot.example.com/telegram", SECRET)
    with pytest.raises(ConfigError, match="PARLEY_TELEGRAM_TOKEN"):
        load_settings(telegram_token=None).telegram(shared_queue=False)
    with pytest.raises(ConfigError, match="PARLEY_TELEGRAM_WEBHOOK_SECRET"):
        load_settings(telegram_token="1:x", telegram_mode="webhook").telegram()


def test_the_command_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("PARLEY_TELEGRAM_TOKEN", "PARLEY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["telegram"]) == EX_CONFIG
    assert "PARLEY_TELEGRAM_TOKEN" in capsys.readouterr().err


def test_importing_the_adapter_does_not_load_tensorflow() -> None:
    code = (
        "import sys, adapters.telegram, bots.telegram; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
