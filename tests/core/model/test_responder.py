"""Choosing replies: the persona, the index, the model's ranking, whole sentences."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.model.config import DecodeOptions
from core.model.evaluation import hits_at_1, likelihood_rank, responder_rank
from core.model.responder import Candidate, Responder
from tests.conftest import QUESTIONS, TOPICS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def indexed(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Responder:
    """The tiny model with a reply index and persona built by `parley index`'s code."""
    from core.model.indexing import build

    directory = tmp_path_factory.mktemp("indexed") / "tiny"
    shutil.copytree(tiny_model, directory)
    build(directory)
    assert (directory / "index.npz").is_file() and (directory / "persona.yml").is_file()
    return Responder.load(directory, warm_up=False, name="Robin")


def test_the_model_ranks_a_relevant_reply_above_a_generic_one(tiny_responder: Responder) -> None:
    # "hi how are you" opens every training conversation, so the model finds it likely
    # anywhere; mutual information asks what this question makes likelier.
    for topic, question in QUESTIONS.items():
        relevant, generic = Candidate(TOPICS[topic][0], 0.0), Candidate("hi how are you", 0.0)
        (scores,) = tiny_responder.rank([[question]], [[generic, relevant]])
        assert scores[1] > scores[0], (question, scores)


def test_replies_the_context_does_not_support_rank_last(tiny_responder: Responder) -> None:
    question = QUESTIONS["food"]
    texts = ["hi how are you", *TOPICS["food"], *TOPICS["sport"]]
    cond = tiny_responder.log_probs(tiny_responder.encode([[question]]), texts)
    pmi = cond - tiny_responder.priors(texts)
    low, high = int(np.argmin(pmi)), int(np.argmax(pmi))
    # the reply the question supports least is the best match: it still ranks last
    pool = [Candidate(texts[low], 1.0), Candidate(texts[high], 0.0)]
    match_first = {"pmi_weight": 0.01}  # the model's word weighs little beside the match
    between = DecodeOptions(min_pmi=float(pmi[low] + pmi[high]) / 2, **match_first)
    (scores,) = tiny_responder.rank([[question]], [pool], between)
    assert scores[1] > scores[0]
    no_threshold = DecodeOptions(min_pmi=-1e9, **match_first)
    (scores,) = tiny_responder.rank([[question]], [pool], no_threshold)
    assert scores[0] > scores[1]


def test_replies_come_from_the_index_and_stay_on_topic(indexed: Responder) -> None:
    topics = sorted(QUESTIONS)
    plain = copy.copy(indexed)
    plain.persona = None  # "what did you eat" is, to a bot, a question about itself
    replies = plain.reply([[QUESTIONS[t]] for t in topics], seed=3)
    assert sum(r in TOPICS[t] for t, r in zip(topics, replies, strict=True)) >= 3, replies


def test_identity_questions_are_answered_by_the_persona(indexed: Responder) -> None:
    for question in ["what's your name?", "who are you", "what should I call you?"] * 3:
        (reply,) = indexed.reply([["hello there", question]])
        assert "Robin" in reply


def test_a_script_the_model_never_saw_gets_a_note_in_its_language(indexed: Responder) -> None:
    assert indexed.persona is not None
    (reply,) = indexed.reply([["今天天气怎么样？"]])
    assert reply == indexed.persona.language_reply
    (reply,) = indexed.reply([["how is the weather 😀"]])
    assert reply != indexed.persona.language_reply


def test_nothing_already_said_is_said_again(indexed: Responder) -> None:
    said = TOPICS["food"]
    pool = indexed.candidates([said[0], QUESTIONS["food"], said[1]], indexed.options)
    assert not {c.text for c in pool} & {said[0], said[1]}


def test_a_reply_cut_by_the_length_limit_keeps_its_whole_sentences(
    tiny_responder: Responder,
) -> None:
    tok = tiny_responder.tokenizer
    cut = np.asarray(tok.encode("i love pizza. jazz is great music. i play the"), np.int32)
    assert tiny_responder.complete_text(cut) == "i love pizza. jazz is great music."
    whole = np.asarray([*tok.encode("i play the guitar"), 3, 0, 0], np.int32)  # eos, padding
    assert tiny_responder.complete_text(whole) == "i play the guitar"


def test_generated_replies_never_end_mid_sentence(untrained_responder: Responder) -> None:
    contexts = [["how is the weather"], ["what did you eat"], ["hello there"]] * 4
    texts = untrained_responder.generate(contexts, max_length=6, seed=2)
    options = dataclasses.replace(untrained_responder.options, max_length=6, seed=2)
    rows = untrained_responder.generate_ids(untrained_responder.encode(contexts), options)
    # each is its decoded row cut to whole sentences, the rule tested above
    assert texts == [untrained_responder.complete_text(row) for row in rows]
    assert all(texts)  # and never empty, whatever the weights


def test_hits_at_1_is_higher_for_the_trained_model(
    indexed: Responder, untrained_responder: Responder
) -> None:
    from core.corpora import Example

    test = [Example(("hello there", q), TOPICS[t][1], t) for t, q in QUESTIONS.items()]
    trained = hits_at_1(responder_rank(indexed), test, count=4, candidates=4)
    chance = hits_at_1(likelihood_rank(untrained_responder), test, count=4, candidates=4)
    assert trained >= 0.75 > chance, (trained, chance)


def test_stock_replies_rank_after_longer_ones(tiny_responder: Responder) -> None:
    question = QUESTIONS["music"]
    pool = [Candidate("jazz", 0.5), Candidate(TOPICS["music"][1], 0.0)]
    lenient = DecodeOptions(min_pmi=-1e9, min_words=0, pmi_weight=0.0)
    (scores,) = tiny_responder.rank([[question]], [pool], lenient)
    assert scores[0] > scores[1]  # by match alone, the one-word reply wins
    (scores,) = tiny_responder.rank(
        [[question]], [pool], DecodeOptions(min_pmi=-1e9, pmi_weight=0.0)
    )
    assert scores[1] > scores[0]  # with the default min_words, the sentence does
