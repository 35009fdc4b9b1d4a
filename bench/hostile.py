"""A storm of hostile clients against live parley processes, beside one ordinary person.

Starts `parley serve` (the embedded store and the bundled model) and, unless --web-only, a
redis-server of its own with `parley telegram` (webhook mode) and `parley slack` (HTTP
mode) against the fake platform APIs; everything listens on 127.0.0.1 only. For
--seconds, or until --inputs hostile inputs were sent, --clients tasks send them: frames
with lone surrogates, deep nesting, oversized or binary frames, floods, odd query strings,
a new room per message, malformed HTTP, connections that never finish their headers, and
webhook bodies that are malformed, oversized, forged or never end. Meanwhile one ordinary
person chats in a room of their own and asks the bot a question every second.

Prints, per process: whether it still runs, the 5xx answers it gave, the tracebacks and
ERROR lines in its log, its log's size, and its memory (RSS) through the storm (flat once
the model has compiled its batch shapes and the caps are reached);
then the ordinary person's latency (their message acknowledged, the bot's answer).

    .venv/bin/python -m bench.hostile [--seconds 60] [--inputs 50000] [--web-only]
        [--memory-max-chats 1000]  # to see memory level off sooner
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import machine, pct, table
from support.fakes.slack_api import SIGNING_SECRET, FakeSlack, mention_callback, signed_headers
from support.fakes.telegram_api import WEBHOOK_SECRET, FakeTelegram
from support.redis_server import RedisServer

PARLEY = Path(sys.executable).parent / "parley"
HOST = "127.0.0.1"
TIMEOUT = aiohttp.ClientTimeout(total=20)
SURROGATE = "\ud800"
QUARTERS = (0.0, 0.25, 0.5, 0.75, 1.0)

# Web frames; every say frame's id is filled in.
FRAMES: list[Callable[[int], str | bytes]] = [
    lambda n: json.dumps({"type": "say", "id": f"s{n}", "text": f"@parley hi {SURROGATE}"}),
    lambda n: json.dumps({"type": "say", "id": f"s{n}", "text": "/ask \udfff"}),
    lambda n: json.dumps({"type": "say", "id": f"s{n}", "text": f"chatter {SURROGATE}\udfff"}),
    lambda n: "[" * 60_000,
    lambda n: '{"a":' * 5_000 + "1" + "}" * 5_000,
    lambda n: json.dumps({"type": "say", "id": f"s{n}", "text": "\x00\x1b[2J\u202e" * 500}),
    lambda n: json.dumps({"type": "say", "id": f"s{n}", "text": "x" * 20_000}),
    lambda n: "y" * 70_000,  # beyond the frame limit: closes this connection alone
    lambda n: os.urandom(64),
    lambda n: json.dumps({"type": "say", "id": "has spaces", "text": 5}),
    lambda n: json.dumps([{"type": "say"}] * 50),
    lambda n: '{"type": "say", "id": "x", "text": "\\ud800\\udc00\\udbff"}',
]
QUERIES = [
    {"name": "eve", "after": "\u00b2"},
    {"name": "eve", "after": "9" * 40},
    {"name": "\x00\u202e" + "e" * 5_000},
    {"name": "parley"},
    {"name": "eve", "client": "\ud7ff" * 10},
]
RAW_HTTP = [
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: " + b"h" * 20_000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40),  # a TLS hello
    b"POST /r/lobby HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /r/" + b"a" * 5_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
]


@dataclass
class Tally:
    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def status(self, code: int) -> None:
        self.statuses[code] += 1


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    rss: list[int] = field(default_factory=list)

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss.append(int(line.split()[1]) // 1024)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start(name: str, args: list[str], env: dict[str, str], tmp: Path) -> Proc:
    log = tmp / f"{name}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    proc = subprocess.Popen(
        [str(PARLEY), *args],
        cwd=tmp,
        env={**base, "PARLEY_HTTP_HOST": HOST, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return Proc(name, proc, log)


async def ready(http: aiohttp.ClientSession, url: str, proc: Proc) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise SystemExit(f"{proc.name} exited:\n{proc.log.read_text()[-2000:]}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.3)
    raise SystemExit(f"{proc.name} not ready in time")


# -- the attacks --------------------------------------------------------------------------------


async def ws_frames(
    http: aiohttp.ClientSession,
    base: str,
    n: int,
    tally: Tally,
    frames: list[Callable[[int], str | bytes]],
) -> None:
    """A connection to a room (a new one half the time) that sends a few hostile frames."""
    room = f"r{n}" if n % 2 else f"lobby{n % 7}"

    async def send(ws: aiohttp.ClientWebSocketResponse) -> None:
        for k in range(random.randint(1, 4)):
            frame = random.choice(frames)(n * 10 + k)
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            tally.inputs += 1

    await _websocket(http, f"{base}/r/{room}/ws", {"name": f"eve{n}"}, tally, send)


async def ws_queries(http: aiohttp.ClientSession, base: str, n: int, tally: Tally) -> None:
    query = urllib.parse.urlencode(random.choice(QUERIES), errors="surrogatepass")
    tally.inputs += 1
    await _websocket(http, f"{base}/r/lobby/ws?{query}", None, tally, None)


async def _websocket(
    http: aiohttp.ClientSession,
    url: str,
    params: dict[str, str] | None,
    tally: Tally,
    send: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]] | None,
) -> None:
    """Open a websocket, `send` on it, wait briefly for an answer; count how it ended."""
    try:
        async with http.ws_connect(url, params=params) as ws:
            if send is not None:
                await send(ws)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.5)
    except aiohttp.WSServerHandshakeError as exc:
        tally.status(exc.status)
    except (aiohttp.ClientError, ConnectionError) as exc:
        tally.errors[type(exc).__name__] += 1


async def raw_http(port: int, tally: Tally) -> None:
    tally.inputs += 1
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(random.choice(RAW_HTTP))
        line = await asyncio.wait_for(reader.readline(), 20)
        writer.close()
        if line.startswith(b"HTTP/"):
            tally.status(int(line.split()[1]))
    except (OSError, TimeoutError) as exc:
        tally.errors[type(exc).__name__] += 1


async def slowloris(port: int, seconds: float, held: list[float]) -> None:
    """Headers a byte a second, never finished; records how long the server kept it."""
    started = time.monotonic()
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /r/lobby HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - started < seconds:
            try:
                if not await asyncio.wait_for(reader.read(100), 1.0):
                    break
            except TimeoutError:
                writer.write(b"X")
            except OSError:
                break
        writer.close()
    held.append(time.monotonic() - started)


async def endless_body() -> AsyncIterator[bytes]:
    yield b'{"update_id": 1, '
    await asyncio.sleep(60)


def telegram_bodies(fake: FakeTelegram, n: int) -> bytes | AsyncIterator[bytes]:
    msg = fake.message(-100 - n % 50, fake.user(n % 1000 + 1, "eve"), f"@parley_bot hi {SURROGATE}")
    bodies: list[Any] = [
        {"update_id": n, "message": msg},
        {"update_id": n, "message": {**msg, "text": 5}},
        {"update_id": n, "message": {**msg, "chat": None}},
        {"update_id": n, "message": {**msg, "text": "", "entities": [{"type": "mention"}]}},
        {"update_id": str(n)},
        [1, 2],
    ]
    choice = random.randrange(len(bodies) + 3)
    if choice == len(bodies):
        return b'{"update_id": 1, "x": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    if choice == len(bodies) + 1:
        return b"[" * 60_000
    if choice == len(bodies) + 2:
        return endless_body()
    return json.dumps(bodies[choice]).encode()


async def telegram_webhook(
    http: aiohttp.ClientSession, url: str, fake: FakeTelegram, n: int, tally: Tally
) -> None:
    body = telegram_bodies(fake, n)
    secret = WEBHOOK_SECRET if n % 5 else "forged"
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}
    await _post(http, url, body, headers, tally)


async def slack_request(http: aiohttp.ClientSession, url: str, n: int, tally: Tally) -> None:
    callback = mention_callback(f"<@UBOT> hi {SURROGATE}", event_id=f"Ev{n}")
    events: list[Any] = [
        callback,
        {**callback, "event": "x"},
        {**callback, "event": []},
        {**callback, "team_id": "T" * 10_000},
        {**callback, "event": {**callback["event"], "channel": "C" * 10_000}},
    ]
    kind = random.randrange(len(events) + 2)
    data: Any
    if kind < len(events):
        data = json.dumps(events[kind])
        headers = {"Content-Type": "application/json", **signed_headers(data)}
    elif kind == len(events):
        data = '{"type": "event_callback", "event": ' + "[" * 60_000 + "}"
        headers = {"Content-Type": "application/json", **signed_headers(data)}
    else:  # a forged signature and a body that never ends
        data = endless_body()
        headers = {"Content-Type": "application/json", **signed_headers("x", "forged!")}
    await _post(http, url, data, headers, tally)


async def _post(
    http: aiohttp.ClientSession, url: str, data: Any, headers: dict[str, str], tally: Tally
) -> None:
    """One hostile request; count the answer, or how the connection ended."""
    tally.inputs += 1
    try:
        async with http.post(url, data=data, headers=headers) as response:
            tally.status(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.errors[type(exc).__name__] += 1


# -- the ordinary person ------------------------------------------------------------------------


async def person(base: str, stop: asyncio.Event, acks: list[float], answers: list[float]) -> None:
    """Says something every second in a room of their own, asking the bot every fourth."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.ws_connect(f"{base}/r/calm/ws", params={"name": "ann", "client": "ann-tab-1"}) as ws,
    ):
        sent: dict[str, float] = {}
        asked: dict[str, float] = {}

        async def receive() -> None:
            async for message in ws:
                frame = json.loads(message.data)
                if frame["type"] == "ack" and frame["id"] in sent:
                    acks.append(time.perf_counter() - sent.pop(frame["id"]))
                elif frame["type"] == "message" and frame.get("kind") == "bot":
                    quoted = frame["quote"]["text"]
                    if quoted in asked:
                        answers.append(time.perf_counter() - asked.pop(quoted))

        reader = asyncio.create_task(receive())
        n = 0
        while not stop.is_set():
            n += 1
            question = f"how are you today, number {n}?"
            # a question every 4 s: within the sender rate (20 a minute)
            text = f"@parley {question}" if n % 4 == 1 else f"just chatting, {n}"
            sent[f"p{n}"] = asked[question] = time.perf_counter()
            await ws.send_json({"type": "say", "id": f"p{n}", "text": text})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await asyncio.sleep(3)  # the last answers
        reader.cancel()


