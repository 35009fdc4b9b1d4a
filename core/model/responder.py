"""Replies for many conversations at once, from a model directory.

How a reply is chosen, for each conversation:
1. Persona: a question the persona file knows ("what's your name?", "thanks!") gets one
   of its answers, in character every time.
2. Language: a message in a script the model was not trained on gets the persona's
   short note saying which language the bot speaks.
3. Candidates: replies people gave to messages like this one (the reply index), and a few
   the model writes itself, cut at their last complete sentence.
4. The model chooses: every candidate is scored by how well it matches and by how much
   more likely the model finds it after this conversation than after none (maximum
   mutual information), in one batched pass; the best one is the reply.
A model directory without an index answers with generated candidates alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.model import artifact
from core.model.batches import pad
from core.model.config import DecodeOptions
from core.model.index import FILE as INDEX_FILE
from core.model.index import Hit, ReplyIndex, script
from core.model.persona import FILE as PERSONA_FILE
from core.model.persona import Persona
from core.model.tokenizer import EOS, PAD
from core.text import ends_sentence, normalize, sentences, words

# Candidate rows per scoring pass. A pass holds [rows, length, vocabulary] float32 logits
# and their log-softmax: 128 x 32 x 8,000 is 131 MB each at the longest. 256 rows grew a
# process answering batches of 64 by 570 MB, 128 by 330 MB, at the same speed.
SCORE_ROWS = 128
FOREIGN = 0.5  # a message with less than this share of letters in the model's scripts
WARM_UP = "what do you like to do on weekends?"  # a message no persona answers
UNINFORMED = 100.0  # how far a candidate below min_pmi ranks behind one above it


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    text: str
    similarity: float  # how well the message matched the one this reply answered
    prior: float | None = None  # log p(text) per token with no context, if known


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
        index: ReplyIndex | None = None,
        persona: Persona | None = None,
        name: str = "parley",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.options = options or meta.decoding
        self.max_batch = max_batch
        self.jit = jit  # XLA: several times faster per token on a CPU; see `_padded`
        self.index = index
        self.persona = persona
        self.name = name
        self._decoders: dict[tuple[int, int, float, int], Any] = {}
        self._scorer: Any = None
        self._content_mask = tokenizer.content_mask()
        self._lock = threading.Lock()
        self._rng = np.random.default_rng()

    @classmethod
    def load(
        cls,
        directory: Path,
        options: DecodeOptions | None = None,
        warm_up: bool = True,
        name: str = "parley",
    ) -> Responder:
        directory = Path(directory)
        model, tokenizer, meta = artifact.load_model(directory)
        index_path, persona_path = directory / INDEX_FILE, directory / PERSONA_FILE
        index = ReplyIndex.load(index_path) if index_path.exists() else None
        persona = Persona.load(persona_path, index) if persona_path.exists() else None
        responder = cls(model, tokenizer, meta, options, index=index, persona=persona, name=name)
        if warm_up:
            responder.warm_up()
        return responder

    def warm_up(self, batch: int | None = None) -> None:
        """Compile, before the process says it is ready, every graph a reply with these
        options can need: the scorer (one trace serves every shape) and the decoder at
        each padded shape (`decode_rows`), so that no request waits for XLA (a second or
        more a shape). Other decoding options compile when first used.

        `batch`, if given, is the most contexts a call will bring: the decoder then never
        takes more than `batch` x `samples` rows at a time (`max_batch`, rounded up to a
        power of two), and no larger shape is compiled."""
        if batch is not None:
            self.max_batch = min(self.max_batch, 1 << _log2(batch * self.options.samples))
        self.reply([[WARM_UP]])
        for rows in self.decode_rows(self.options):
            self.generate_ids(np.full((rows, 1), EOS, np.int32), self.options)

    # -- generation ------------------------------------------------------------------------

    def decode_rows(self, options: DecodeOptions) -> list[int]:
        """The padded row counts the decoder meets while replying: `options.samples` per
        context that needs them, up to `max_batch` at a time, rounded to a power of two."""
        most = _log2(self.max_batch)
        return [1 << n for n in range(min(_log2(options.samples), most), most + 1)]

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
        """With XLA, each input shape compiles once: a few shapes serve every batch. The
        columns are always the longest context's (the encoder skips padding at little
        cost), so the row count alone picks the shape."""
        return _rounded(source, self.meta.config.max_context_tokens) if self.jit else source

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

    def complete_text(self, row: np.ndarray) -> str:
        """The reply a row spells, without a sentence cut off by the length limit: a reply
        that ended by itself is whole; one that ran out keeps its complete sentences."""
        text = self.ids_to_text(row)
        if EOS in row.tolist() or ends_sentence(text):
            return text
        return " ".join(sentences(text)[:-1]) or text  # never empty, even if never whole

    def generate(self, contexts: Sequence[Sequence[str]], **overrides: Any) -> list[str]:
        """The decoder's own reply per context, with no candidates to choose from."""
        options = dataclasses.replace(self.options, **overrides) if overrides else self.options
        return self._generate(contexts, options)

    def _generate(self, contexts: Sequence[Sequence[str]], options: DecodeOptions) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(contexts), self.max_batch):
            ids = self.generate_ids(self.encode(contexts[start : start + self.max_batch]), options)
            replies.extend(self.complete_text(row) for row in ids)
        return replies

    # -- choosing --------------------------------------------------------------------------

    def scorer(self) -> Any:
        if self._scorer is None:
            from core.model.scoring import Scorer

            self._scorer = Scorer(self.model)
        return self._scorer

    def log_probs(
        self, source: np.ndarray, replies: Sequence[str], owners: Sequence[int] | None = None
    ) -> np.ndarray:
        """Per-token log p(reply | source row) for each reply, where `owners` names each
        reply's row of `source` (default: the first). Replies of similar length are scored
        together, SCORE_ROWS at a time, so that a long one does not pad all the others."""
        import tensorflow as tf

        from core.model.scoring import encode_replies

        rows = encode_replies(self.tokenizer, replies, self.meta.config.max_reply_tokens)
        owner = np.zeros(len(rows), np.int32) if owners is None else np.asarray(owners, np.int32)
        lengths = np.array([len(r) for r in rows], np.float32)
        out = np.zeros(len(rows), np.float32)
        order = np.argsort(lengths, kind="stable")
        scorer = self.scorer()
        with self._lock:
            encoding = scorer.encode(tf.constant(_rounded(source)))
            for start in range(0, len(order), SCORE_ROWS):
                part = order[start : start + SCORE_ROWS]
                # A few shapes only (rows a multiple of 16, length of 8): every new shape
                # costs the math libraries memory that they keep.
                targets = pad([rows[i] for i in part], -(-int(lengths[part].max()) // 8) * 8)
                filler = -len(part) % 16
                targets = np.concatenate(
                    [targets, np.full((filler, targets.shape[1]), PAD, np.int32)]
                )
                targets[len(part) :, 0] = EOS
                owned = np.concatenate([owner[part], np.zeros(filler, np.int32)])
                total = scorer.score(encoding, tf.constant(targets), tf.constant(owned))
                out[part] = total.numpy()[: len(part)]
        return out / np.maximum(lengths, 1)

    def priors(self, replies: Sequence[str]) -> np.ndarray:
        """Per-token log p(reply) after an empty conversation."""
        return self.log_probs(np.array([[EOS]], np.int32), replies)

    def is_foreign(self, message: str) -> bool:
        """Whether the message is written mostly in scripts the model never saw."""
        known = self.index.scripts if self.index else frozenset()
        letters = [s for s in map(script, message) if s]
        if not known or len(letters) < 2:
            return False
        return sum(s in known for s in letters) < FOREIGN * len(letters)

    def candidates(self, turns: Sequence[str], options: DecodeOptions) -> list[Candidate]:
        """Persona answers the message is near, and the index's replies for these turns,
        without anything already said in them."""
        near = self.persona.candidates(turns[-1], self.name) if self.persona else []
        pool = [Candidate(text, similarity) for text, similarity in near]
        if self.index is not None and options.candidates:
            hits: list[Hit] = self.index.search(turns, options.candidates)
            pool += [
                Candidate(h.text, h.similarity, float(self.index.prior[h.position])) for h in hits
            ]
        said = {normalize(t).lower() for t in turns}
        return [c for c in pool if normalize(c.text).lower() not in said]

    def reply(self, contexts: Sequence[Sequence[str]], **overrides: Any) -> list[str]:
        """One reply per context; `overrides` change decoding options for this call."""
        options = dataclasses.replace(self.options, **overrides) if overrides else self.options
        rng = np.random.default_rng(options.seed or None)
        keep = self.meta.config.context_turns
        replies: list[str | None] = []
        pools: list[list[Candidate]] = []
        for context in contexts:
            turns = [t for t in context][-keep:] or [""]
            fixed = self.persona.answer(turns[-1], self.name, rng) if self.persona else None
            if fixed is None and self.persona and self.is_foreign(turns[-1]):
                fixed = self.persona.language_reply.replace("{name}", self.name) or None
            replies.append(fixed)
            pools.append([] if fixed is not None else self.candidates(turns, options))
        todo = [i for i, r in enumerate(replies) if r is None]
        if todo:
            texts = self.choose([contexts[i] for i in todo], [pools[i] for i in todo], options, rng)
            for i, text in zip(todo, texts, strict=True):
                replies[i] = text
        return [r or "" for r in replies]

    def choose(
        self,
        contexts: Sequence[Sequence[str]],
        pools: Sequence[list[Candidate]],
        options: DecodeOptions,
        rng: np.random.Generator,
    ) -> list[str]:
        """The best candidate of each pool (ties drawn at random). Where no candidate says
        something this conversation makes likelier, the model writes `options.samples`
        replies of its own, and they are ranked with the rest."""
        pools = [list(p) for p in pools]
        ranked = self.rank(contexts, pools, options)
        weak = [
            i
            for i, scores in enumerate(ranked)
            if not len(scores) or scores.max() < -UNINFORMED / 2
        ]
        if weak:
            written = self._generate(
                [contexts[i] for i in weak for _ in range(options.samples)], options
            )
            n = options.samples
            fresh = [
                [Candidate(t, 0.0) for t in dict.fromkeys(written[k * n : (k + 1) * n]) if t]
                for k in range(len(weak))
            ]
            # A candidate's score does not depend on the others: only the new ones are scored.
            for i, new, scores in zip(
                weak, fresh, self.rank([contexts[i] for i in weak], fresh, options), strict=True
            ):
                pools[i] += new
                ranked[i] = np.concatenate([ranked[i], scores])
        chosen = []
        for pool, scores in zip(pools, ranked, strict=True):
            if not pool:
                chosen.append("")
                continue
            best = np.flatnonzero(scores >= scores.max() - 1e-6)
            chosen.append(pool[int(rng.choice(best))].text)
        return chosen

    def rank(
        self,
        contexts: Sequence[Sequence[str]],
        pools: Sequence[list[Candidate]],
        options: DecodeOptions | None = None,
    ) -> list[np.ndarray]:
        """Each pool's scores, higher is better: match similarity plus mutual information
        (see `DecodeOptions`); every candidate of every context in one scoring call."""
        options = options or self.options
        texts = [c.text for p in pools for c in p]
        if not texts:
            return [np.zeros(0) for _ in pools]
        owners = [n for n, p in enumerate(pools) for _ in p]
        # The priors the index does not hold are scored in the same pass, as replies to
        # an empty conversation: the last source row.
        unknown = list(dict.fromkeys(c.text for p in pools for c in p if c.prior is None))
        sources = [*contexts, ()] if unknown else contexts
        scored = self.log_probs(
            self.encode(sources), texts + unknown, owners + [len(pools)] * len(unknown)
        )
        cond = scored[: len(texts)]
        prior_of = dict(zip(unknown, scored[len(texts) :], strict=True))
        prior = np.array(
            [prior_of[c.text] if c.prior is None else c.prior for p in pools for c in p]
        )
        sim = np.array([c.similarity for p in pools for c in p])
        scores = sim + options.pmi_weight * (cond - options.prior_weight * prior)
        # below min_pmi: ranked after every candidate that reaches it; under min_words
        # ("ok", "lol"): after the longer ones the conversation supports as well
        scores = np.where(cond - prior >= options.min_pmi, scores, scores - UNINFORMED)
        short = np.array([len(words(c.text)) < options.min_words for p in pools for c in p])
        scores = np.where(short, scores - UNINFORMED / 10, scores)
        bounds = np.cumsum([0, *(len(p) for p in pools)])
        return [scores[a:b] for a, b in itertools.pairwise(bounds)]


def _log2(n: int) -> int:
    """The exponent of the power of two that `n` rounds up to."""
    return max(n - 1, 0).bit_length()


def _rounded(source: np.ndarray, width: int = 0) -> np.ndarray:
    """Contexts padded to a few shapes: rows up to a power of two, columns (at least
    `width`) to a multiple of 16; filler rows are a one-token context."""
    rows, cols = source.shape
    out = np.full((1 << _log2(rows), -(-max(cols, width) // 16) * 16), PAD, np.int32)
    out[:rows, :cols] = source
    out[rows:, 0] = EOS
    return out
