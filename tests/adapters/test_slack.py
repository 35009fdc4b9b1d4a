"""The Slack adapter against a fake Slack: real slack-bolt and slack_sdk, signed requests."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

import adapters.slack
from adapters.slack import (
    RESPONSE_URL_TTL,
    UNAVAILABLE_TEXT,
    HttpMode,
    SlackAdapter,
    SlackAuthError,
    SlackSendError,
    SocketMode,
    command_text,
    escape,
    to_plain,
)
from bots.cli import EX_CONFIG, main
from bots.settings import load_settings
from bots.slack import build_slack
from core.errors import ConfigError, StoreUnavailable
from core.messages import ChatKey, Incoming, Reply, ReplyKind
from core.queue.memory_store import MemoryStore
from core.queue.sender import RetryAfter, Undeliverable, split_text
from core.queue.types import Enqueued
from support.fakes.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    command_payload,
    echo,
    mention_callback,
    signed_headers,
    slack_rig,
)
from support.probes import closed_port, health_until

FORM = "application/x-www-form-urlencoded"

C1 = ChatKey("slack", "T1:C1")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# -- ingress ---------------------------------------------------------------------------------


async def test_command_is_acked_before_the_reply_exists_then_answered_in_channel(
    fake: FakeSlack, store: MemoryStore
) -> None:
    gate = threading.Event()

    def slow(contexts: Sequence[Sequence[str]]) -> list[str]:
        gate.wait(10)
        return echo(contexts)

    async with slack_rig(fake, store, slow) as rig:
        assert [c[0] for c in fake.calls] == ["auth.test"]  # checked before it was ready
        url = fake.response_url()
        started = time.monotonic()
        status, text = await rig.caller.command(command_payload("how is the weather", url))
        acked = time.monotonic() - started
        assert status == 200 and text == ""  # an empty ack: nothing shown but the answer
        assert acked < 3.0  # Slack's limit; in practice a few milliseconds
        assert fake.posted_to(url) == []
        gate.set()
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
    [response] = fake.responses
    assert response.body["response_type"] == "in_channel"
    assert response.text == "> <@U1>: how is the weather\necho how is the weather (turns 1)"


async def test_forged_and_stale_requests_get_401_and_queue_nothing(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store, respond=None) as rig:
        payload = command_payload("hello", fake.response_url())
        forged = await rig.caller.command(payload, secret="not-the-signing-secret")
        stale = await rig.caller.command(payload, timestamp=int(time.time()) - 301)
        garbled = await rig.caller.command(payload, headers={"X-Slack-Request-Timestamp": "x"})
        callback = mention_callback(f"<@{BOT_USER}> hi", event_id="Ev1")
        forged_event = await rig.caller.event(callback, secret="nope")
        assert [r[0] for r in (forged, stale, garbled, forged_event)] == [401] * 4
        assert await store.backlog(C1) == 0
        assert await store.replies(C1) == []
        # the same request, properly signed, goes through
        assert (await rig.caller.command(payload))[0] == 200
        assert await store.backlog(C1) == 1


async def test_malformed_bodies_get_400_and_the_adapter_keeps_serving(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store) as rig:
        for body in ("{not json", "[1, 2]", '"a string"'):
            status, _ = await rig.caller.post(body, "application/json")
            assert status == 400, body
        url = fake.response_url()
        assert (await rig.caller.command(command_payload("still there?", url)))[0] == 200
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
    assert fake.posted_to(url) == ["> <@U1>: still there?\necho still there? (turns 1)"]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_lone_surrogates_are_answered_as_replacement_characters(
    fake: FakeSlack, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_rig(fake, store) as rig:
        # json.dumps writes the surrogate as a \\ud800 escape: Slack's JSON could carry one.
        callback = mention_callback(f"<@{BOT_USER}> hi \ud800", event_id="EvS1", ts="300.1")
        assert (await rig.caller.event(callback))[0] == 200
        await fake.wait_for(lambda: bool(fake.messages))
        # A form's percent-encoding can carry the UTF-8-like bytes of a surrogate.
        url = fake.response_url()
        payload = {**command_payload("what SURROGATE", url), "user_name": "eve SURROGATE"}
        form = urllib.parse.urlencode(payload).replace("SURROGATE", "%ED%A0%80")
        assert (await rig.caller.post(form, FORM))[0] == 200
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
    assert fake.messages[0].text == "echo hi \ufffd (turns 1)"
    [answer] = fake.posted_to(url)
    assert answer.startswith("> <@U1>: what \ufffd") and "\necho what \ufffd" in answer
    assert errors_logged(caplog) == []


async def test_signed_requests_of_the_wrong_shape_get_400_without_a_traceback(
    fake: FakeSlack, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_rig(fake, store) as rig:
        for event in ("x", [], 5, None):
            callback = {**mention_callback("hi", event_id="EvX"), "event": event}
            status, _ = await rig.caller.post(json.dumps(callback), "application/json")
            assert status == 400, event
        nested = '{"type": "event_callback", "event": ' + "[" * 50_000 + "]" * 50_000 + "}"
        assert (await rig.caller.post(nested, "application/json"))[0] == 400
        assert (await rig.caller.post("payload=" + "%5B" * 5000, FORM))[0] == 400
        # ids too long or of the wrong characters are not made into chats
        for team, channel in (("T" * 10_000, "C1"), ("T1", "C" * 10_000), ("T1", "C 1")):
            callback = mention_callback(f"<@{BOT_USER}> hi", event_id="EvL", channel=channel)
            callback["team_id"] = callback["event"]["team"] = team
            assert (await rig.caller.event(callback))[0] == 200
            payload = {**command_payload("hi", fake.response_url(), channel=channel)}
            payload["team_id"] = team
            assert (await rig.caller.command(payload))[0] == 200
        assert set(store._chats) == set()
        url = fake.response_url()
        assert (await rig.caller.command(command_payload("fine?", url)))[0] == 200
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
    assert errors_logged(caplog) == []


async def test_bodies_are_bounded_and_forged_ones_are_not_read(
    fake: FakeSlack, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b"token=x&"
        await asyncio.sleep(30)

    async with slack_rig(fake, store, respond=None) as rig:
        rig.adapter.body_timeout = 0.5
        big = "text=" + "x" * (1024 * 1024)
        assert (await rig.caller.post(big, FORM))[0] == 413
        headers = {"Content-Type": FORM, **signed_headers("token=x&")}
        started = time.monotonic()
        async with rig.caller.session.post(rig.caller.url, data=endless(), headers=headers) as r:
            assert r.status == 408  # well signed headers, then the body never ends
        forged = {"Content-Type": FORM, "X-Slack-Request-Timestamp": str(int(time.time()))}
        for signature in ("", "v0=nothex", "v1=" + "0" * 64):
            forged["X-Slack-Signature"] = signature
            async with rig.caller.session.post(rig.caller.url, data=endless(), headers=forged) as r:
                assert r.status == 401
        assert time.monotonic() - started < 5
    assert errors_logged(caplog) == []


async def test_slack_checking_the_events_url_gets_its_challenge_back(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store, respond=None) as rig:
        check = {
            "token": "deprecated",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
        status, text = await rig.caller.post(json.dumps(check), "application/json")
    assert (status, json.loads(text)) == (200, {"challenge": check["challenge"]})


async def test_mentions_are_answered_in_their_thread_with_context_per_thread(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store) as rig:

        async def mention(text: str, event_id: str, ts: str, thread: str | None = None) -> None:
            callback = mention_callback(text, event_id=event_id, ts=ts, thread_ts=thread)
            count = len(fake.messages)
            assert (await rig.caller.event(callback))[0] == 200
            await fake.wait_for(lambda: len(fake.messages) > count)

        await mention(f"<@{BOT_USER}> how is the weather", "Ev1", "100.000001")
        await mention(f"and tomorrow <@{BOT_USER}|parley>?", "Ev2", "100.000009", "100.000001")
        await mention(f"<@{BOT_USER}> what &lt;b&gt; is &amp; <@U7>", "Ev3", "200.000001")
    assert [(m.channel, m.thread_ts, m.text) for m in fake.messages] == [
        ("C1", "100.000001", "echo how is the weather (turns 1)"),
        ("C1", "100.000001", "echo and tomorrow ? (turns 3)"),
        # the model saw the plain text; what goes back is escaped again
        ("C1", "200.000001", "echo what &lt;b&gt; is &amp; @U7 (turns 1)"),
    ]
    assert await store.context(C1, "100.000001") == [
        "how is the weather",
        "echo how is the weather (turns 1)",
        "and tomorrow ?",
        "echo and tomorrow ? (turns 3)",
    ]


async def test_retried_events_are_answered_once(fake: FakeSlack, store: MemoryStore) -> None:
    async with slack_rig(fake, store) as rig:
        callback = mention_callback(f"<@{BOT_USER}> hello", event_id="Ev1", ts="1.000001")
        as_message = mention_callback(
            f"<@{BOT_USER}> hello", event_id="Ev2", ts="1.000001", kind="message"
        )
        statuses = [
            (await rig.caller.event(callback))[0],
            (await rig.caller.event(callback, retry=1))[0],
            (await rig.caller.event(as_message))[0],  # the same mention as a message event
            (await rig.caller.event(callback, retry=2))[0],
        ]
        assert statuses == [200] * 4
        # One chat answers in order: once the next question's answer is out, a second
        # answer to the first could only have come before it.
        after = mention_callback(f"<@{BOT_USER}> next", event_id="Ev3", ts="2.000001")
        await rig.caller.event(after)
        await fake.wait_for(lambda: any("next" in m.text for m in fake.messages))
    assert [m.text for m in fake.messages] == ["echo hello (turns 1)", "echo next (turns 1)"]


async def test_reset_clears_the_channel_context_and_empty_gets_help(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store) as rig:
        texts: list[str] = []

        async def ask(text: str, trigger: str) -> None:
            url = fake.response_url()
            payload = command_payload(text, url, trigger_id=trigger)
            assert (await rig.caller.command(payload))[0] == 200
            await fake.wait_for(lambda: bool(fake.posted_to(url)))
            texts.extend(fake.posted_to(url))

        await ask("how is the weather", "t1")
        await ask("what music do you like", "t2")
        await ask(" RESET ", "t3")
        retried = fake.response_url()  # Slack's retry of the same command: not answered again
        await rig.caller.command(command_payload("reset", retried, trigger_id="t3"))
        await ask("", "t4")
        await ask("hello", "t5")
        empty = mention_callback(f"<@{BOT_USER}>", event_id="Ev9", ts="5.000001")
        await rig.caller.event(empty)
        await fake.wait_for(lambda: bool(fake.messages))
    assert fake.posted_to(retried) == []  # the channel's later answers are out: none came
    assert texts == [
        "> <@U1>: how is the weather\necho how is the weather (turns 1)",
        "> <@U1>: what music do you like\necho what music do you like (turns 3)",
        "> <@U1>: RESET\nDone: I have forgotten our conversation here.",  # once, despite a retry
        "Ask me something: type /ask and your question",
        "> <@U1>: hello\necho hello (turns 1)",
    ]
    assert [(m.thread_ts, m.text) for m in fake.messages] == [
        ("5.000001", "Ask me something: mention me with a question")
    ]
    # The help is for the asker alone; answers and the reset are for the channel.
    assert [r.ephemeral for r in fake.responses] == [False, False, False, True, False]


async def test_help_whose_response_url_expired_is_not_posted_in_the_channel(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store, respond=None) as rig:
        url = fake.response_url()
        fake.expire(url)
        late_help = Reply(
            C1, "Ask me something", "t-help", reply_to=url, kind=ReplyKind.HELP,
            received_at=time.time(),
        )  # fmt: skip
        await rig.adapter.send([late_help])
    assert fake.messages == [] and fake.responses == []


async def test_long_questions_are_cut_with_a_note(fake: FakeSlack, store: MemoryStore) -> None:
    async with slack_rig(fake, store, max_chars=20) as rig:
        url = fake.response_url()
        await rig.caller.command(command_payload("x" * 50, url))
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
    assert fake.posted_to(url) == [
        f"> <@U1>: {'x' * 20}\necho {'x' * 20} (turns 1)\n"
        "(your message was long; I read its first 20 characters)"
    ]


async def test_a_sender_over_the_rate_is_told_privately(fake: FakeSlack) -> None:
    from core.queue.types import Limits

    store = MemoryStore(Limits(sender_rate=1))
    second_url = fake.response_url()
    async with slack_rig(fake, store, respond=None) as rig:
        first = await rig.caller.command(command_payload("one", fake.response_url()))
        second = await rig.caller.command(command_payload("two", second_url))
        # the store's one slow-down reply of the window is the ack's: it is not sent again
        (slow_down,) = await store.replies(C1)
        assert slow_down.kind is ReplyKind.SLOW_DOWN
        for _ in range(100):
            if not await store.replies(C1):
                break
            await asyncio.sleep(0.05)
        assert await store.replies(C1) == []
    assert fake.posted_to(second_url) == [] and fake.messages == []
    assert first == (200, "")
    assert second[0] == 200
    assert json.loads(second[1]) == {
        "text": "You're asking faster than I can answer; please wait a minute.",
        "response_type": "ephemeral",
    }


class SlowStore(MemoryStore):
    """A store slow to answer an enqueue: after `delay` s it has written the message
    (`fail` False) or fails without writing it (`fail` True)."""

    delay = 0.6
    fail = False

    async def enqueue(self, message: Incoming) -> Enqueued:
        if self.fail:
            await asyncio.sleep(self.delay)
            raise StoreUnavailable("timed out")
        result = await super().enqueue(message)
        await asyncio.sleep(self.delay)  # written; the answer is slow to come back
        return result


async def test_a_slow_store_is_acked_in_time_without_a_false_apology(
    fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters.slack, "ENQUEUE_TIMEOUT", 0.2)
    async with slack_rig(fake, SlowStore()) as rig:
        url = fake.response_url()
        started = time.monotonic()
        ack = await rig.caller.command(command_payload("are you slow?", url))
        assert time.monotonic() - started < 0.5  # within the ack's budget, not the store's
        assert ack == (200, "")  # queued after all: no "can't take questions"
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
        await asyncio.sleep(0.3)
    assert fake.posted_to(url) == ["> <@U1>: are you slow?\necho are you slow? (turns 1)"]


async def test_a_store_failing_after_the_ack_apologises_to_the_asker_alone(
    fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters.slack, "ENQUEUE_TIMEOUT", 0.2)
    store = SlowStore()
    store.fail = True
    async with slack_rig(fake, store) as rig:
        url = fake.response_url()
        ack = await rig.caller.command(command_payload("anyone there?", url))
        assert ack == (200, "")  # nothing known yet: nothing said yet
        await fake.wait_for(lambda: bool(fake.posted_to(url)))
        store.fail = False
        assert (await rig.caller.command(command_payload("fast now", url)))[0] == 200
        await fake.wait_for(lambda: len(fake.posted_to(url)) == 2)
    apology, answer = fake.responses
    assert apology.text == UNAVAILABLE_TEXT and apology.ephemeral
    assert answer.text == "> <@U1>: fast now\necho fast now (turns 1)"


async def test_a_store_failing_at_once_is_told_in_the_ack(fake: FakeSlack) -> None:
    store = SlowStore()
    store.fail, store.delay = True, 0.0
    async with slack_rig(fake, store, respond=None) as rig:
        status, text = await rig.caller.command(command_payload("hello?", fake.response_url()))
    assert status == 200
    assert json.loads(text) == {"text": UNAVAILABLE_TEXT, "response_type": "ephemeral"}


async def test_socket_mode_receives_commands_and_mentions(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store, ingress=SocketMode(APP_TOKEN)) as rig:
        assert len(rig.adapter.web_app().router.routes()) == 0  # no public endpoint
        url = fake.response_url()
        await fake.wait_for(lambda: any(c[0] == "auth.test" for c in fake.calls))
        await fake.push(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": command_payload("how is the weather", url),
            }
        )
        callback = mention_callback(f"<@{BOT_USER}> hi", event_id="Ev1", ts="9.000001")
        await fake.push(
            {
                "envelope_id": "env-2",
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": callback,
            }
        )
        await fake.wait_for(lambda: bool(fake.posted_to(url)) and bool(fake.messages))
        assert await rig.adapter.health() is None
        fake.refuse_connections = True  # the app token revoked, say
        await fake.close_socket()
        for _ in range(100):
            if await rig.adapter.health() is not None:
                break
            await asyncio.sleep(0.02)
        assert await rig.adapter.health() == "Socket Mode disconnected"
    assert {a["envelope_id"] for a in fake.socket_acks} == {"env-1", "env-2"}
    assert fake.posted_to(url) == ["> <@U1>: how is the weather\necho how is the weather (turns 1)"]
    assert [(m.thread_ts, m.text) for m in fake.messages] == [("9.000001", "echo hi (turns 1)")]


async def test_refused_tokens_stop_the_start(fake: FakeSlack, store: MemoryStore) -> None:
    bad_bot = SlackAdapter(
        store, bot_token="xoxb-wrong", ingress=HttpMode(SIGNING_SECRET), api_url=fake.api_url
    )
    with pytest.raises(SlackAuthError, match="bot token") as bot_error:
        await bad_bot.start()
    bad_app = SlackAdapter(
        store, bot_token=BOT_TOKEN, ingress=SocketMode("xapp-wrong"), api_url=fake.api_url
    )
    with pytest.raises(SlackAuthError, match="app token") as app_error:
        await bad_app.start()
    assert (bot_error.value.which, app_error.value.which) == ("bot", "app")
    assert bad_bot._session is None and bad_app._session is None  # cleaned up
    # run() does not wait for a refused token to become good
    with pytest.raises(SlackAuthError, match="bot token"):
        await asyncio.wait_for(bad_bot.run(asyncio.Event()), 5)
    assert [c[0] for c in fake.calls].count("auth.test") == 3  # once each


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_start_waits_for_slack_and_is_not_ready_meanwhile(
    fake: FakeSlack, store: MemoryStore, mode: str
) -> None:
    fake.fail_auth_test(503, times=2)
    fake.fail_auth_test(429)
    adapter = SlackAdapter(
        store,
        bot_token=BOT_TOKEN,
        ingress=HttpMode(SIGNING_SECRET) if mode == "http" else SocketMode(APP_TOKEN),
        api_url=fake.api_url,
    )
    adapter.start_backoff = (0.05, 0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        reason = await health_until(adapter, lambda r: r is not None and "unreachable" in r)
        assert reason is not None and reason.startswith("Slack unreachable")
        await health_until(adapter, lambda r: r is None)
        assert [c[:2] for c in fake.calls if c[0] == "auth.test"] == [
            ("auth.test", 503),
            ("auth.test", 503),
            ("auth.test", 429),
            ("auth.test", 200),
        ]
        limited, then = [c[2] for c in fake.calls if c[0] == "auth.test"][2:]
        assert then - limited >= 0.95  # waited as long as Slack asked
    finally:
        stop.set()
        await task


async def test_an_unreachable_slack_is_waited_for_until_stopped(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = SlackAdapter(
        store,
        bot_token=BOT_TOKEN,
        ingress=HttpMode(SIGNING_SECRET),
        api_url=f"http://127.0.0.1:{closed_port()}/api/",
    )
    adapter.start_backoff = (0.05, 0.2)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(adapter.run(stop))
        await health_until(adapter, lambda r: r is not None and "unreachable" in r)
        await asyncio.sleep(0.6)  # several more tries
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)  # returns: stopping is no error
    assert adapter._session is None
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 1  # once per outage, not once per try
    assert errors_logged(caplog) == [outages[0].getMessage()]  # and no traceback


# -- egress ----------------------------------------------------------------------------------


async def test_a_rate_limited_channel_waits_without_stalling_another(
    fake: FakeSlack, store: MemoryStore
) -> None:
    fake.rate_limit("C1", seconds=1)
    async with slack_rig(fake, store) as rig:
        for n, channel in enumerate(("C1", "C2")):
            callback = mention_callback(
                f"<@{BOT_USER}> hi {channel}", event_id=f"Ev{n}", channel=channel
            )
            await rig.caller.event(callback)
        await fake.wait_for(lambda: len(fake.messages) == 2, timeout=5)
    limited = next(at for what, status, at in fake.calls if status == 429)
    c1, c2 = (next(m for m in fake.messages if m.channel == c) for c in ("C1", "C2"))
    assert c2.at < c1.at
    assert c2.at - limited < 0.9  # C2 did not wait for C1
    assert c1.at - limited >= 0.95  # C1 waited as long as Slack asked


async def test_an_expired_response_url_falls_back_to_the_channel(
    fake: FakeSlack, store: MemoryStore
) -> None:
    async with slack_rig(fake, store) as rig:
        url = fake.response_url()
        fake.expire(url)
        await rig.caller.command(command_payload("how is the weather", url, channel="C5"))
        await fake.wait_for(lambda: bool(fake.messages))
        # One Slack no longer accepts by age alone: not even tried.
        old = Reply(
            ChatKey("slack", "T1:C6"),
            "late answer",
            "t-old",
            asker="U2",
            question="q",
            reply_to=fake.response_url(),
            received_at=time.time() - RESPONSE_URL_TTL - 1,
        )
        # One used up (5 uses) halfway through a long answer: the rest goes to the channel.
        used = fake.response_url()
        for _ in range(4):
            await rig.adapter.send(
                [Reply(C1, "x", "t-fill", reply_to=used, received_at=time.time())]
            )
        long = Reply(
            ChatKey("slack", "T1:C7"),
            "word " * 1000,
            "t-long",
            asker="U3",
            question="q",
            reply_to=used,
            received_at=time.time(),
        )
        await rig.adapter.send([old])
        await rig.adapter.send([long])
    assert [r[0] for r in fake.calls if r[0] == "response_url" and r[1] == 404] == [
        "response_url",
        "response_url",
    ]
    c5, c6, *c7 = fake.messages
    assert (c5.channel, c5.thread_ts) == ("C5", None)
    assert c5.text == "> <@U1>: how is the weather\necho how is the weather (turns 1)"
    assert (c6.channel, c6.text) == ("C6", "> <@U2>: q\nlate answer")
    # split at the line end after the quote, then at word ends within 3000 characters
    assert fake.posted_to(used)[-1] == "> <@U3>: q"
    assert [m.channel for m in c7] == ["C7", "C7"]
    assert " ".join(m.text for m in c7).strip() == ("word " * 1000).strip()
    assert all(len(m.text) <= 3000 for m in c7)


def long_answer(contexts: Sequence[Sequence[str]]) -> list[str]:
    """Answers longer than one Slack message: four parts."""
    return [" ".join(f"{c[-1]}-{n}" for n in range(1200)) for c in contexts]


async def test_a_429_halfway_through_a_long_answer_does_not_repeat_its_first_part(
    fake: FakeSlack, store: MemoryStore
) -> None:
    fake.rate_limit("C1", seconds=1, after=1)  # the second part is refused
    async with slack_rig(fake, store, long_answer) as rig:
        callback = mention_callback(f"<@{BOT_USER}> tell", event_id="Ev1", ts="7.000001")
        assert (await rig.caller.event(callback))[0] == 200
        await fake.wait_for(lambda: len(fake.messages) == 4, timeout=10)
        await asyncio.sleep(0.3)
        sent = rig.adapter.sender.stats
        assert (sent.sent, sent.retried) == (1, 1)
    parts = split_text(long_answer([["tell"]])[0], 3000)
    assert [m.text for m in fake.messages] == parts  # each part once, in order
    statuses = [status for what, status, _ in fake.calls if what == "chat.postMessage"]
    assert statuses == [200, 429] + [200] * (len(parts) - 1)


async def test_a_429_halfway_through_a_long_command_answer_does_not_repeat_a_part(
    fake: FakeSlack, store: MemoryStore
) -> None:
    answer = long_answer([["tell"]])[0]
    parts = split_text(f"> <@U1>: tell\n{answer}", 3000)
    assert len(parts) <= 5  # the uses of a response_url
    async with slack_rig(fake, store, long_answer) as rig:
        url = fake.response_url()
        fake.rate_limit_url(url, seconds=1, after=1)
        assert (await rig.caller.command(command_payload("tell", url)))[0] == 200
        await fake.wait_for(lambda: len(fake.posted_to(url)) == len(parts), timeout=10)
        await asyncio.sleep(0.3)
    assert fake.posted_to(url) == parts  # each part once, in order
    statuses = [s for what, s, _ in fake.calls if what == "response_url"]
    assert statuses == [200, 429] + [200] * (len(parts) - 1)
    assert fake.messages == []  # all through the response_url


async def test_send_errors_are_classified(fake: FakeSlack, store: MemoryStore) -> None:
    async with slack_rig(fake, store, respond=None) as rig:

        def mention_reply(channel: str) -> Reply:
            return Reply(ChatKey("slack", f"T1:{channel}"), "hi", "Ev", thread="1.0")

        fake.fail_channel("C8", "channel_not_found")
        with pytest.raises(Undeliverable, match="channel_not_found"):
            await rig.adapter.send([mention_reply("C8")])
        fake.rate_limit("C9", seconds=7)
        with pytest.raises(RetryAfter) as retry:
            await rig.adapter.send([mention_reply("C9")])
        assert retry.value.seconds == 7
        fake.fail_server()
        with pytest.raises(SlackSendError, match="HTTP 500"):
            await rig.adapter.send([mention_reply("C9")])
        await rig.adapter.send([mention_reply("C9")])
    assert [(m.channel, m.thread_ts, m.text) for m in fake.messages] == [("C9", "1.0", "hi")]


# -- secrets, imports, text, configuration -------------------------------------------------


async def test_tokens_and_secrets_never_reach_the_logs(
    fake: FakeSlack, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with slack_rig(fake, store) as rig:
        url = fake.response_url()
        await rig.caller.command(command_payload("hello", url))
        await rig.caller.command(command_payload("forged", url), secret="wrong")
        fake.rate_limit("C1", seconds=1)
        await rig.caller.event(mention_callback(f"<@{BOT_USER}> hi", event_id="Ev1"))
        await fake.wait_for(lambda: bool(fake.posted_to(url)) and bool(fake.messages))
    async with slack_rig(fake, MemoryStore(), ingress=SocketMode(APP_TOKEN)):
        pass
    logged = caplog.text
    assert "Socket Mode connected" in logged and "rejected" in logged
    # Even at DEBUG, slack_bolt and slack_sdk say nothing below WARNING: their requests'
    # bodies and URLs stay out of the logs.
    libraries = [r for r in caplog.records if r.name.startswith(("slack_bolt", "slack_sdk"))]
    assert all(r.levelno >= logging.WARNING for r in libraries)
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert secret not in logged
        assert secret[-12:] not in logged


class Kept(logging.Handler):
    """Keeps every record it is handed, formatted with its traceback."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {self.format(record)}")


