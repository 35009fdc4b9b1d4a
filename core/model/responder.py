"""Replies for many conversations at once, from a model directory."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.model import artifact
from core.model.batches import pad
from core.model.config import DecodeOptions
from core.model.tokenizer import EOS, PAD


class Responder:
    """A loaded model that turns conversation contexts into replies.

    Each context is the conversation's recent turns, oldest first; the last one is the
    message being answered. Thread-safe: one decode runs at a time.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        meta: artifact.ModelMeta,
        options: DecodeOptions | None = None,
        max_batch: int = 64,
        jit: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.options = options or meta.decoding
        self.max_batch = max_batch
        self.jit = jit  # XLA: several times faster per token on a CPU; see `_padded`
        self._decoders: dict[tuple[int, int, float, int], Any] = {}
        self._content_mask = tokenizer.content_mask()
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()

    @classmethod
    def load(
        cls, directory: Path, options: DecodeOptions | None = None, warm_up: bool = True
    ) -> Responder:
        model, tokenizer, meta = artifact.load_model(Path(directory))
        responder = cls(model, tokenizer, meta, options)
        if warm_up:  # trace the decode graph now, not on the first user's message
            responder.reply([["hello"]])
        return responder

    def compile_shapes(self, batch_sizes: Sequence[int]) -> None:
        """Compile the decoder for these batch sizes at every context length now, so that
        no user waits for XLA (a second or two per new shape) later."""
        longest = self.meta.config.max_context_tokens
        for rows in batch_sizes:
            for cols in range(16, max(longest, 16) + 1, 16):
                self.generate_ids(np.full((rows, cols), EOS, np.int32), self.options)

    def decoder(self, options: DecodeOptions) -> Any:
        from core.model.decoding import Decoder

        key = (
            options.no_repeat_ngram,
            options.beam_width,
            options.length_penalty,
            options.min_length,
        )
        if key not in self._decoders:
            self._decoders[key] = Decoder(self.model, self._content_mask, options, self.jit)
        return self._decoders[key]

    def _padded(self, source: np.ndarray) -> np.ndarray:
        """With XLA, each input shape compiles once: round rows up to a power of two and
        columns to a multiple of 16, so a few shapes serve every batch."""
        if not self.jit:
            return source
        rows, cols = source.shape
        out = np.full((1 << (rows - 1).bit_length(), -(-cols // 16) * 16), PAD, np.int32)
        out[:rows, :cols] = source
        out[rows:, 0] = EOS  # filler rows: a one-token context
        return out

    def encode(self, contexts: Sequence[Sequence[str]]) -> np.ndarray:
        config = self.meta.config
        rows = [
            self.tokenizer.encode_context(
                list(c)[-config.context_turns :], config.max_context_tokens
            )
            for c in contexts
        ]
        return pad([np.asarray(r or [EOS], np.int32) for r in rows])

    def generate_ids(self, source: np.ndarray, options: DecodeOptions) -> np.ndarray:
        """Token ids [B, max_length] for an encoded batch."""
        import tensorflow as tf

        decoder = self.decoder(options)
        src = tf.constant(self._padded(source))
        length = tf.constant(options.max_length, tf.int32)
        with self._lock:
            if options.method == "greedy":
                out = decoder.greedy(src, length)
            elif options.method == "beam":
                out = decoder.beam(src, length)
            else:
                out = decoder.sample(
                    src,
                    length,
                    tf.constant(options.temperature, tf.float32),
                    tf.constant(options.top_p, tf.float32),
                    tf.constant(options.seed or self._rng.integers(1, 2**31 - 1), tf.int32),
                )
        return out.numpy()[: len(source)]

    def ids_to_text(self, row: np.ndarray) -> str:
        ids = [int(i) for i in row]
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        return str(self.tokenizer.decode(i for i in ids if i != PAD))

    def reply(self, contexts: Sequence[Sequence[str]], **overrides: Any) -> list[str]:
        """One reply per context; `overrides` change decoding options for this call."""
        options = dataclasses.replace(self.options, **overrides) if overrides else self.options
        replies: list[str] = []
        for start in range(0, len(contexts), self.max_batch):
            ids = self.generate_ids(self.encode(contexts[start : start + self.max_batch]), options)
            replies.extend(self.ids_to_text(row) for row in ids)
        return replies
