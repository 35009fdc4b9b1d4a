"""Candidate replies: what people said after a message like this one.

A TF-IDF index over the messages of a corpus (the turn each stored reply answered).
`search` returns, for a conversation, the stored replies whose messages are nearest to
the conversation's last turn, with earlier turns counted at a lower weight so that a
follow-up ("what kind?") still finds replies on the earlier topic. Chinese and Japanese
are matched per character, everything else per word.

Saved in the model directory as `index.npz` (format version `VERSION`): the vocabulary,
idf weights, one posting list per term and the replies as one UTF-8 blob. Each reply
also carries its unconditional score (`prior`), set by the responder's scorer when the
index is built, so that reranking pays only for the conditional pass.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ModelFormatError

FILE = "index.npz"
VERSION = 1
CONTEXT_WEIGHT = 0.3  # an earlier turn's words count this much, halving per turn back
REPLY_WEIGHT = 0.5  # a stored reply's own words count this much towards finding it

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TERM = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:'[^\W{_CJK}]+)*")


def terms(text: str) -> list[str]:
    """Words in lower case without punctuation; one term per CJK character."""
    return _TERM.findall(text.lower().replace("’", "'"))


def script(ch: str) -> str | None:
    """The writing system of a letter ("LATIN", "CJK", "CYRILLIC", ...), None otherwise."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if not name:
        return None
    first = name.split()[0]
    return "CJK" if first in {"CJK", "HIRAGANA", "KATAKANA"} else first


def scripts_of(texts: Iterable[str], share: float = 0.01) -> frozenset[str]:
    """The scripts that hold at least `share` of the letters in `texts`."""
    counts = Counter(s for text in texts for s in map(script, text) if s)
    total = sum(counts.values()) or 1
    return frozenset(s for s, n in counts.items() if n / total >= share)


@dataclass(frozen=True, slots=True)
class Hit:
    """One candidate: the stored reply's position, its text and its match score."""

    position: int
    text: str
    similarity: float


def _term_frequencies(message: str, reply: str, reply_weight: float) -> dict[str, float]:
    """A stored pair's words with their (sublinear) weights, reply words discounted."""
    doc: dict[str, float] = {}
    for text, weight in ((message, 1.0), (reply, reply_weight)):
        for term, count in Counter(terms(text)).items():
            doc[term] = doc.get(term, 0.0) + weight * (1 + math.log(count))
    return doc