class FailingStore(MemoryStore):
    """A store that cannot take questions containing "fail"."""

    async def enqueue(self, message: Incoming) -> Enqueued:
        if "fail" in message.text:
            raise StoreUnavailable("connection refused")
        return await super().enqueue(message)


@pytest.mark.parametrize("level_when_built", [logging.DEBUG, logging.INFO, logging.WARNING])
async def test_no_message_text_or_response_url_reaches_the_logs_at_info(
    fake: FakeSlack, level_when_built: int
) -> None:
    # slack_bolt sets its loggers' levels from the root logger's when the app is built:
    # whatever that was, nothing of a request may be logged at INFO afterwards.
    root = logging.getLogger()
    saved = root.level
    kept = Kept(logging.INFO)
    texts = ["forged-words-4411", "stale-words-5522", "genuine-words-6633", "mention-words-7744"]
    urls = [fake.response_url() for _ in range(4)]
    unreachable = f"http://127.0.0.1:{closed_port()}/hooks/T1/B1/private-hook-8855"
    try:
        root.setLevel(level_when_built)
        async with slack_rig(fake, FailingStore()) as rig:
            root.setLevel(logging.INFO)
            root.addHandler(kept)
            caller = rig.caller
            forged, stale, genuine, failing = (
                command_payload(text, url) for text, url in zip(texts, urls, strict=True)
            )
            assert (await caller.command(forged, secret="wrong"))[0] == 401
            assert (await caller.command(stale, timestamp=int(time.time()) - 400))[0] == 401
            assert (await caller.command(genuine))[0] == 200
            await fake.wait_for(lambda: bool(fake.posted_to(urls[2])))
            failing["text"] = "fail " + failing["text"]
            assert (await caller.command(failing))[0] == 200  # sorry, told in the ack
            mention = mention_callback(f"<@{BOT_USER}> {texts[3]} fail", event_id="Ev1")
            assert (await caller.event(mention))[0] == 500  # Slack will retry it
            # A request bolt itself refuses (its own signature check).
            body = urllib.parse.urlencode(forged)
            request = AsyncBoltRequest(body=body, headers=signed_headers(body, secret="wrong"))
            assert (await rig.adapter.app.async_dispatch(request)).status == 401
            # A response_url that cannot be reached.
            reply = Reply(C1, "an answer", "t9", reply_to=unreachable, received_at=time.time())
            with pytest.raises(SlackSendError):
                await rig.adapter.send([reply])
    finally:
        root.removeHandler(kept)
        root.setLevel(saved)
    logged = "\n".join(kept.lines)
    assert "rejected" in logged  # the adapter's own lines are there
    for secret in (*texts, *urls, unreachable, "private-hook-8855", BOT_TOKEN, SIGNING_SECRET):
        assert secret not in logged, secret
    assert logging.getLogger("parley").level == logging.NOTSET  # bolt leaves ours alone


