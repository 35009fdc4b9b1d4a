"""Reply-quality metrics over generated text (no TensorFlow)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from core.text import words


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct(replies: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams of all replies (Li et al. 2016)."""
    grams = [g for r in replies for g in ngrams(words(r), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(replies: Sequence[str], n: int = 2) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same reply."""
    total = repeats = 0
    for reply in replies:
        grams = ngrams(words(reply), n)
        total += len(grams)
        repeats += len(grams) - len(set(grams))
    return repeats / total if total else 0.0


def blandness(replies: Sequence[str], top: int = 10) -> float:
    """Share of replies that are one of the `top` most frequent replies."""
    if not replies:
        return 0.0
    counts = Counter(r.strip().lower() for r in replies)
    return sum(c for _, c in counts.most_common(top)) / len(replies)


def average_length(replies: Sequence[str]) -> float:
    return sum(len(words(r)) for r in replies) / len(replies) if replies else 0.0


def first_words(replies: Sequence[str], count: int) -> list[str]:
    """The replies up to `count` words in all (the last one cut short), as lower-case words
    joined by spaces: diversity figures depend on how much text they are taken over, so
    systems are compared on the same amount."""
    out: list[str] = []
    left = count
    for reply in replies:
        if left <= 0:
            break
        w = words(reply)[:left]
        out.append(" ".join(w))
        left -= len(w)
    return out


# Words a sentence does not end on: a reply stopping on one was cut off ("...the other
# reason I"). Only words that cannot close a sentence count: "I do", "yes I am", "I think
# so" and "who with?" are whole, and a reply without a final mark can be whole too.
DANGLING = frozenset(
    {"a", "an", "the", "and", "but", "or", "nor", "because", "of", "to", "from", "than"}
    | {"my", "your", "our", "their", "its", "i", "i'm", "whose"}
)


def mid_sentence(replies: Sequence[str]) -> float:
    """Share of replies that stop on a word no sentence ends with, or on a comma."""
    cut = 0
    for reply in replies:
        text = reply.rstrip()
        tail = words(text)[-1:] if text else []
        cut += bool(text) and (text[-1] in ",;:-" or (bool(tail) and tail[0] in DANGLING))
    return cut / len(replies) if replies else 0.0


def bleu2(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with uniform 1- and 2-gram weights and add-one smoothing on 2-grams."""
    matches, totals = [0, 0], [0, 0]
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = words(hyp), words(ref)
        hyp_len += len(h)
        ref_len += len(r)
        for n in (1, 2):
            hc, rc = Counter(ngrams(h, n)), Counter(ngrams(r, n))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if not hyp_len or not matches[0]:
        return 0.0
    p1 = matches[0] / totals[0]
    p2 = (matches[1] + 1) / (totals[1] + 1)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.sqrt(p1 * p2)
