"""A worker process with a stub responder that echoes the question, for queue tests.

python -m tests.core.queue.echo_worker REDIS_URL [LEASE_SECONDS] [DELAY_SECONDS]
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Sequence

from core.queue.redis_store import RedisStore
from core.queue.types import Limits
from core.queue.worker import Worker


def main() -> None:
    url = sys.argv[1]
    lease = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0

    def respond(contexts: Sequence[Sequence[str]]) -> list[str]:
        if delay:
            time.sleep(delay)  # a batch takes a while, so kills land mid-batch
        return ["echo " + c[-1] for c in contexts]

    async def run() -> None:
        store = RedisStore.from_url(url, Limits(lease=lease, backlog=100_000, sender_rate=0))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await Worker(store, respond, batch_size=32).run(stop)
        await store.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
