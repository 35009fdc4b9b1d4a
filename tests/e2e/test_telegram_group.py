"""A busy Telegram group through Redis and a worker with a tiny model: every mention is
answered once, in order, quoting its question, within the group's flood limit."""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bots.settings import load_settings
from bots.telegram import build_telegram
from core.queue.redis_store import RedisStore
from core.queue.types import Limits
from core.queue.worker import Worker
from support.fakes.telegram_api import FakeTelegram
from tests.conftest import QUESTIONS

GROUP = -1001234567890
PEOPLE = 10
MENTIONS = 200
RATE, WINDOW = 20, 3.0  # Telegram's 20 a minute, shrunk to seconds
ADDRESSED = re.compile(r"^(@\w+|\w+): ")


def ignored_chatter() -> float:
    labels = {"platform": "telegram", "reason": "chatter"}
    return REGISTRY.get_sample_value("parley_ignored_total", labels) or 0.0


@pytest.mark.slow
async def test_a_busy_group_is_answered_in_order_within_the_flood_limit(
    redis_server: Any, tiny_responder: Any
) -> None:
    redis_server.flush()
    # The group's backlog and the people's own rate would turn questions away: not here.
    store = RedisStore.from_url(redis_server.url, Limits(backlog=1000, sender_rate=0))
    rng = random.Random(4)
    async with FakeTelegram(group_limit=RATE, group_window=WINDOW) as fake:
        settings = load_settings(
            telegram_token=fake.token, telegram_api_url=fake.api_url, telegram_group_rate=RATE
        ).telegram(shared_queue=False)
        adapter, _ = build_telegram(settings, store, rate_window=WINDOW)
        people = [
            fake.user(100 + i, f"person{i}" if i % 2 else None, first_name=f"Name{i}")
            for i in range(PEOPLE)
        ]
        mentions = []  # (asker name, message id), in the order people wrote
        for n in range(MENTIONS):
            person = people[n % PEOPLE]
            question = rng.choice(list(QUESTIONS.values()))
            msg = fake.message(GROUP, person, f"@{fake.bot_user['username']} {question}")
            fake.add_update(message=msg)
            name = f"@{person['username']}" if "username" in person else person["first_name"]
            mentions.append((name, msg["message_id"]))
            fake.add_update(message=fake.message(GROUP, rng.choice(people), "lol, same here"))
        chatter_before = ignored_chatter()

        stop = asyncio.Event()
        worker = Worker(store, tiny_responder.reply, idle_timeout=0.05)
        tasks = [asyncio.create_task(adapter.run(stop)), asyncio.create_task(worker.run(stop))]
        started = time.monotonic()
        try:
            while adapter.sender.stats.sent < MENTIONS and time.monotonic() - started < 90:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # anything extra would show up now
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await store.close()
        took = time.monotonic() - started

    answered: list[tuple[str, int]] = []  # (asker name, quoted id) per answer, in send order
    coalesced = 0
    for sent in fake.sent:
        assert sent.chat_id == GROUP and sent.reply_to is not None
        lines = sent.text.split("\n")
        if all(ADDRESSED.match(line) for line in lines):
            coalesced += 1
            names = [ADDRESSED.match(line).group(1) for line in lines]  # type: ignore[union-attr]
        else:  # a single reply: the model's text, quoting its question
            assert len(lines) == 1, sent.text
            names = [mentions[len(answered)][0]]
        # Each message quotes the last question it answers.
        answered += [(name, 0) for name in names[:-1]] + [(names[-1], sent.reply_to)]
    assert len(answered) == MENTIONS, f"{len(answered)} answers to {MENTIONS} mentions"
    assert [a[0] for a in answered] == [m[0] for m in mentions]  # once each, in order
    assert all(quoted in (0, m[1]) for (_, quoted), m in zip(answered, mentions, strict=True))
    assert coalesced > 0 and len(fake.sent) < MENTIONS
    assert ignored_chatter() == chatter_before + MENTIONS
    # Within the flood limit: never more than RATE messages in any WINDOW, so no 429.
    times = [s.at for s in fake.sent]
    busiest = max(sum(1 for t in times if start <= t < start + WINDOW) for start in times)
    assert busiest <= RATE and fake.throttled == 0
    print(
        f"\n{MENTIONS} mentions: {len(fake.sent)} messages ({coalesced} coalesced) in {took:.1f} s"
    )