@pytest.mark.parametrize("module", ["adapters.slack", "bots.slack"])
def test_importing_does_not_load_tensorflow(module: str) -> None:
    code = f"import sys, {module}; print('tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_text_conversions() -> None:
    markup = "<@UBOT> hi <@U2|ann> in <#C1|general> see <https://x.org|x> &lt;3"
    assert to_plain(markup, "UBOT") == " hi @ann in #general see x <3"
    assert to_plain("<!here> <https://x.org> a &amp;amp; b") == "@here https://x.org a &amp; b"
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    reply = Reply(C1, "sure <!channel>", "t", asker="U1", question="line one\n<two>")
    assert command_text(reply) == "> <@U1>: line one\n> &lt;two&gt;\nsure &lt;!channel&gt;"


def test_settings_name_what_each_mode_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PARLEY_SLACK_BOT_TOKEN", "PARLEY_SLACK_SIGNING_SECRET", "PARLEY_SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    store = MemoryStore()
    with pytest.raises(ConfigError, match="PARLEY_SLACK_BOT_TOKEN"):
        load_settings().slack(shared_queue=False)
    with pytest.raises(ConfigError, match="PARLEY_SLACK_SIGNING_SECRET"):
        load_settings(slack_bot_token="xoxb-1").slack(shared_queue=False)
    with pytest.raises(ConfigError, match="PARLEY_SLACK_APP_TOKEN"):
        load_settings(slack_bot_token="xoxb-1", slack_mode="socket").slack(shared_queue=False)
    adapter = build_slack(
        load_settings(
            slack_bot_token="xoxb-1", slack_mode="socket", slack_app_token="xapp-1"
        ).slack(shared_queue=False),
        store,
    )
    assert adapter.mode == "socket" and adapter.limits.per_chat == 20


def test_parley_slack_without_settings_names_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("PARLEY_SLACK_BOT_TOKEN", "PARLEY_SLACK_SIGNING_SECRET", "PARLEY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["slack"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "PARLEY_SLACK_BOT_TOKEN" in err and "PARLEY_SLACK_SIGNING_SECRET" in err
