"""A retrieval bot, the baseline every generative chatbot has to beat.

What ChatterBot does: find the known message most like the one being answered and reply
with what was said after it. Here "most like" is TF-IDF cosine similarity over words
(`core.text.words`, so Chinese works per character) between the message being answered
and the last turn of every training context. Ties, common for short messages ("lol",
"hi"), are broken at random, which keeps the bot from always giving the same reply.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from core.corpora import Example
from core.text import words


class TfidfRetrieval:
    def __init__(self, examples: Sequence[Example], seed: int = 0) -> None:
        if not examples:
            raise ValueError("a retrieval bot needs examples to retrieve from")
        self.replies = [ex.reply for ex in examples]
        docs = [Counter(words(ex.context[-1])) for ex in examples]
        df = Counter(term for doc in docs for term in doc)
        n = len(docs)
        # scikit-learn's smoothed idf: log((1 + n) / (1 + df)) + 1
        self.idf = {term: math.log((1 + n) / (1 + count)) + 1 for term, count in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for i, doc in enumerate(docs):
            weights = {t: c * self.idf[t] for t, c in doc.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for term, w in weights.items():
                ids, values = postings[term]
                ids.append(i)
                values.append(w / norm)
        self.postings = {
            t: (np.asarray(ids, np.int64), np.asarray(values, np.float32))
            for t, (ids, values) in postings.items()
        }
        self.rng = np.random.default_rng(seed)

    def _query(self, message: str) -> dict[str, float]:
        return {t: c * self.idf[t] for t, c in Counter(words(message)).items() if t in self.idf}

    def best(self, message: str) -> int:
        """Index of the training example whose last context turn is nearest `message`."""
        scores = np.zeros(len(self.replies), np.float32)
        for term, weight in self._query(message).items():
            ids, values = self.postings[term]
            scores[ids] += weight * values  # ids are unique within a posting list
        top = np.flatnonzero(scores >= scores.max() - 1e-6)
        return int(self.rng.choice(top))

    def rank(self, context: Sequence[str], pool: Sequence[Example]) -> np.ndarray:
        """How near each candidate reply's own words are to the message being answered:
        the bot's measure, for hits@1, where a candidate's original message would give
        the true reply away."""
        query = self._query(context[-1] if context else "")
        scores = []
        for ex in pool:
            doc = {t: c * self.idf.get(t, 0.0) for t, c in Counter(words(ex.reply)).items()}
            norm = math.sqrt(sum(w * w for w in doc.values())) or 1.0
            scores.append(sum(query.get(t, 0.0) * w for t, w in doc.items()) / norm)
        return np.asarray(scores, np.float32)

    def reply(self, contexts: Sequence[Sequence[str]]) -> list[str]:
        return [self.replies[self.best(context[-1] if context else "")] for context in contexts]
