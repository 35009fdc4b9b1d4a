"""Training throughput: parley's trainer against a straightforward Keras baseline.

Both train a model of the same size on the same chitchat examples; the baseline pads every
batch to the maximum lengths and computes the full softmax (Keras GRU layers, model.fit),
parley uses length-bucketed batches, its scan GRU and a sampled softmax. Throughput is
real (non-padding) reply tokens per second, the median over timed chunks of steps.

    .venv/bin/python -m bench.train [--examples 6000] [--chunks 5]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench.common import machine, table
from bench.seed_models import keras_baseline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=6000)
    ap.add_argument("--chunks", type=int, default=5, help="timed chunks per trainer")
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args()

    from core.corpora import Split, examples_from, load_corpus
    from core.model.batches import bucketed, encode_examples, make_batch, pad
    from core.model.config import ModelConfig, TrainOptions
    from core.model.seq2seq import Seq2Seq
    from core.model.tokenizer import Tokenizer
    from core.model.training import Trainer

    convs = load_corpus("chitchat")
    train_convs = Split.make(convs).part(convs, "train")
    tokenizer = Tokenizer.train((t for c in train_convs[:2000] for t in c.turns), args.vocab)
    config = ModelConfig(vocab_size=tokenizer.vocab_size)
    data = encode_examples(tokenizer, examples_from(train_convs, 3)[: args.examples], config)
    real_tokens = data.target_tokens
    rows = []

    # parley: one pass over the examples in bucketed batches, timed in chunks
    trainer = Trainer(Seq2Seq(config).build_all(), data, data, "/nonexistent", TrainOptions())
    batches = bucketed(data, 6000, 128, seed=0)
    trainer.train_step(*make_batch(data, batches[0]))  # trace
    rates = []
    per_chunk = max(1, len(batches) // args.chunks)
    for c in range(args.chunks):
        chunk = batches[c * per_chunk : (c + 1) * per_chunk]
        start, tokens = time.perf_counter(), 0
        for index in chunk:
            _, n = trainer.train_step(*make_batch(data, index))
            tokens += int(n)
        rates.append(tokens / (time.perf_counter() - start))
    ours = float(np.median(rates))

    # baseline: fixed padding, full softmax, model.fit on the same examples

    model = keras_baseline(
        config.vocab_size, config.embed_dim, config.encoder_units, config.decoder_units
    )
    src = pad(data.sources, config.max_context_tokens)
    tgt = pad(data.targets, config.max_reply_tokens)
    tin = np.concatenate([np.full((len(tgt), 1), 2, np.int32), tgt[:, :-1]], axis=1)
    batch = 6000 // (config.max_context_tokens + config.max_reply_tokens)
    model.fit([src[:batch], tin[:batch]], tgt[:batch], batch_size=batch, verbose=0)  # trace
    base_rates = []
    per = len(src) // args.chunks
    for c in range(args.chunks):
        sl = slice(c * per, (c + 1) * per)
        start = time.perf_counter()
        model.fit([src[sl], tin[sl]], tgt[sl], batch_size=batch, epochs=1, verbose=0)
        base_rates.append(int((tgt[sl] != 0).sum()) / (time.perf_counter() - start))
    base = float(np.median(base_rates))
    params = sum(int(np.prod(w.shape)) for w in trainer.model.weights)
    base_params = sum(int(np.prod(w.shape)) for w in model.weights)
    rows.append(
        (
            "Keras baseline (fixed padding, full softmax)",
            f"{base_params / 1e6:.1f}M",
            f"{base:.0f}",
            "1.0x",
        )
    )
    rows.append(
        (
            "parley (bucketed, scan GRU, sampled softmax)",
            f"{params / 1e6:.1f}M",
            f"{ours:.0f}",
            f"{ours / base:.1f}x",
        )
    )
    print(
        f"training throughput: {len(data)} chitchat examples ({real_tokens} reply tokens), "
        f"vocabulary {config.vocab_size}; {machine()}"
    )
    print(table(rows, ("trainer", "parameters", "reply tokens/s (median)", "vs baseline")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
