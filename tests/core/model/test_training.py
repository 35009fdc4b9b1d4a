from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ParleyError
from core.model import artifact
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_validation_loss_falls(tiny_model: Path) -> None:
    history = artifact.load_history(tiny_model)
    assert len(history) >= 3
    assert history[-1]["valid_loss"] < history[0]["valid_loss"] * 0.8
    assert all(h["tokens_per_second"] > 0 for h in history)


def test_refuses_to_overwrite_a_trained_model(tiny_model: Path) -> None:
    from core.model.config import ModelConfig, TrainOptions
    from core.model.training import train

    with pytest.raises(ParleyError, match="already holds a trained model"):
        train("chitchat", tiny_model, ModelConfig(**TINY), TrainOptions(verbose=False))


def _train_cmd(corpus: Path, out: Path, epochs: int) -> list[str]:
    sizes = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "max_context_tokens"]
    return [
        sys.executable,
        "-m",
        "bots.cli",
        "train",
        f"--corpus=jsonl:{corpus}",
        f"--out={out}",
        f"--epochs={epochs}",
        "--batch-tokens=300",
        "--patience=50",
        *sizes,
    ]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_training_resumes(synthetic_jsonl: Path, tmp_path: Path, how: int) -> None:
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _train_cmd(synthetic_jsonl, out, epochs=40), stderr=subprocess.PIPE, env=env
    )
    _wait_for(out / "checkpoints" / "state.json", proc)  # the first epoch is done
    time.sleep(0.5)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    if how == signal.SIGINT:
        assert proc.returncode == 130
        assert b"run the same command again to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    done = state["epoch"]
    assert 1 <= done < 40
    # run again, for a few more epochs in total: it continues instead of starting over
    resumed = subprocess.run(
        _train_cmd(synthetic_jsonl, out, epochs=done + 2), capture_output=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert f"resuming at epoch {done + 1}".encode() in resumed.stderr
    history = artifact.load_history(out)
    assert [h["epoch"] for h in history] == list(range(1, done + 3))
    assert not (out / "checkpoints").exists()


def test_cpu_budget_stops_training_and_keeps_the_model(
    synthetic_jsonl: Path, tmp_path: Path
) -> None:
    from core.model.config import ModelConfig, TrainOptions
    from core.model.training import train

    budget = 0.02  # CPU minutes: part of the first epoch
    history = train(
        f"jsonl:{synthetic_jsonl}",
        tmp_path / "m",
        ModelConfig(**TINY),
        TrainOptions(epochs=50, batch_tokens=300, max_cpu_minutes=budget, verbose=False),
    )
    assert len(history) == 1  # stopped inside the first epoch, which was still validated
    spent = artifact.read_meta(tmp_path / "m").training["cpu_seconds"]
    assert budget * 60 <= spent < budget * 60 + 30  # the first step includes tracing
    assert (tmp_path / "m" / artifact.WEIGHTS).is_file()


def test_learning_rate_decays_after_every_epoch(
    synthetic_jsonl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.model import training
    from core.model.config import ModelConfig, TrainOptions

    trainers: list[training.Trainer] = []
    rates: list[float] = []
    init, bucketed = training.Trainer.__init__, training.bucketed

    def keep(self: training.Trainer, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        trainers.append(self)

    def record(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        rates.append(float(trainers[0].optimizer.learning_rate.numpy()))  # set for this epoch
        return bucketed(*args, **kwargs)

    monkeypatch.setattr(training.Trainer, "__init__", keep)
    monkeypatch.setattr(training, "bucketed", record)
    options = TrainOptions(
        epochs=3, patience=9, learning_rate=1e-2, lr_decay=0.5, batch_tokens=800, verbose=False
    )
    training.train(f"jsonl:{synthetic_jsonl}", tmp_path / "m", ModelConfig(**TINY), options)
    assert rates == pytest.approx([1e-2, 5e-3, 2.5e-3])
