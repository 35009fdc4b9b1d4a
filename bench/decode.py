"""Decode speed: parley's graph decoder against the seed recipe (a predict() per token).

Prints p50/p95 latency at batch 1 and replies/s at batch 32, for greedy and beam search,
every reply forced to the same length so that both sides produce the same number of tokens.

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
