"""End to end through the adapters, with the bundled model answering.

- web: `parley serve` (the main job, embedded store) as a process; a websocket client asks
  one question at a time and times question -> the bot's reply frame;
- Telegram: the adapter (polling) against the fake Bot API on 127.0.0.1, a private
  redis-server and a `parley worker` process; times the update becoming available ->
  sendMessage arriving at the fake;
- both beside the model's own batch-1 reply time, measured in the same run, so the
  difference is what the queue, the adapter and the network hops add.

    .venv/bin/python -m bench.adapters [--questions 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import DEFAULT_MODEL, REPO, machine, pct, table
from bots.settings import load_settings
from bots.telegram import build_telegram
from core.queue.redis_store import RedisStore
from core.queue.types import Limits
from support.fakes.telegram_api import FakeTelegram
from support.redis_server import RedisServer

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)
QUESTIONS = [
    "hi there! how are you?",
    "what do you do for fun?",
    "do you like to travel?",
    "what did you have for dinner?",
    "how is the weather where you are?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_alone(n: int) -> list[float]:
    from core.model.responder import Responder

    responder = Responder.load(DEFAULT_MODEL)
    out = []
    for i in range(n + 3):
        start = time.perf_counter()
        responder.reply([[QUESTIONS[i % len(QUESTIONS)]]])
        if i >= 3:
            out.append(time.perf_counter() - start)
    return out


async def web(n: int) -> list[float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_WEB_PORT"] = str(port)
    # one person asks every question here: no per-person limits
    env["PARLEY_WEB_RATE"], env["PARLEY_SENDER_RATE"] = "1000", "0"
    parley = Path(sys.executable).parent / "parley"
    proc = subprocess.Popen(
        [str(parley), "serve"],
        cwd=tempfile.gettempdir(),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    out = []
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{base}/healthz", timeout=HTTP_TIMEOUT) as r:
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
            async with http.ws_connect(f"{base}/r/bench/ws", params={"name": "ann"}) as ws:
                for i in range(n + 3):
                    start = time.perf_counter()
                    text = f"@parley {QUESTIONS[i % len(QUESTIONS)]}"
                    await ws.send_json({"type": "say", "id": f"q{i}", "text": text})
                    async with asyncio.timeout(120):
                        async for message in ws:
                            frame = json.loads(message.data)
                            if frame["type"] == "message" and frame["kind"] == "bot":
                                break
                    if i >= 3:
                        out.append(time.perf_counter() - start)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return out


async def telegram(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        env = {**os.environ, "PARLEY_REDIS_URL": server.url}
        worker = subprocess.Popen(
            [sys.executable, "-m", "bots.cli", "worker"],
            cwd=REPO,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        store = RedisStore.from_url(server.url, Limits(sender_rate=0))
        out = []
        try:
            async with FakeTelegram() as fake:
                settings = load_settings(
                    telegram_token=fake.token, telegram_api_url=fake.api_url
                ).telegram(shared_queue=False)
                adapter, _ = build_telegram(settings, store)
                stop = asyncio.Event()
                task = asyncio.create_task(adapter.run(stop))
                person = fake.user(7, "ann")
                bot = fake.bot_user["username"]
                await asyncio.sleep(1)
                for i in range(n + 3):
                    text = f"@{bot} {QUESTIONS[i % len(QUESTIONS)]}"
                    # a private chat per question: the group flood limit is not what we time
                    start = time.time()  # the fake stamps each message with time.time()
                    fake.add_update(message=fake.message(1000 + i, person, text))
                    sent = await fake.wait_sent(i + 1, timeout=300)
                    if i >= 3:
                        out.append(sent[i].at - start)
                stop.set()
                await task
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            await store.close()
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=40)
    args = parser.parse_args()
    n = args.questions
    print(f"# adapters end to end, {machine()}, {time.strftime('%Y-%m-%d')}, bundled model")
    alone = model_alone(n)
    web_times = asyncio.run(web(n))
    tg_times = asyncio.run(telegram(n))
    base = pct(alone, 50)
    rows = [
        ("model alone (responder.reply, batch 1)", alone),
        ("web: parley serve, websocket question -> reply", web_times),
        ("Telegram: update -> sendMessage (adapter + Redis + worker)", tg_times),
    ]
    print(
        table(
            [
                (
                    name,
                    f"{pct(t, 50) * 1000:.1f}",
                    f"{pct(t, 90) * 1000:.1f}",
                    f"{(pct(t, 50) - base) * 1000:+.1f}",
                )
                for name, t in rows
            ],
            ("path", "p50 ms", "p90 ms", "p50 added to the model"),
        )
    )


if __name__ == "__main__":
    main()
