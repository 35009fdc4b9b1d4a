"""Shared fixtures: a small synthetic corpus and a tiny model trained on it once per run."""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

TOPICS = {
    "weather": ["it is sunny today", "i think it will rain later", "the weather is cold"],
    "food": ["i love pizza with cheese", "pasta is my favourite dinner", "i had soup for lunch"],
    "music": ["i play the guitar", "jazz is great music", "i listen to rock songs"],
    "sport": ["i run every morning", "football is fun to watch", "i swim in the lake"],
}
QUESTIONS = {
    "weather": "how is the weather",
    "food": "what did you eat",
    "music": "what music do you like",
    "sport": "do you play any sport",
}


def synthetic_conversations(n: int = 240, seed: int = 0) -> list[dict[str, object]]:
    """Conversations whose replies depend on the question: a model can learn them fast."""
    rng = random.Random(seed)
    convs = []
    for i in range(n):
        topic = rng.choice(sorted(TOPICS))
        other = rng.choice(sorted(TOPICS))
        turns = [
            "hello there",
            "hi how are you",
            QUESTIONS[topic],
            rng.choice(TOPICS[topic]),
            QUESTIONS[other],
            rng.choice(TOPICS[other]),
        ]
        convs.append({"id": f"c{i}", "turns": turns})
    return convs


@pytest.fixture(scope="session")
def synthetic_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "talk.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in synthetic_conversations()) + "\n")
    return path


TINY = {
    "vocab_size": 400,
    "embed_dim": 32,
    "encoder_units": 32,
    "decoder_units": 64,
    "dropout": 0.0,
    "max_context_tokens": 32,
    "max_reply_tokens": 16,
    "sampled_softmax": 64,
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, synthetic_jsonl: Path) -> Path:
    """A tiny model trained for a few seconds on the synthetic corpus."""
    from core.model.config import ModelConfig, TrainOptions
    from core.model.training import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(
        f"jsonl:{synthetic_jsonl}",
        out,
        ModelConfig(**TINY),
        TrainOptions(epochs=20, batch_tokens=800, learning_rate=1e-2, patience=20, verbose=False),
    )
    return out


@pytest.fixture(scope="session")
def tiny_responder(tiny_model: Path):  # type: ignore[no-untyped-def]
    from core.model.responder import Responder

    return Responder.load(tiny_model, warm_up=False)


@pytest.fixture(scope="session")
def untrained_responder(tiny_model: Path):  # type: ignore[no-untyped-def]
    """The tiny model's shape and tokenizer with fresh random weights."""
    from core.model import artifact
    from core.model.responder import Responder
    from core.model.seq2seq import Seq2Seq

    meta = artifact.read_meta(tiny_model)
    model = Seq2Seq(meta.config).build_all()
    return Responder(model, artifact.load_tokenizer(tiny_model), meta)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A redis-server of our own on a unix socket, for the whole run."""
    from support.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def redis_store(redis_server):  # type: ignore[no-untyped-def]
    """A RedisStore on an emptied server."""
    from core.queue.redis_store import RedisStore

    redis_server.flush()
    store = RedisStore.from_url(redis_server.url)
    yield store
    await store.close()


class _Everything(logging.Handler):
    """Keeps every log line of the run, formatted as a log file would have it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a record that cannot be formatted is no leak
            self.lines.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secret_is_ever_logged() -> Iterator[None]:
    """Every log line of the whole run, at DEBUG, is searched for the tests' tokens and
    secrets at the end: none may appear (the run fails in teardown if one does)."""
    from support.fakes import slack_api, telegram_api

    secrets = [
        telegram_api.TOKEN,
        telegram_api.TOKEN.split(":", 1)[1],
        telegram_api.WEBHOOK_SECRET,
        slack_api.BOT_TOKEN,
        slack_api.APP_TOKEN,
        slack_api.SIGNING_SECRET,
    ]
    handler = _Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(level)
    leaks = [line for line in handler.lines if any(s in line for s in secrets)]
    assert not leaks, f"secrets in {len(leaks)} log lines, e.g.: {leaks[0][:300]}"
