"""What `parley train` does before TensorFlow loads: read and check the whole corpus,
split it, train the tokenizer and encode the examples.

Importing TensorFlow takes 10-20 s; a bad corpus line, an impossible vocabulary size or a
corpus too small to split is reported before that, and before anything is written.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.corpora import Conversation, Split, examples_from, load_corpus
from core.errors import CorpusError, ParleyError
from core.model import artifact
from core.model.batches import Encoded, encode_examples
from core.model.config import DecodeOptions, ModelConfig, TrainOptions
from core.model.tokenizer import Tokenizer

log = logging.getLogger("parley.training")

CHECKPOINTS = "checkpoints"
PARTS = ("train", "valid", "test")
# Below this many training pairs a model of the default sizes learns little that carries
# to new conversations: with 1,296 pairs it scored no better than the frequency guess
# below, with 4,204 pairs 0.37 of it (README, "How much data a model needs").
SMALL_CORPUS_PAIRS = 5_000
# The bundled model's training pairs, quoted in warnings as what "enough" looks like.
BUNDLED_PAIRS = 119_593
# Validation perplexity above this share of the context-free guess's (each reply token
# by its frequency alone) means the model learned little from the conversations: the
# bundled model scores 0.12 of it, the Chinese example (500 pairs) 1.45.
WEAK_MODEL_RATIO = 0.5
MORE_DATA = (
    "add conversations, or give the bot more replies to choose from with --index-extra "
    "CORPUS (its reply index answers even where the model cannot)"
)


@dataclass
class Prepared:
    """A model directory's inputs, ready for the TensorFlow part of training."""

    out: Path
    meta: artifact.ModelMeta
    tokenizer: Tokenizer
    train: Encoded
    valid: Encoded
    resuming: bool

    def context_free_perplexity(self, limit: int | None = None) -> float:
        """The perplexity, over the first `limit` validation replies, of guessing each
        token by its frequency in the training replies (add-one smoothed): what a model
        that ignores the context scores."""
        replies = np.concatenate(self.train.targets)
        counts = np.bincount(replies, minlength=self.tokenizer.vocab_size)
        log_p = np.log((counts + 1) / (counts.sum() + len(counts)))
        return math.exp(-float(log_p[np.concatenate(self.valid.targets[:limit])].mean()))


def is_resuming(out: Path) -> bool:
    """Whether `out` holds the checkpoint of an interrupted run."""
    names = (CHECKPOINTS, CHECKPOINTS + ".old")
    return any((out / name / "state.json").is_file() for name in names)


def prepare(
    corpus: str,
    out: Path,
    config: ModelConfig,
    options: TrainOptions,
    decoding: DecodeOptions | None = None,
) -> Prepared:
    """Everything before the model: the corpus read and checked, the split, the tokenizer,
    the encoded examples. A new run writes the tokenizer, split and parley.json into `out`
    once all of it succeeded; a resumed run reads them back.

    Raises `CorpusError` for a malformed corpus or one too small to split,
    `VocabularyTooSmall` when `config.vocab_size` cannot hold the corpus's characters.
    """
    out = Path(out)
    say = _say(options)
    resuming = is_resuming(out)
    if (out / artifact.META).is_file() and not resuming:
        raise ParleyError(f"{out} already holds a trained model; choose another --out")
    if resuming:
        meta = artifact.read_meta(out)
        tokenizer = artifact.load_tokenizer(out)
        conversations = load_corpus(meta.corpus)
        split = artifact.load_split(out)
    else:
        conversations = load_corpus(corpus)
        split = Split.make(conversations, seed=options.seed)
        _check_split(corpus, split, conversations)
        training = split.part(conversations, "train")
        tokenizer = Tokenizer.train((t for c in training for t in c.turns), config.vocab_size)
        pieces = tokenizer.vocab_size
        cut = f" (of {config.vocab_size} asked for: all this corpus yields)"
        cut = cut if pieces < config.vocab_size else ""
        say(f"trained a {pieces}-piece tokenizer{cut} on {len(training)} conversations")
        # The model follows the tokenizer.
        meta = artifact.ModelMeta(
            replace(config, vocab_size=pieces), corpus, decoding or DecodeOptions()
        )
    train, valid = (_encode(tokenizer, split, conversations, meta.config, p) for p in PARTS[:2])
    say(
        f"{len(train)} training examples ({train.target_tokens} reply tokens), "
        f"{len(valid)} validation examples"
    )
    if not len(train) or not len(valid):
        raise CorpusError(meta.corpus, "no training or no validation example is left once encoded")
    if not resuming:
        if len(train) < SMALL_CORPUS_PAIRS:
            log.warning(
                "%s has %s training pairs; a model learns little from fewer than %s (the "
                "bundled model learned from %s). Training anyway; to do better, %s.",
                corpus,
                f"{len(train):,}",
                f"{SMALL_CORPUS_PAIRS:,}",
                f"{BUNDLED_PAIRS:,}",
                MORE_DATA,
            )
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out / artifact.TOKENIZER)
        split.save(out / artifact.SPLIT)
        artifact.write_meta(out, meta)
    return Prepared(out, meta, tokenizer, train, valid, resuming)


def warn_if_weak(prepared: Prepared, best_valid_loss: float, limit: int | None = None) -> None:
    """After training: warn when the model's validation perplexity (over the first `limit`
    validation examples, as training measures it) is not far below what ignoring the
    context scores."""
    if not math.isfinite(best_valid_loss):
        return
    perplexity = math.exp(best_valid_loss)
    baseline = prepared.context_free_perplexity(limit)
    if perplexity > WEAK_MODEL_RATIO * baseline:
        log.warning(
            "validation perplexity %.1f against %.1f for guessing each reply token by its "
            "frequency alone: the model learned little from %s training pairs (the bundled "
            "model scores 66, 0.12 of its guess). It is saved; to do better, %s.",
            perplexity,
            baseline,
            f"{len(prepared.train):,}",
            MORE_DATA,
        )


def _check_split(corpus: str, split: Split, conversations: list[Conversation]) -> None:
    sizes = {name: len(split.part(conversations, name)) for name in PARTS}
    if not all(sizes.values()):
        raise CorpusError(
            corpus,
            f"{len(conversations)} conversation(s) are too few to hold out any for "
            "validation and test; it takes at least 3 (a tsv file's every line is one)",
        )


def _encode(
    tokenizer: Tokenizer,
    split: Split,
    conversations: list[Conversation],
    config: ModelConfig,
    part: str,
) -> Encoded:
    examples = examples_from(split.part(conversations, part), config.context_turns)
    return encode_examples(tokenizer, examples, config)


def _say(options: TrainOptions) -> Callable[[str], None]:
    if options.verbose:
        return lambda message: print(message, file=sys.stderr)
    return lambda message: None
