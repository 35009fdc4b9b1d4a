from __future__ import annotations

import numpy as np

from core.corpora.types import Example
from core.model.batches import Encoded, bucketed, by_length, encode_examples, make_batch
from core.model.config import ModelConfig
from core.model.tokenizer import BOS, EOS, PAD, Tokenizer


def random_data(n: int = 2000, seed: int = 0) -> Encoded:
    rng = np.random.default_rng(seed)
    sources = [rng.integers(5, 100, rng.integers(1, 64)).astype(np.int32) for _ in range(n)]
    targets = [
        np.append(rng.integers(5, 100, rng.integers(1, 31)), EOS).astype(np.int32) for _ in range(n)
    ]
    return Encoded(sources, targets)


def test_bucketed_covers_every_example_once_within_budget() -> None:
    data = random_data()
    batches = bucketed(data, batch_tokens=3000, max_batch=64, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(data)))
    for batch in batches:
        src, _, tout = make_batch(data, batch)
        assert len(batch) <= 64
        assert len(batch) == 1 or len(batch) * (src.shape[1] + tout.shape[1]) <= 3000


def test_bucketing_saves_padding_and_is_seeded() -> None:
    data = random_data()
    batches = bucketed(data, batch_tokens=3000, max_batch=64, seed=1)
    assert batches == bucketed(data, batch_tokens=3000, max_batch=64, seed=1)
    assert batches != bucketed(data, batch_tokens=3000, max_batch=64, seed=2)
    real = sum(len(s) + len(t) for s, t in zip(data.sources, data.targets, strict=True))
    padded = sum(sum(x.size for x in make_batch(data, b)[::2]) for b in batches)
    assert real / padded > 0.7  # fixed padding to 64 + 31 would be about 0.5


def test_make_batch_shifts_the_target() -> None:
    data = Encoded([np.array([7, 8], np.int32)], [np.array([9, 10, EOS], np.int32)])
    src, tin, tout = make_batch(data, [0])
    assert src.tolist() == [[7, 8]]
    assert tin.tolist() == [[BOS, 9, 10]] and tout.tolist() == [[9, 10, EOS]]


def test_by_length_yields_everything_once() -> None:
    data = random_data(300)
    assert sorted(i for b in by_length(data, 32) for i in b) == list(range(300))


def test_encode_examples_respects_lengths() -> None:
    tok = Tokenizer.train(["hello there how are you", "fine thanks and you"] * 20, 300)
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_context_tokens=5, max_reply_tokens=4, context_turns=2
    )
    ex = Example(
        ("a b c", "hello there how are you", "fine thanks"), "hello there how are you", "c"
    )
    data = encode_examples(tok, [ex], config)
    assert len(data.sources[0]) == 5 and data.targets[0][-1] == EOS
    assert len(data.targets[0]) == 4 and PAD not in data.targets[0]
    # only the last two turns are seen, cut from the left
    assert data.sources[0].tolist() == tok.encode_context(list(ex.context[-2:]), 5)
