"""Decoding rules, on a tiny trained model and on an untrained one (worst-case logits)."""

from __future__ import annotations

import numpy as np
import pytest

from core.model.config import DecodeOptions
from core.model.tokenizer import BOS, EOS, PAD, SEP, UNK
from tests.conftest import QUESTIONS, TOPICS

pytestmark = pytest.mark.slow

CONTEXTS = [
    ["hello there", "hi how are you", "how is the weather"],
    ["what did you eat"],
    ["do you play any sport"],
    ["what music do you like"],
    ["something it has never seen, with 😀 and 中文"],
]


def repeated_ngrams(row: np.ndarray, n: int) -> int:
    toks = [int(t) for t in row if t not in (PAD, EOS)]
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return len(grams) - len(set(grams))


def test_model_learned_the_synthetic_dialogue(tiny_responder, untrained_responder) -> None:  # type: ignore[no-untyped-def]
    # What a few seconds of training reliably teach: on-topic replies become far likelier
    # after their question (per token) than the same weights untrained find them.
    topics = sorted(QUESTIONS)
    contexts = [[QUESTIONS[t]] for t in topics]
    replies = [sorted(TOPICS[t])[0] for t in topics]
    owners = list(range(len(topics)))
    trained = tiny_responder.log_probs(tiny_responder.encode(contexts), replies, owners)
    untrained = untrained_responder.log_probs(untrained_responder.encode(contexts), replies, owners)
    assert (trained > untrained + 1.0).all(), (trained, untrained)


def test_greedy_equals_beam_of_width_one(tiny_responder) -> None:  # type: ignore[no-untyped-def]
    greedy = tiny_responder.reply(CONTEXTS, method="greedy")
    beam1 = tiny_responder.reply(CONTEXTS, method="beam", beam_width=1)
    assert greedy == beam1


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_batch_equals_single(tiny_responder, method: str) -> None:  # type: ignore[no-untyped-def]
    batch = tiny_responder.reply(CONTEXTS, method=method, seed=7)
    single = [tiny_responder.reply([c], method=method, seed=7)[0] for c in CONTEXTS]
    if method == "sample":
        # a sample depends on its row's random draws, which depend on the batch shape
        assert all(batch) and all(single)
    else:
        assert batch == single


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
@pytest.mark.parametrize("max_length", [1, 3, 8])
def test_max_length_and_never_empty(untrained_responder, method: str, max_length: int) -> None:  # type: ignore[no-untyped-def]
    options = DecodeOptions(method=method, max_length=max_length, seed=1)  # type: ignore[arg-type]
    ids = untrained_responder.generate_ids(untrained_responder.encode(CONTEXTS), options)
    assert ids.shape == (len(CONTEXTS), max_length)
    assert not np.isin(ids, [BOS, UNK, SEP]).any()
    assert (ids[:, 0] != EOS).all() and (ids[:, 0] != PAD).all()
    for row in ids:
        assert untrained_responder.ids_to_text(row).strip()


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_no_repeated_ngram(untrained_responder, method: str) -> None:  # type: ignore[no-untyped-def]
    # An untrained model loves repeating itself; the guard must stop it.
    guarded = DecodeOptions(method=method, max_length=24, no_repeat_ngram=3, seed=3)  # type: ignore[arg-type]
    free = DecodeOptions(method=method, max_length=24, no_repeat_ngram=0, seed=3)  # type: ignore[arg-type]
    src = untrained_responder.encode(CONTEXTS)
    assert all(repeated_ngrams(r, 3) == 0 for r in untrained_responder.generate_ids(src, guarded))
    if method != "sample":
        assert any(repeated_ngrams(r, 3) for r in untrained_responder.generate_ids(src, free))


def test_sampling_is_seeded_and_tiny_top_p_is_greedy(tiny_responder) -> None:  # type: ignore[no-untyped-def]
    a = tiny_responder.reply(CONTEXTS, method="sample", seed=11, temperature=1.5, top_p=0.95)
    b = tiny_responder.reply(CONTEXTS, method="sample", seed=11, temperature=1.5, top_p=0.95)
    assert a == b
    # a nucleus holding only the most likely token is greedy decoding
    nucleus = tiny_responder.reply(CONTEXTS, method="sample", seed=5, top_p=1e-6)
    assert nucleus == tiny_responder.reply(CONTEXTS, method="greedy")


def test_context_changes_the_reply(tiny_responder) -> None:  # type: ignore[no-untyped-def]
    a, b = tiny_responder.reply([["how is the weather"], ["what did you eat"]], method="greedy")
    assert a != b
