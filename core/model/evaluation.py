"""`parley eval`: held-out perplexity and reply-quality metrics of a model directory."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import metrics
from core.corpora import Conversation, Example, Split, examples_from, load_corpus
from core.errors import CorpusError
from core.model import artifact
from core.model.batches import encode_examples
from core.model.responder import Responder
from core.text import words as text_words

EVAL_FILE = "eval.json"
WORDS = 50_000  # diversity figures are taken over this many generated words

ReplyFn = Callable[[list[tuple[str, ...]]], list[str]]


def held_out(split: Split, conversations: list[Conversation], turns: int) -> list[Example]:
    """Test examples, then validation examples: contexts to answer until a system has
    written enough words (short replies need more contexts)."""
    return [
        ex
        for part in ("test", "valid")
        for ex in examples_from(split.part(conversations, part), turns)
    ]


def answer_until(
    reply: ReplyFn, examples: Sequence[Example], words: int, chunk: int = 256
) -> list[str]:
    """Replies to `examples` in order until they hold `words` words (or the examples end)."""
    replies: list[str] = []
    total = 0
    for start in range(0, len(examples), chunk):
        for text in reply([ex.context for ex in examples[start : start + chunk]]):
            replies.append(text)
            total += len(text_words(text))
            if total >= words:
                return replies
    return replies


def reply_metrics(
    replies: Sequence[str], references: Sequence[str], words: int = WORDS
) -> dict[str, Any]:
    """Diversity over the first `words` words; length and BLEU-2 over every reply."""
    text = metrics.first_words(replies, words)
    return {
        "replies": len(replies),
        "words": sum(len(t.split()) for t in text),
        "distinct_1": metrics.distinct(text, 1),
        "distinct_2": metrics.distinct(text, 2),
        "repeated_2gram_rate": metrics.repeated_ngram_rate(text, 2),
        "blandness_top10": metrics.blandness(text),
        "average_length": metrics.average_length(replies),
        "reference_average_length": metrics.average_length(references[: len(replies)]),
        "bleu_2": metrics.bleu2(replies, references[: len(replies)]),
        "embedding_similarity": meaning_similarity(replies, references[: len(replies)]),
        "mid_sentence": metrics.mid_sentence(replies),
    }


RankFn = Callable[[tuple[str, ...], list[Example]], np.ndarray]
HITS_EXAMPLES = 500  # test contexts ranked for hits@1
HITS_CANDIDATES = 20


def hits_at_1(
    rank: RankFn,
    examples: Sequence[Example],
    count: int = HITS_EXAMPLES,
    seed: int = 0,
    candidates: int = HITS_CANDIDATES,
) -> float:
    """Hits@1 of 20: how often a system's own scorer ranks the true reply first among it
    and 19 replies to other held-out contexts (ties count as misses)."""
    rng = np.random.default_rng(seed)
    examples = list(examples)
    picked = rng.choice(len(examples), size=min(count, len(examples)), replace=False)
    hits = 0
    for i in picked:
        others = rng.choice(len(examples) - 1, size=candidates - 1, replace=False)
        pool = [examples[i]] + [examples[j + (j >= i)] for j in others]
        scores = np.asarray(rank(examples[i].context, pool))
        hits += bool(scores[0] > scores[1:].max())
    return hits / len(picked) if len(picked) else 0.0


def responder_rank(responder: Responder) -> RankFn:
    """Rank candidates as the responder ranks its own: match plus mutual information. A
    held-out reply's match comes from its own words alone, since the message it answered
    would give the true reply away (it is the message being answered)."""
    from core.model.responder import Candidate

    def rank(context: tuple[str, ...], pool: list[Example]) -> np.ndarray:
        turns = list(context)[-responder.meta.config.context_turns :]
        similar = (
            responder.index.similarity(turns, [("", ex.reply) for ex in pool])
            if responder.index is not None
            else np.zeros(len(pool))
        )
        candidates = [Candidate(ex.reply, float(s)) for ex, s in zip(pool, similar, strict=True)]
        return responder.rank([turns], [candidates])[0]

    return rank


def likelihood_rank(responder: Responder) -> RankFn:
    """Rank candidates by the model's per-token log p(reply | context) alone."""

    def rank(context: tuple[str, ...], pool: list[Example]) -> np.ndarray:
        return responder.log_probs(responder.encode([context]), [ex.reply for ex in pool])

    return rank


