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


def _checkpointed(out: Path) -> int:
    """The last epoch in the run's checkpoint (0 for none, or while one is swapped in)."""
    try:
        return int(json.loads((out / "checkpoints" / "state.json").read_text())["epoch"])
    except FileNotFoundError:
        return 0


def _interrupt(proc: subprocess.Popen[bytes], out: Path, how: int) -> tuple[int, bytes]:
    """Send `how` once the run has checkpointed an epoch; the exit status and stderr."""
    done = _checkpointed(out)
    deadline = time.monotonic() + 120
    while _checkpointed(out) <= done:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no epoch was checkpointed"
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_interrupted_training_resumes(synthetic_jsonl: Path, tmp_path: Path) -> None:
    # Ctrl-C, then a kill while resuming: each run continues where the last one stopped.
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen[bytes]:
        cmd = _train_cmd(synthetic_jsonl, out, epochs=40)
        return subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)

    code, err = _interrupt(start(), out, signal.SIGINT)
    assert code == 130 and b"run the same command again to resume" in err
    first = _checkpointed(out)
    assert 1 <= first < 40
    code, err = _interrupt(start(), out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert f"resuming at epoch {first + 1}".encode() in err
    done = _checkpointed(out)
    assert first < done < 40
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
