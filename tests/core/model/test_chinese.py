"""The whole pipeline on CJK text: chatterbot-corpus's Chinese files, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.text import is_cjk

pytestmark = pytest.mark.slow


def test_tiny_chinese_model_answers_in_chinese(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from core.model.config import ModelConfig, TrainOptions
    from core.model.responder import Responder
    from core.model.training import train

    out = tmp_path / "zh"
    config = ModelConfig(
        vocab_size=2000,
        embed_dim=32,
        encoder_units=32,
        decoder_units=64,
        dropout=0.0,
        sampled_softmax=128,
        max_reply_tokens=16,
    )
    history = train(
        "chatterbot:chinese",
        out,
        config,
        TrainOptions(epochs=8, batch_tokens=1500, learning_rate=1e-2, patience=8, verbose=False),
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # too little data to generalise
    # and training says so, with the numbers
    warned = [r.getMessage() for r in caplog.records if r.name == "parley.training"]
    assert any("has 500 training pairs" in w for w in warned), warned
    responder = Responder.load(out, warm_up=False)
    for method in ("greedy", "beam"):
        (reply,) = responder.reply([["你好吗?"]], method=method)
        assert reply.strip() and is_cjk(reply), (method, reply)
    # A sample of a model this small is sometimes only punctuation: most must be Chinese.
    samples = responder.reply([["你好吗?"]] * 8, method="sample", seed=3)
    assert all(s.strip() for s in samples)
    assert sum(map(is_cjk, samples)) >= 5, samples
