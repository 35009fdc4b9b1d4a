"""A busy Slack channel end to end: signed slash commands through the adapter, Redis and a
worker with the tiny model, answers through each command's response_url."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from core.model.responder import Responder
from core.queue.redis_store import RedisStore
from core.queue.types import SendLimits
from support.fakes.slack_api import FakeSlack, command_payload, slack_rig

QUESTIONS = ["how is the weather", "what did you eat", "what music do you like"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await FakeSlack().start()
    yield slack
    await slack.close()


@pytest.mark.slow
async def test_a_burst_of_commands_with_retries_is_answered_once_each_in_order(
    fake: FakeSlack, redis_store: RedisStore, tiny_responder: Responder
) -> None:
    rng = random.Random(4)
    # Slack's rate is a message per second per channel; a shorter window keeps this quick
    # while the window still paces the sender.
    limits = SendLimits(per_chat=25, window=1.0)
    payloads = [
        command_payload(
            f"{QUESTIONS[n % len(QUESTIONS)]} {n}",
            fake.response_url(),
            user=f"U{n % 5}",  # five people: each stays under the per-sender rate
            trigger_id=f"trigger-{n}",
        )
        for n in range(50)
    ]
    async with slack_rig(fake, redis_store, tiny_responder.reply, limits=limits) as rig:
        for n, payload in enumerate(payloads):
            assert await rig.caller.command(payload) == (200, "")
            if n % 7 == 3:  # Slack retrying a command it thinks was lost
                assert await rig.caller.command(payload) == (200, "")
        late = rng.sample(payloads, 10)  # and later retries, all at once
        results = await asyncio.gather(*(rig.caller.command(p) for p in late))
        assert results == [(200, "")] * 10
        await fake.wait_for(lambda: len(fake.responses) >= 50, timeout=60)
        # The channel answers in order: once a last question is answered, an extra answer
        # to an earlier one could only have come before it.
        last = command_payload("bye", fake.response_url(), trigger_id="trigger-last")
        await rig.caller.command(last)
        await fake.wait_for(lambda: bool(fake.posted_to(last["response_url"])), timeout=10)
    urls = [p["response_url"] for p in payloads]
    assert [r.url for r in fake.responses] == [*urls, last["response_url"]]
    for payload, response in zip(payloads, fake.responses, strict=False):
        assert response.body["response_type"] == "in_channel"
        quote, _, answer = response.text.partition("\n")
        assert quote == f"> <@{payload['user_id']}>: {payload['text']}"
        assert answer.strip()
    assert fake.messages == []  # nothing needed the chat.postMessage fallback
