"""The reply-quality benchmark's baselines: the retrieval bot and the seed LSTM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.retrieval import TfidfRetrieval
from core.corpora import Example


def ex(*turns: str) -> Example:
    return Example(tuple(turns[:-1]), turns[-1], "c")


EXAMPLES = [
    ex("hello", "how is the weather today", "sunny and warm"),
    ex("what did you eat for dinner", "pasta with cheese"),
    ex("do you play football", "every sunday"),
    ex("lol", "haha yes"),
    ex("lol", "so funny"),
    ex("你喜欢什么音乐", "我喜欢爵士乐"),
]


def test_retrieval_answers_with_the_reply_to_the_nearest_last_turn() -> None:
    bot = TfidfRetrieval(EXAMPLES)
    # the last turn is what is matched; earlier turns do not count
    assert bot.reply([("football?", "how is the weather")]) == ["sunny and warm"]
    assert bot.reply([("what did you have for dinner",)]) == ["pasta with cheese"]
    assert bot.reply([("你喜欢音乐吗",)]) == ["我喜欢爵士乐"]  # per character


def test_retrieval_breaks_ties_at_random_and_answers_anything() -> None:
    bot = TfidfRetrieval(EXAMPLES, seed=1)
    tied = {bot.reply([("lol",)])[0] for _ in range(40)}
    assert tied == {"haha yes", "so funny"}
    assert bot.reply([("zzz unknown words",), ()])[0] in {e.reply for e in EXAMPLES}
    with pytest.raises(ValueError, match="needs examples"):
        TfidfRetrieval([])


@pytest.mark.slow
def test_seed_lstm_trains_and_answers_through_parleys_machinery(
    tiny_model: Path, tmp_path: Path
) -> None:
    from bench.seed_models import seed_lstm, seed_lstm_config
    from core.corpora import examples_from, load_corpus
    from core.model import artifact
    from core.model.batches import encode_examples
    from core.model.config import DecodeOptions, TrainOptions
    from core.model.responder import Responder
    from core.model.training import Trainer

    meta = artifact.read_meta(tiny_model)
    tokenizer = artifact.load_tokenizer(tiny_model)
    conversations = load_corpus(meta.corpus)
    # the seed model's shape at a size that trains in seconds
    config = replace(
        seed_lstm_config(tokenizer.vocab_size), embed_dim=32, encoder_units=32, decoder_units=32
    )
    data = encode_examples(tokenizer, examples_from(conversations, config.context_turns), config)
    model = seed_lstm(config)
    before = model.weight_dict()["seed_lstm/decoder/lstm_cell/kernel"].copy()
    trainer = Trainer(model, data, data, tmp_path, TrainOptions(epochs=2, verbose=False))
    history = trainer.fit()
    assert len(history) == 2 and history[1]["valid_loss"] < history[0]["valid_loss"]
    after = model.weight_dict()["seed_lstm/decoder/lstm_cell/kernel"]
    assert not np.allclose(before, after)
    # saved weights load back into a fresh model
    fresh = seed_lstm(config)
    fresh.assign_weights(artifact.load_weights(tmp_path / artifact.WEIGHTS))
    greedy = DecodeOptions(method="greedy", no_repeat_ngram=0)
    responder = Responder(fresh, tokenizer, artifact.ModelMeta(config, meta.corpus, greedy))
    replies = responder.reply([["how is the weather"], ["what did you eat"]])
    assert all(r.strip() for r in replies)