def meaning_similarity(replies: Sequence[str], references: Sequence[str]) -> float | None:
    """Mean GloVe embedding-average cosine of replies to references; None without GloVe."""
    from core.embeddings import WordVectors
    from core.errors import ParleyError

    try:
        vectors = WordVectors.glove()
    except ParleyError:
        return None
    return vectors.mean_similarity(replies, references)


def perplexity(model: Any, tokenizer: Any, examples: Sequence[Example]) -> tuple[float, int]:
    """Token perplexity of a model (full softmax) over examples, and how many were scored."""
    from core.model.training import make_eval_step, mean_loss

    encoded = encode_examples(tokenizer, examples, model.config)
    return math.exp(mean_loss(make_eval_step(model), encoded)), len(encoded)


def seeded(responder: Responder, generate: bool = False) -> ReplyFn:
    """`responder.reply` (or, with `generate`, the decoder alone) with a fixed seed per
    call, so that sampled figures repeat."""
    calls = itertools.count(responder.options.seed or 1)
    answer = responder.generate if generate else responder.reply
    return lambda contexts: answer(contexts, seed=next(calls))


def evaluate(
    directory: Path,
    responder: Responder | None = None,
    max_examples: int | None = None,
    words: int = WORDS,
    samples: int = 6,
) -> dict[str, Any]:
    """Perplexity on the test split saved with the model, and reply metrics over `words`
    generated words (test contexts first); writes eval.json beside the model."""
    directory = Path(directory)
    meta = responder.meta if responder else artifact.read_meta(directory)
    config = meta.config
    split = artifact.load_split(directory)
    conversations = load_corpus(meta.corpus)
    test = examples_from(split.part(conversations, "test"), config.context_turns)
    if not test:
        saved = f"{directory / artifact.SPLIT} names {len(split.test)} test conversation(s)"
        raise CorpusError(
            meta.corpus,
            f"no test example to measure: {saved} and this corpus holds none of them "
            "(has it changed since the model was trained?)",
        )
    responder = responder or Responder.load(directory, warm_up=False)
    ppl, scored = perplexity(responder.model, responder.tokenizer, test[:max_examples])  # None: all
    hits = hits_at_1(responder_rank(responder), test)
    contexts = held_out(split, conversations, config.context_turns)
    started = time.perf_counter()
    replies = answer_until(seeded(responder), contexts, words)
    seconds = time.perf_counter() - started
    shown = list(zip(test, replies, strict=False))
    result = {
        "model": str(directory),
        "decoding": responder.options.to_dict(),
        "test_examples": scored,
        "perplexity": ppl,
        "hits_at_1": hits,
        **reply_metrics(replies, [ex.reply for ex in contexts], words),
        "replies_per_second": len(replies) / seconds,
        "samples": [  # spread over the test conversations
            {"context": list(ex.context), "reference": ex.reply, "reply": reply}
            for ex, reply in shown[:: max(1, len(shown) // samples)][:samples]
        ],
    }
    (directory / EVAL_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _maybe(value: float | None) -> str:
    return "n/a (pip install -e '.[eval]')" if value is None else f"{value:.3f}"


def format_table(result: dict[str, Any]) -> str:
    rows = [
        ("perplexity (test)", f"{result['perplexity']:.1f}"),
        ("hits@1 of 20 (test)", f"{result['hits_at_1']:.1%}"),
        ("embedding similarity to reference", _maybe(result["embedding_similarity"])),
        ("replies cut mid-sentence", f"{result['mid_sentence']:.1%}"),
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
        f"{result['model']}: perplexity over {result['test_examples']} test examples, "
        f"{result['replies']} replies ({result['words']} words) by {result['decoding']['method']}"
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines.append("samples:")
    for s in result["samples"]:
        lines.append(f"  context:   {' | '.join(s['context'])}")
        lines.append(f"  reference: {s['reference']}")
        lines.append(f"  parley:    {s['reply']}")
        lines.append("")
    return "\n".join(lines)
