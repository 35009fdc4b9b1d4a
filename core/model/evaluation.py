"""`parley eval`: held-out perplexity and reply-quality metrics of a model directory."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from core import metrics
from core.corpora import examples_from, load_corpus
from core.model import artifact
from core.model.batches import encode_examples
from core.model.responder import Responder

EVAL_FILE = "eval.json"


def evaluate(
    directory: Path,
    responder: Responder | None = None,
    max_examples: int | None = None,
    max_generated: int = 500,
    samples: int = 6,
) -> dict[str, Any]:
    """Evaluate on the test split saved with the model; writes eval.json beside it."""
    from core.model.training import make_eval_step, mean_loss

    directory = Path(directory)
    responder = responder or Responder.load(directory, warm_up=False)
    config = responder.meta.config
    split = artifact.load_split(directory)
    test = examples_from(
        split.part(load_corpus(responder.meta.corpus), "test"), config.context_turns
    )
    if not test:
        raise ValueError(f"{directory}: the test split has no examples")
    encoded = encode_examples(responder.tokenizer, test[:max_examples], config)  # None: all
    loss = mean_loss(make_eval_step(responder.model), encoded)
    generated = test[:max_generated]
    started = time.perf_counter()
    # A fixed seed, so that the figures of a sampling model repeat from run to run.
    replies = responder.reply([ex.context for ex in generated], seed=responder.options.seed or 1)
    seconds = time.perf_counter() - started
    references = [ex.reply for ex in generated]
    result = {
        "model": str(directory),
        "decoding": responder.options.to_dict(),
        "test_examples": len(encoded),
        "perplexity": math.exp(loss),
        "generated": len(replies),
        "distinct_1": metrics.distinct(replies, 1),
        "distinct_2": metrics.distinct(replies, 2),
        "repeated_2gram_rate": metrics.repeated_ngram_rate(replies, 2),
        "blandness_top10": metrics.blandness(replies),
        "average_length": metrics.average_length(replies),
        "reference_average_length": metrics.average_length(references),
        "bleu_2": metrics.bleu2(replies, references),
        "replies_per_second": len(replies) / seconds,
        "samples": [  # spread over the test conversations
            {"context": list(ex.context), "reference": ex.reply, "reply": reply}
            for ex, reply in list(zip(generated, replies, strict=True))[
                :: max(1, len(generated) // samples)
            ][:samples]
        ],
    }
    (directory / EVAL_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def format_table(result: dict[str, Any]) -> str:
    rows = [
        ("perplexity (test)", f"{result['perplexity']:.1f}"),
        ("distinct-1", f"{result['distinct_1']:.3f}"),
        ("distinct-2", f"{result['distinct_2']:.3f}"),
        ("repeated 2-gram rate", f"{result['repeated_2gram_rate']:.2%}"),
        ("blandness (top-10 share)", f"{result['blandness_top10']:.2%}"),
        ("average reply length (words)", f"{result['average_length']:.1f}"),
        ("reference length (words)", f"{result['reference_average_length']:.1f}"),
        ("BLEU-2", f"{result['bleu_2']:.3f}"),
        ("replies/s (batched)", f"{result['replies_per_second']:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"{result['model']}: {result['test_examples']} test examples, "
        f"{result['generated']} generated ({result['decoding']['method']})"
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines.append("samples:")
    for s in result["samples"]:
        lines.append(f"  context:   {' | '.join(s['context'])}")
        lines.append(f"  reference: {s['reference']}")
        lines.append(f"  parley:    {s['reply']}")
        lines.append("")
    return "\n".join(lines)
