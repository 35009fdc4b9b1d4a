"""Decode speed: parley's graph decoder against the seed recipe (a predict() per token),
then the whole responder as it answers people.

The first table: p50/p95 latency at batch 1 and replies/s at batch 32, for greedy, beam
search and sampling, every reply forced to the same length so that both sides produce
the same number of tokens. The second: the default responder (persona, index search,
generated candidates, the model's ranking) on everyday messages, stage by stage.

    .venv/bin/python -m bench.decode [--model models/default] [--length 16] [--repeat 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.common import DEFAULT_MODEL, machine, pct, table, timings
from bench.seed_models import seed_decode, seed_inference_models

PROMPTS = [
    "hi there! how are you doing today?",
    "what do you do for fun?",
    "i just got back from a long trip to the mountains",
    "do you like pizza?",
]
# Messages the persona does not answer, so that every one goes through the whole pipeline.
MESSAGES = [
    "i just got back from a long trip to the mountains",
    "do you like pizza?",
    "what did you do last weekend?",
    "my sister is visiting next week",
    "the new season of that show was so slow",
    "i think it's going to rain all day",
    "i went to a concert on friday",
    "we should get lunch sometime",
    "i can't decide what to cook tonight",
    "have you ever been to the beach?",
    "work was so busy today",
    "what's the best book you've read?",
]


def responder_rows(responder, repeat: int) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """The default responder at batch 1 and 32, and what its stages cost at batch 1."""
    contexts = [[m] for m in MESSAGES]
    options = responder.options
    responder.reply(contexts)  # loading compiled every graph; this warms the caches
    rounds = max(1, repeat // len(contexts))
    whole = [t for c in contexts for t in timings(lambda c=c: responder.reply([c]), rounds)]
    batch = [contexts[i % len(contexts)] for i in range(32)]
    b32 = timings(lambda: responder.reply(batch), max(3, repeat // 10))
    search = [
        t for c in contexts for t in timings(lambda c=c: responder.candidates(c, options), rounds)
    ]
    samples = [
        t
        for c in contexts
        for t in timings(lambda c=c: responder.generate([c] * options.samples), rounds)
    ]
    pools = [responder.candidates(c, options) for c in contexts]
    rank = [
        t
        for c, p in zip(contexts, pools, strict=True)
        for t in timings(lambda c=c, p=p: responder.rank([c], [p]), rounds)
    ]
    rows = [
        ("the whole responder", pct(whole, 50), pct(whole, 95), 32 / pct(b32, 50)),
        ("  index search", pct(search, 50), pct(search, 95), None),
        (f"  {options.samples} generated candidates", pct(samples, 50), pct(samples, 95), None),
        (
            f"  ranking ~{options.candidates + options.samples} candidates",
            pct(rank, 50),
            pct(rank, 95),
            None,
        ),
    ]
    return [
        (name, f"{p50 * 1000:.1f}", f"{p95 * 1000:.1f}", "" if rate is None else f"{rate:.0f}")
        for name, p50, p95, rate in rows
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--length", type=int, default=16, help="tokens per reply")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()

    from core.model.config import DecodeOptions
    from core.model.responder import Responder

    responder = Responder.load(args.model)
    vocab = responder.meta.config.vocab_size
    one = responder.encode([[PROMPTS[0]]])
    many = responder.encode([[PROMPTS[i % len(PROMPTS)]] for i in range(32)])
    rows = []
    encoder, decoder = seed_inference_models(vocab)
    seed_b1 = timings(
        lambda: seed_decode(encoder, decoder, one, args.length), max(3, args.repeat // 5)
    )
    seed_b32 = timings(lambda: seed_decode(encoder, decoder, many, args.length), 3)
    baseline_b1, baseline_b32 = pct(seed_b1, 50), pct(seed_b32, 50)
    rows.append(
        (
            "seed recipe: predict() per token",
            f"{baseline_b1 * 1000:.0f}",
            f"{pct(seed_b1, 95) * 1000:.0f}",
            f"{32 / baseline_b32:.1f}",
            "1x",
            "1x",
        )
    )
    for method, width in (("greedy", 1), ("beam", 4), ("sample", 1)):
        opts = DecodeOptions(
            method=method,
            beam_width=width,
            max_length=args.length,
            min_length=args.length,
            seed=1,
        )
        b1 = timings(lambda o=opts: responder.generate_ids(one, o), args.repeat)
        b32 = timings(lambda o=opts: responder.generate_ids(many, o), max(5, args.repeat // 3))
        label = f"parley {method}" + {"beam": f" (width {width})", "sample": " (top-p 0.9)"}.get(
            method, ""
        )
        rows.append(
            (
                label,
                f"{pct(b1, 50) * 1000:.1f}",
                f"{pct(b1, 95) * 1000:.1f}",
                f"{32 / pct(b32, 50):.0f}",
                f"{baseline_b1 / pct(b1, 50):.0f}x",
                f"{baseline_b32 / pct(b32, 50):.0f}x",
            )
        )
    print(
        f"decode benchmark: {args.model.name}, vocabulary {vocab}, {args.length}-token "
        f"replies; {machine()}"
    )
    print(
        table(
            rows,
            (
                "decoder",
                "batch 1 p50 ms",
                "batch 1 p95 ms",
                "batch 32 replies/s",
                "speed-up b1 (p50)",
                "speed-up b32 (p50)",
            ),
        )
    )
    print(f"\nthe responder as it answers people: {len(MESSAGES)} everyday messages")
    print(
        table(
            responder_rows(responder, args.repeat),
            ("stage", "batch 1 p50 ms", "batch 1 p95 ms", "batch 32 replies/s"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
