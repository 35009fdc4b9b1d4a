"""Queue throughput and overhead on a private redis-server, beside redis-benchmark.

- messages/s through inbox -> worker (stub responder) -> outbox, with 1 and 4 worker
  processes, 200 chats x 50 messages;
- p50/p99 queue overhead per message (enqueue until the reply is readable, stub
  responder, one message at a time, so no waiting behind others);
- redis-benchmark's raw LPUSH rate on the same server: the ceiling;
- with --model: replies/s through one `parley worker` at batch 32 against the model's own
  batch-32 rate.

    .venv/bin/python -m bench.queue [--model models/default]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_MODEL, REPO, machine, pct, table
from core.messages import ChatKey, Incoming
from core.queue.redis_store import RedisStore
from core.queue.types import Limits, SendLimits
from support.redis_server import RedisServer

LIMITS = Limits(backlog=100_000, sender_rate=0)


def redis_benchmark(server: RedisServer) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-s", str(server.socket), "-t", "lpush", "-n", "200000", "-q"],
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"LPUSH: ([\d.]+) requests per second", out)
    return float(found.group(1)) if found else float("nan")


def workers(url: str, n: int, cmd: list[str] | None = None) -> list[subprocess.Popen[bytes]]:
    cmd = cmd or [sys.executable, "-m", "tests.core.queue.echo_worker", url]
    env = {**os.environ, "PARLEY_REDIS_URL": url}
    return [subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL) for _ in range(n)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


async def answered(store: RedisStore, chats: list[ChatKey]) -> int:
    async with store.redis.pipeline(transaction=False) as pipe:
        for c in chats:
            pipe.llen(store.keys.outbox(c))
        return sum(await pipe.execute())


def messages(chats: int, per_chat: int, text: str = "m") -> list[Incoming]:
    """Every chat's messages in order, the chats interleaved."""
    return [
        Incoming(ChatKey("bench", f"c{c}"), "b", f"{text} {n}", f"{c}-{n}")
        for n in range(per_chat)
        for c in range(chats)
    ]


async def enqueue_rate(server: RedisServer, n: int = 10_000) -> float:
    """Messages/s one producer process enqueues, in pipelined batches of 100."""
    server.flush()
    store = RedisStore.from_url(server.url, LIMITS)
    batch = messages(n // 50, 50)
    start = time.perf_counter()
    for i in range(0, len(batch), 100):
        await store.enqueue_all(batch[i : i + 100])
    elapsed = time.perf_counter() - start
    await store.close()
    return n / elapsed


async def through(
    server: RedisServer,
    n_workers: int,
    chats: int = 200,
    per_chat: int = 50,
    cmd: list[str] | None = None,
    text: str = "m",
) -> float:
    """Messages/s from inbox to outbox, from the moment the workers find a full inbox."""
    server.flush()
    store = RedisStore.from_url(server.url, LIMITS)
    keys = [ChatKey("bench", f"c{i}") for i in range(chats)]
    procs = workers(server.url, n_workers, cmd)
    # Wait until every worker is up and idle (it answers a probe), then fill the inbox.
    # A model worker compiles its decoder for its batch sizes before it answers.
    probes = [ChatKey("bench", f"probe{i}") for i in range(n_workers)]
    await store.enqueue_all([Incoming(p, "b", "hello", "probe") for p in probes])
    while await answered(store, probes) < n_workers:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    start = time.perf_counter()
    batch = messages(chats, per_chat, text)
    for i in range(0, len(batch), 500):
        await store.enqueue_all(batch[i : i + 500])
    while await answered(store, keys) < chats * per_chat:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop(procs)
    await store.close()
    return chats * per_chat / elapsed


async def overhead(server: RedisServer, samples: int = 400) -> list[float]:
    """Seconds from enqueue until the reply can be read from the outbox, one at a time.

    The reply is polled as fast as the client goes, so this includes a poll's round trip.
    """
    server.flush()
    store = RedisStore.from_url(server.url, LIMITS)
    procs = workers(server.url, 1)
    await asyncio.sleep(3)  # started and idle
    chat = ChatKey("bench", "solo")
    out = []
    for n in range(samples + 20):
        start = time.perf_counter()
        await store.enqueue(Incoming(chat, "b", "m", f"o{n}"))
        while not await store.replies(chat):
            pass
        elapsed = time.perf_counter() - start
        # Sent: the reply leaves the outbox as a sender's would.
        (pending,) = await store.claim_replies("bench", 1, 10, 60.0, "bench")
        await store.ack_replies(pending, [f"o{n}"], 1, SendLimits())
        await store.finish_replies(pending, SendLimits())
        if n >= 20:  # warm-up
            out.append(elapsed)
        await asyncio.sleep(0.002)  # the worker goes back to waiting for work
    stop(procs)
    await store.close()
    return out


def model_rate(model: Path, batch: int = 32, repeat: int = 5) -> float:
    from core.model.responder import Responder

    responder = Responder.load(model)
    # Contexts like the worker's: the question, an answer, and the next question.
    answer = "I'm doing well! I just got back from work, what about you?"
    contexts = [
        [f"how are you doing today {i}", answer, f"how are you doing today {i + 1}"]
        for i in range(batch)
    ]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        responder.reply(contexts)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"also measure a model worker (e.g. {DEFAULT_MODEL.relative_to(REPO)})",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            ceiling = redis_benchmark(server)
            producer = await enqueue_rate(server)
            one = await through(server, 1)
            four = await through(server, 4)
            over = await overhead(server)
            rows = [
                ("redis-benchmark LPUSH (50 clients), the ceiling", f"{ceiling:,.0f}", ""),
                ("enqueue, one producer process, pipelined by 100", f"{producer:,.0f}", ""),
                ("inbox -> 1 worker (stub) -> outbox", f"{one:,.0f}", ""),
                ("inbox -> 4 workers (stub) -> outbox", f"{four:,.0f}", ""),
                (
                    "queue overhead per message, one at a time",
                    "",
                    f"p50 {pct(over, 50) * 1000:.2f} ms, p99 {pct(over, 99) * 1000:.2f} ms",
                ),
            ]
            if args.model:
                own = model_rate(args.model)
                cmd = [sys.executable, "-m", "bots.cli", "worker", str(args.model)]
                served = await through(
                    server, 1, chats=64, per_chat=8, cmd=cmd, text="how are you doing today"
                )
                rows += [
                    ("model alone, batch 32", f"{own:,.1f}", ""),
                    (
                        "inbox -> parley worker (model, batch 32) -> outbox",
                        f"{served:,.1f}",
                        f"{served / own:.0%} of the model alone",
                    ),
                ]
        finally:
            server.stop()
    print(f"queue benchmark: private redis-server on a unix socket; {machine()}")
    print(table(rows, ("path", "messages/s", "latency / ratio")))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
