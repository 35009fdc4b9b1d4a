"""What training does before TensorFlow loads: checks, tokenizer, split, warnings."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorpusError, ParleyError, VocabularyTooSmall
from core.model import artifact
from core.model.batches import Encoded
from core.model.config import ModelConfig, TrainOptions
from core.model.preparation import SMALL_CORPUS_PAIRS, Prepared, prepare, warn_if_weak
from tests.conftest import TINY

QUIET = TrainOptions(verbose=False)


def write_jsonl(path: Path, conversations: int) -> Path:
    turns = ["hello there", "hi how are you", "fine thanks", "good to hear"]
    path.write_text(
        "\n".join(json.dumps({"id": f"c{i}", "turns": turns}) for i in range(conversations))
    )
    return path


def test_a_corpus_too_small_to_split_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "two.jsonl", 2)
    out = tmp_path / "model"
    with pytest.raises(CorpusError, match=r"2 conversation\(s\) are too few .* at least 3"):
        prepare(f"jsonl:{corpus}", out, ModelConfig(**TINY), QUIET)
    assert not out.exists()  # fixing the corpus and running again needs no other --out


def test_a_vocabulary_too_small_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "talk.jsonl", 20)
    out = tmp_path / "model"
    with pytest.raises(VocabularyTooSmall) as caught:
        prepare(f"jsonl:{corpus}", out, ModelConfig(**{**TINY, "vocab_size": 100}), QUIET)
    assert caught.value.asked == 100 and caught.value.needed > 261
    assert not out.exists()


def test_the_tokenizer_line_gives_the_size_trained_and_the_model_follows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_jsonl(tmp_path / "talk.jsonl", 20)
    out = tmp_path / "model"
    prepared = prepare(f"jsonl:{corpus}", out, ModelConfig(**TINY), TrainOptions(verbose=True))
    pieces = prepared.tokenizer.vocab_size
    assert pieces < TINY["vocab_size"]
    err = capsys.readouterr().err
    assert f"trained a {pieces}-piece tokenizer (of {TINY['vocab_size']} asked for" in err
    assert f"{TINY['vocab_size']}-piece" not in err
    assert artifact.read_meta(out).config.vocab_size == pieces
    assert artifact.load_tokenizer(out).vocab_size == pieces


def test_a_small_corpus_is_trained_with_a_warning_that_gives_the_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = write_jsonl(tmp_path / "talk.jsonl", 20)
    with caplog.at_level(logging.WARNING, "parley.training"):
        prepared = prepare(f"jsonl:{corpus}", tmp_path / "m", ModelConfig(**TINY), QUIET)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "parley.training"]
    pairs = len(prepared.train)
    assert 0 < pairs < SMALL_CORPUS_PAIRS
    assert f"has {pairs} training pairs" in warning
    assert f"{SMALL_CORPUS_PAIRS:,}" in warning and "--index-extra" in warning


def test_an_existing_model_is_refused(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "talk.jsonl", 20)
    prepare(f"jsonl:{corpus}", tmp_path / "m", ModelConfig(**TINY), QUIET)
    with pytest.raises(ParleyError, match="already holds a trained model"):
        prepare(f"jsonl:{corpus}", tmp_path / "m", ModelConfig(**TINY), QUIET)


def test_preparing_does_not_import_tensorflow(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "talk.jsonl", 20)
    code = (
        "import sys\n"
        "from core.model.config import ModelConfig, TrainOptions\n"
        "from core.model.preparation import prepare\n"
        f"prepare('jsonl:{corpus}', '{tmp_path / 'm'}', ModelConfig(vocab_size=400), "
        "TrainOptions(verbose=False))\n"
        "sys.exit('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "m" / "parley.json").is_file()


def prepared_with(train: list[list[int]], valid: list[list[int]], vocab: int) -> Prepared:
    from core.model.tokenizer import Tokenizer

    class Sized(Tokenizer):
        def __init__(self) -> None:  # only its size is read
            pass

        @property
        def vocab_size(self) -> int:
            return vocab

    def encoded(rows: list[list[int]]) -> Encoded:
        arrays = [np.asarray(r, np.int32) for r in rows]
        return Encoded(arrays, arrays)

    meta = artifact.ModelMeta(ModelConfig(vocab_size=vocab), "test")
    return Prepared(Path("."), meta, Sized(), encoded(train), encoded(valid), False)


def test_the_context_free_guess_is_the_smoothed_frequency_of_reply_tokens() -> None:
    prepared = prepared_with([[5, 5, 5, 6]], [[5, 6], [7]], vocab=8)
    # add-one: p(5) = 4/12, p(6) = 2/12, p(7) = 1/12
    first = math.exp(-(math.log(4 / 12) + math.log(2 / 12)) / 2)
    assert prepared.context_free_perplexity(limit=1) == pytest.approx(first)
    both = math.exp(-(math.log(4 / 12) + math.log(2 / 12) + math.log(1 / 12)) / 3)
    assert prepared.context_free_perplexity() == pytest.approx(both)


def test_a_model_no_better_than_the_context_free_guess_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prepared = prepared_with([[5, 6, 7, 3]] * 50, [[5, 6, 7, 3]] * 5, vocab=300)
    guess = prepared.context_free_perplexity()
    with caplog.at_level(logging.WARNING, "parley.training"):
        warn_if_weak(prepared, math.log(guess * 0.2))  # well below the guess: no warning
        assert caplog.records == []
        warn_if_weak(prepared, math.log(guess * 1.5))
    [record] = caplog.records
    message = record.getMessage()
    assert f"validation perplexity {guess * 1.5:.1f} against {guess:.1f}" in message
    assert "learned little from 50 training pairs" in message
    assert "--index-extra" in message