def _pack(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in encoded])
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def _unpack(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = blob.tobytes()
    return [data[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


class ReplyIndex:
    """Stored (message, reply) pairs, searchable by message."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        idf: np.ndarray,
        pointers: np.ndarray,
        documents: np.ndarray,
        weights: np.ndarray,
        replies: Sequence[str],
        prior: np.ndarray | None = None,
        scripts: frozenset[str] = frozenset(),
        background: ReplyIndex | None = None,
        reply_weight: float = REPLY_WEIGHT,
    ) -> None:
        self.vocabulary = {term: i for i, term in enumerate(vocabulary)}
        self.idf = idf
        self.pointers = pointers
        self.documents = documents
        self.weights = weights
        self.replies = list(replies)
        self.prior = np.zeros(len(self.replies), np.float32) if prior is None else prior
        self.scripts = scripts
        # Where a small index (a persona's questions) learns how common a word is that it
        # has never seen: a large index of the same language.
        self.background = background
        self.reply_weight = reply_weight

    def __len__(self) -> int:
        return len(self.replies)

    @classmethod
    def build(
        cls,
        pairs: Iterable[tuple[str, str]],
        background: ReplyIndex | None = None,
        reply_weight: float = REPLY_WEIGHT,
    ) -> ReplyIndex:
        """Index (message, reply) pairs; a pair repeated word for word is kept once.

        A pair is found by its message's words and, at `reply_weight`, its reply's: a reply
        that takes up the words of the message being answered is usually on its topic. With
        a `background` index, words weigh by how common they are there.
        """
        seen: set[tuple[str, str]] = set()
        docs: list[dict[str, float]] = []
        replies: list[str] = []
        for message, reply in pairs:
            if not reply or (message, reply) in seen or not terms(message):
                continue
            seen.add((message, reply))
            docs.append(_term_frequencies(message, reply, reply_weight))
            replies.append(reply)
        if not replies:
            raise ValueError("no (message, reply) pair with words to index")
        df = Counter(term for doc in docs for term in doc)
        vocabulary = sorted(df)
        ids = {t: i for i, t in enumerate(vocabulary)}
        n = len(docs)
        # scikit-learn's smoothed idf: log((1 + n) / (1 + df)) + 1
        idf = np.array(
            [
                background.rarity(t) if background else math.log((1 + n) / (1 + df[t])) + 1
                for t in vocabulary
            ],
            np.float32,
        )
        postings: list[list[tuple[int, float]]] = [[] for _ in vocabulary]
        for d, doc in enumerate(docs):
            w = {ids[t]: tf * float(idf[ids[t]]) for t, tf in doc.items()}
            norm = math.sqrt(sum(v * v for v in w.values()))
            for term, value in w.items():
                postings[term].append((d, value / norm))
        pointers = np.zeros(len(vocabulary) + 1, np.int64)
        pointers[1:] = np.cumsum([len(p) for p in postings])
        documents = np.array([d for p in postings for d, _ in p], np.int32)
        weights = np.array([v for p in postings for _, v in p], np.float32)
        scripts = scripts_of(replies)
        return cls(
            vocabulary,
            idf,
            pointers,
            documents,
            weights,
            replies,
            None,
            scripts,
            background,
            reply_weight,
        )

    def rarity(self, term: str) -> float:
        """A word's idf; a word never seen is as rare as the rarest (or the background's)."""
        i = self.vocabulary.get(term)
        if i is not None:
            return float(self.idf[i])
        if self.background is not None:
            return self.background.rarity(term)
        return float(self.idf.max()) if len(self.idf) else 1.0

    def query_vector(self, turns: Sequence[str]) -> dict[int, float]:
        """The conversation as a unit-length term vector, the last turn weighing most.

        Words the index has never seen count in the length as the rarest words do, so a
        message that only half matches a stored one scores half, not fully.
        """
        vector: dict[int, float] = {}
        unseen = 0.0
        weight = 1.0
        for turn in reversed(turns):
            for term, count in Counter(terms(turn)).items():
                value = weight * (1 + math.log(count))
                i = self.vocabulary.get(term)
                if i is None:
                    unseen += (value * self.rarity(term)) ** 2
                else:
                    vector[i] = vector.get(i, 0.0) + value * float(self.idf[i])
            weight = CONTEXT_WEIGHT if weight == 1.0 else weight / 2
        norm = math.sqrt(sum(v * v for v in vector.values()) + unseen)
        return {i: v / norm for i, v in vector.items()} if norm else {}

    def search(self, turns: Sequence[str], k: int) -> list[Hit]:
        """The `k` stored replies whose messages are nearest the conversation, best first."""
        query = self.query_vector(turns)
        if not query:
            return []
        scores = np.zeros(len(self.replies), np.float32)
        for term, value in query.items():
            lo, hi = self.pointers[term], self.pointers[term + 1]
            scores[self.documents[lo:hi]] += self.weights[lo:hi] * value  # unique documents
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(int(d), self.replies[d], float(scores[d])) for d in top if scores[d] > 0]

    def similarity(self, turns: Sequence[str], pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """`search`'s score for (message, reply) pairs that need not be in the index."""
        query = self.query_vector(turns)
        out = np.zeros(len(pairs), np.float32)
        for n, (message, reply) in enumerate(pairs):
            doc = _term_frequencies(message, reply, self.reply_weight)
            weights = {t: tf * self.rarity(t) for t, tf in doc.items()}
            norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
            out[n] = (
                sum(
                    query.get(self.vocabulary[t], 0.0) * v
                    for t, v in weights.items()
                    if t in self.vocabulary
                )
                / norm
            )
        return out

    def save(self, path: Path) -> None:
        vocab_blob, vocab_offsets = _pack(list(self.vocabulary))
        reply_blob, reply_offsets = _pack(self.replies)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            version=np.array(VERSION),
            vocab_blob=vocab_blob,
            vocab_offsets=vocab_offsets,
            idf=self.idf,
            pointers=self.pointers,
            documents=self.documents,
            weights=self.weights.astype(np.float16),
            reply_blob=reply_blob,
            reply_offsets=reply_offsets,
            prior=self.prior.astype(np.float32),
            scripts=np.array(sorted(self.scripts), dtype=str),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ReplyIndex:
        if not path.is_file():
            raise ModelFormatError(f"{path}: reply index is missing (build it: parley index)")
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["version"])
                if version != VERSION:
                    raise ModelFormatError(
                        f"{path}: reply index format version {version}; this parley reads "
                        f"version {VERSION}. Rebuild it with `parley index`."
                    )
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFormatError(f"{path}: corrupt reply index ({exc})") from None
        try:
            replies = _unpack(arrays["reply_blob"], arrays["reply_offsets"])
            index = cls(
                _unpack(arrays["vocab_blob"], arrays["vocab_offsets"]),
                arrays["idf"],
                arrays["pointers"],
                arrays["documents"],
                arrays["weights"].astype(np.float32),
                replies,
                arrays["prior"],
                frozenset(str(s) for s in arrays["scripts"]),
            )
        except (KeyError, IndexError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{path}: corrupt reply index ({exc!r})") from None
        if len(index.prior) != len(replies) or len(index.pointers) != len(index.idf) + 1:
            raise ModelFormatError(f"{path}: corrupt reply index (arrays of unequal length)")
        return index
