"""The chat in a real browser: Debian's headless Chromium, driven by Playwright.

The server is the web adapter with a worker in the test's process (the tiny model, on the
embedded store). A screenshot of the room is saved in test-artifacts/; with
PARLEY_UPDATE_SCREENSHOT=1 the README's docs/room.png is made again, with the bundled model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright, expect

from adapters.web import WebAdapter
from bots.settings import BUNDLED_MODEL
from core.queue.memory_store import MemoryStore
from core.queue.worker import Worker

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; ./test.sh installs it
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
WEATHER = ("sunny", "rain", "cold")


@contextlib.asynccontextmanager
async def chat_server(
    respond: Callable[[Sequence[Sequence[str]]], list[str]], token: str | None = None
) -> AsyncIterator[tuple[str, WebAdapter]]:
    """The room's address and the adapter, with a worker answering through `respond`."""
    store = MemoryStore()
    adapter = WebAdapter(store, token=token)
    server = TestServer(adapter.make_app(), host="127.0.0.1")
    await server.start_server()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(adapter.run(stop)),
        asyncio.create_task(Worker(store, respond, idle_timeout=0.05).run(stop)),
    ]
    try:
        yield str(server.make_url("/r/lobby")), adapter
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await server.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    assert CHROMIUM.exists(), "Chromium is missing: apt-get install chromium (./test.sh does)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


def console_error(errors: list[str], nick: str, message) -> None:  # type: ignore[no-untyped-def]
    # A reconnect attempt while offline logs a failed connection: expected, not a fault.
    if message.type == "error" and "WebSocket connection" not in message.text:
        errors.append(f"{nick}: {message.text}")


async def enter(browser, url: str, nick: str, errors: list[str], height: int = 620):  # type: ignore[no-untyped-def]
    """A new browser context (its own storage: another person) in the room as `nick`."""
    context = await browser.new_context(viewport={"width": 880, "height": height})
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{nick}: {exc}"))
    page.on("console", lambda m: console_error(errors, nick, m))
    await page.goto(url)
    await page.fill("#nick", nick)
    await page.click("#join-form button")
    await page.locator("#rename").filter(has_text=nick).wait_for()
    return context, page


async def post(page, text: str) -> None:  # type: ignore[no-untyped-def]
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def texts(page) -> list[str]:  # type: ignore[no-untyped-def]
    return list(await page.locator("#messages .msg .text").all_inner_texts())


async def wait_for_texts(page, count: int, timeout: float = 30) -> list[str]:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while len(shown := await texts(page)) < count:
            await asyncio.sleep(0.05)
    return shown


async def test_two_people_and_the_bot_in_chromium(tiny_responder) -> None:  # type: ignore[no-untyped-def]
    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        return list(tiny_responder.reply(contexts, method="greedy"))

    errors: list[str] = []
    async with chat_server(respond) as (url, adapter), chromium() as browser:
        ann_context, ann = await enter(browser, url, "ann", errors)
        bob_context, bob = await enter(browser, url, "bob", errors)
        await bob.locator("#presence").filter(has_text="ann, bob").wait_for()

        await post(ann, "@parley how is the weather")
        for page in (ann, bob):
            reply = page.locator("#messages .msg.bot")
            await reply.wait_for(timeout=30_000)
            assert await reply.locator(".who").inner_text() == "parley"
            assert await reply.locator("blockquote").inner_text() == "ann: how is the weather"
            answer = await reply.locator(".text").inner_text()
            assert any(w in answer for w in WEATHER), answer
        assert await ann.locator("#thinking").is_hidden()

        # People's text is text: markup shows as typed and never runs.
        payloads = ["<script>window.__xss = 1</script>", '<img src=x onerror="window.__xss=2">']
        for text in payloads:
            await post(bob, text)
        for page in (ann, bob):
            assert (await wait_for_texts(page, 4))[2:] == payloads
            assert await page.locator("#messages img, #messages script").count() == 0
            assert await page.evaluate("window.__xss") is None

        # The network drops for ann: what she types meanwhile, and what others say, arrive
        # once each when she is back.
        await ann_context.set_offline(True)
        await adapter.stop()  # closes every socket; bob is back at once, ann cannot be
        await post(ann, "typed while offline")
        await ann.locator("#pending .msg.sending").wait_for()
        await expect(ann.locator("#status")).to_contain_text("reconnecting")
        await expect(bob.locator("#status")).to_have_text("", timeout=10_000)  # bob is back
        await post(bob, "said while ann was away")
        # read before ann is back: her resent message may reach bob at once
        expected = [*(await wait_for_texts(bob, 5)), "typed while offline"]
        await ann_context.set_offline(False)
        for page in (ann, bob):
            assert await wait_for_texts(page, 6) == expected
            assert await page.locator("#pending .msg").count() == 0
        await asyncio.sleep(0.5)
        assert await texts(ann) == expected and await texts(bob) == expected

        ARTIFACTS.mkdir(exist_ok=True)
        await ann.screenshot(path=str(ARTIFACTS / "browser-room.png"))
        await ann_context.close()
        await bob_context.close()
    assert errors == []


async def test_a_room_behind_a_token_in_chromium() -> None:
    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        return [f"you said: {c[-1]}" for c in contexts]

    errors: list[str] = []
    async with chat_server(respond, token="let-me-in") as (url, _), chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        assert (await page.goto(url)).status == 401  # type: ignore[union-attr]
        _, ann = await enter(browser, f"{url}?token=let-me-in", "ann", errors)
        await post(ann, "/ask knock knock")
        assert await wait_for_texts(ann, 2) == ["/ask knock knock", "you said: knock knock"]
    assert errors == []


@pytest.mark.skipif(
    os.environ.get("PARLEY_UPDATE_SCREENSHOT") != "1",
    reason="makes the README's docs/room.png with the bundled model when asked to",
)
async def test_update_the_readme_screenshot() -> None:
    from core.model.responder import Responder

    responder = Responder.load(BUNDLED_MODEL)
    errors: list[str] = []
    async with chat_server(responder.reply) as (url, _), chromium() as browser:
        _, ann = await enter(browser, url, "ann", errors)
        _, bob = await enter(browser, url, "bob", errors, height=720)
        script = [
            (ann, "hi everyone!"),
            (bob, "hey ann! is the bot awake?"),
            (ann, "@parley hi there! how are you?"),
            (bob, "/ask what do you do for fun?"),
            (ann, "@parley do you like to travel?"),
            (bob, "@parley wait, are you a bot?"),
        ]
        shown = 0
        for page, text in script:
            await post(page, text)
            shown += 2 if text.startswith(("@parley", "/ask")) else 1  # a question and its reply
            await wait_for_texts(bob, shown, timeout=60)
        await asyncio.sleep(0.5)
        (REPO / "docs").mkdir(exist_ok=True)
        await bob.screenshot(path=str(REPO / "docs" / "room.png"))
    assert errors == []
