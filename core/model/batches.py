"""Encoded examples and length-bucketed batches (padding is what a CPU pays for most)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from core.corpora.types import Example
from core.model.config import ModelConfig
from core.model.tokenizer import BOS, EOS, PAD, Tokenizer


@dataclass(frozen=True, slots=True)
class Encoded:
    """Examples as id arrays: source (context) and target (reply + eos)."""

    sources: list[np.ndarray]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def target_tokens(self) -> int:
        return int(sum(len(t) for t in self.targets))


def encode_examples(
    tokenizer: Tokenizer, examples: Sequence[Example], config: ModelConfig
) -> Encoded:
    sources, targets = [], []
    for ex in examples:
        src = tokenizer.encode_context(
            ex.context[-config.context_turns :], config.max_context_tokens
        )
        tgt = [*tokenizer.encode(ex.reply)[: config.max_reply_tokens - 1], EOS]
        if src and len(tgt) > 1:
            sources.append(np.asarray(src, np.int32))
            targets.append(np.asarray(tgt, np.int32))
    return Encoded(sources, targets)


def pad(rows: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    width = width or max(len(r) for r in rows)
    out = np.full((len(rows), width), PAD, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:width]
    return out


Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # source, decoder input, decoder target


def make_batch(data: Encoded, index: Sequence[int]) -> Batch:
    targets = [data.targets[i] for i in index]
    inputs = [np.concatenate([[BOS], t[:-1]]).astype(np.int32) for t in targets]
    return pad([data.sources[i] for i in index]), pad(inputs), pad(targets)


def bucketed(
    data: Encoded, batch_tokens: int, max_batch: int, seed: int, pool: int = 64
) -> list[list[int]]:
    """Batches of similar lengths, in a shuffled order fixed by `seed`.

    Examples are shuffled, sorted by length inside pools of `pool` batches, cut into batches
    of about `batch_tokens` padded tokens, and the batches shuffled again.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    span = pool * max_batch
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        # Sources are the longer side: group them within 8 tokens, then by target length.
        chunk = sorted(
            order[start : start + span].tolist(),
            key=lambda i: (len(data.sources[i]) // 8, len(data.targets[i])),
        )
        current: list[int] = []
        src_len = tgt_len = 0
        for i in chunk:
            s, t = max(src_len, len(data.sources[i])), max(tgt_len, len(data.targets[i]))
            if current and (
                (s + t) * (len(current) + 1) > batch_tokens or len(current) >= max_batch
            ):
                batches.append(current)
                current = []
                s, t = len(data.sources[i]), len(data.targets[i])
            current.append(i)
            src_len, tgt_len = s, t
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def by_length(data: Encoded, batch_size: int) -> Iterator[list[int]]:
    """Every example once, in batches of similar length (for evaluation)."""
    order = sorted(range(len(data)), key=lambda i: (len(data.targets[i]), len(data.sources[i])))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
