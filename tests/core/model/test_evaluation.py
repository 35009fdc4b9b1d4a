"""`parley eval`'s checks that need no model loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.corpora import Split
from core.errors import CorpusError
from core.model import artifact
from core.model.config import ModelConfig
from core.model.evaluation import evaluate


def test_a_test_split_the_corpus_no_longer_holds_is_a_clear_error(tmp_path: Path) -> None:
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("".join(f"question {n}\tanswer {n}\n" for n in range(10)))
    model = tmp_path / "model"
    artifact.write_meta(model, artifact.ModelMeta(ModelConfig(), f"tsv:{corpus}"))
    Split(0, frozenset({"pairs.tsv:1"}), frozenset({"pairs.tsv:99"})).save(model / artifact.SPLIT)
    # Refused before the model is loaded: this directory has no weights at all.
    with pytest.raises(CorpusError, match=r"no test example to measure: .* 1 test conversation"):
        evaluate(model)