# -- the run ------------------------------------------------------------------------------------


async def storm(args: argparse.Namespace, tmp: Path) -> None:
    web_port = free_port()
    serve_env = {"PARLEY_WEB_PORT": str(web_port)}
    if args.memory_max_chats:
        serve_env["PARLEY_MEMORY_MAX_CHATS"] = str(args.memory_max_chats)
    procs = [start("serve", ["serve"], serve_env, tmp)]
    base = f"http://{HOST}:{web_port}"
    tallies: dict[str, Tally] = {"web": Tally()}
    # --no-questions: the model answers the ordinary person alone (memory without it)
    frames = FRAMES[2:] if args.no_questions else FRAMES
    extra: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=TIMEOUT, connector=aiohttp.TCPConnector(limit=0))
        )
        attacks: list[Callable[[int], Coroutine[Any, Any, None]]] = [
            lambda n: ws_frames(http, base, n, tallies["web"], frames),
            lambda n: ws_frames(http, base, n, tallies["web"], frames),
            lambda n: ws_queries(http, base, n, tallies["web"]),
            lambda n: raw_http(web_port, tallies["web"]),
        ]
        if not args.web_only:
            server = RedisServer(tmp / "redis").start()
            stack.callback(server.stop)
            fake_tg = await stack.enter_async_context(FakeTelegram())
            fake_slack = await FakeSlack().start()
            stack.push_async_callback(fake_slack.close)
            tg_port, slack_port = free_port(), free_port()
            tg_url = f"http://{HOST}:{tg_port}/telegram"
            env = {"PARLEY_REDIS_URL": server.url}
            procs.append(
                start(
                    "telegram",
                    ["telegram"],
                    {
                        **env,
                        "PARLEY_TELEGRAM_TOKEN": fake_tg.token,
                        "PARLEY_TELEGRAM_API_URL": fake_tg.api_url,
                        "PARLEY_TELEGRAM_MODE": "webhook",
                        "PARLEY_TELEGRAM_WEBHOOK_URL": tg_url,
                        "PARLEY_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "PARLEY_TELEGRAM_PORT": str(tg_port),
                    },
                    tmp,
                )
            )
            procs.append(
                start(
                    "slack",
                    ["slack"],
                    {
                        **env,
                        "PARLEY_SLACK_BOT_TOKEN": fake_slack.bot_token,
                        "PARLEY_SLACK_SIGNING_SECRET": SIGNING_SECRET,
                        "PARLEY_SLACK_API_URL": fake_slack.api_url,
                        "PARLEY_SLACK_PORT": str(slack_port),
                    },
                    tmp,
                )
            )
            slack_url = f"http://{HOST}:{slack_port}/slack/events"
            tallies["telegram"], tallies["slack"] = Tally(), Tally()
            attacks += [
                lambda n: telegram_webhook(http, tg_url, fake_tg, n, tallies["telegram"]),
                lambda n: slack_request(http, slack_url, n, tallies["slack"]),
            ]
            extra = [
                (procs[1], f"http://{HOST}:{tg_port}"),
                (procs[2], f"http://{HOST}:{slack_port}"),
            ]
        for proc, url in [(procs[0], base), *extra]:
            await ready(http, url, proc)
        for proc in procs:
            proc.sample()
        print(f"# storm for {args.seconds:.0f} s or {args.inputs} inputs, {args.clients} clients")

        stop = asyncio.Event()
        acks: list[float] = []
        answers: list[float] = []
        calm = asyncio.create_task(person(base, stop, acks, answers))
        held: list[float] = []
        slow = [
            asyncio.create_task(slowloris(web_port, args.seconds, held))
            for _ in range(args.slowloris)
        ]
        deadline = time.monotonic() + args.seconds
        counter = iter(range(10**9))

        def sent() -> int:
            return sum(t.inputs for t in tallies.values())

        async def attacker() -> None:
            while time.monotonic() < deadline and sent() < args.inputs:
                await random.choice(attacks)(next(counter))

        async def sampler() -> None:
            while not stop.is_set():
                for proc in procs:
                    proc.sample()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

        sampling = asyncio.create_task(sampler())
        started = time.monotonic()
        await asyncio.gather(*(attacker() for _ in range(args.clients)))
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(calm, sampling, *slow)
        await asyncio.sleep(2)
        for proc in procs:
            proc.sample()
        report(procs, tallies, elapsed, held, acks, answers, args)
        for proc in procs:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
                proc.proc.wait(60)


def report(
    procs: list[Proc],
    tallies: dict[str, Tally],
    elapsed: float,
    held: list[float],
    acks: list[float],
    answers: list[float],
    args: argparse.Namespace,
) -> None:
    rows: list[tuple[str, ...]] = []
    for proc, (platform, tally) in zip(procs, tallies.items(), strict=True):
        log = proc.log.read_text(errors="replace")
        running = proc.proc.poll() is None
        fives = sum(n for code, n in tally.statuses.items() if code >= 500)
        rows.append(
            (
                f"parley {proc.name}",
                str(tally.inputs),
                "yes" if running else f"NO (exit {proc.proc.returncode})",
                str(fives),
                str(log.count("Traceback")),
                str(sum(1 for line in log.splitlines() if '"ERROR"' in line)),
                f"{len(log) / 1024:.0f}",
                " / ".join(str(proc.rss[round(q * (len(proc.rss) - 1))]) for q in QUARTERS),
            )
        )
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
        errors = ", ".join(f"{kind}: {n}" for kind, n in tally.errors.most_common())
        print(f"{platform}: answers {statuses or '-'}; client-side errors {errors or '-'}")
    print(f"({elapsed:.0f} s)")
    for proc in procs:
        print(f"{proc.name}: most frequent log lines: {frequent(proc.log)}")
    print(
        table(
            rows,
            (
                "process",
                "hostile inputs",
                "running",
                "5xx",
                "tracebacks",
                "ERROR lines",
                "log KB",
                "RSS MB at 0/25/50/75/100% of the storm",
            ),
        )
    )
    if held:
        print(
            f"slowloris connections ({len(held)}): held open p50 {pct(held, 50):.1f} s, "
            f"max {max(held):.1f} s"
        )
    for what, times in (("message acknowledged", acks), ("bot answer", answers)):
        if times:
            print(
                f"ordinary person, {what}: n={len(times)}, p50 {pct(times, 50) * 1000:.1f} ms, "
                f"p99 {pct(times, 99) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
            )
        else:
            print(f"ordinary person, {what}: none")


def frequent(log: Path, top: int = 3) -> str:
    """The commonest kinds of log message (JSON lines), with their counts."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = json.loads(line)
            # words holding a digit are ids, numbers, sizes: folded, so that kinds add up
            words = str(event["message"]).split()
            message = " ".join("#" if any(c.isdigit() for c in w) else w for w in words)[:70]
            counts[f"{event['level']} {message}"] += 1
    return "; ".join(f"{n} x {message!r}" for message, n in counts.most_common(top)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--inputs", type=int, default=50_000, help="hostile inputs at most")
    parser.add_argument("--clients", type=int, default=40, help="concurrent hostile clients")
    parser.add_argument("--slowloris", type=int, default=50, help="connections held open")
    parser.add_argument("--web-only", action="store_true", help="only `parley serve`")
    parser.add_argument("--no-questions", action="store_true", help="no hostile frame asks the bot")
    parser.add_argument(
        "--memory-max-chats", type=int, default=0, help="PARLEY_MEMORY_MAX_CHATS for serve"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    print(f"# hostile clients, {machine()}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(storm(args, Path(tmp)))


if __name__ == "__main__":
    main()
