"""Training: bucketed batches, one compiled step, checkpoints that survive Ctrl-C and kill.

A run writes the model directory as it goes: tokenizer, split and config first, the best
weights whenever validation loss improves, and `checkpoints/` (weights, optimizer state,
position in the epoch) every epoch, every few minutes, and on Ctrl-C or SIGTERM. Running
the same command again resumes from the checkpoint.
"""

import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.errors import TrainingInterrupted
from core.model import artifact
from core.model.batches import Encoded, bucketed, by_length, make_batch
from core.model.preparation import CHECKPOINTS, prepare, warn_if_weak
from core.model.tokenizer import PAD


def loss_fn(model, source, target_in, target_out, training, label_smoothing=0.0):
    """(Summed cross-entropy, count) over real target tokens; no logits for padding."""
    features = model((source, target_in), training=training)
    mask = tf.not_equal(target_out, PAD)
    logits = model.project(tf.boolean_mask(features, mask))
    labels = tf.boolean_mask(target_out, mask)
    if label_smoothing:
        smooth = tf.one_hot(labels, model.config.vocab_size) * (1 - label_smoothing)
        smooth += label_smoothing / model.config.vocab_size
        losses = tf.nn.softmax_cross_entropy_with_logits(smooth, logits)
    else:
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    return tf.reduce_sum(losses), tf.shape(labels)[0]


_SPEC = [tf.TensorSpec([None, None], tf.int32)] * 3


def sampled_loss_fn(model, source, target_in, target_out, unigrams, num_sampled):
    """Sampled-softmax cross-entropy (Jean et al. 2015), as (sum, count) like `loss_fn`.

    The output layer, a large share of a CPU step, is evaluated on the true token and
    `num_sampled` others drawn by (smoothed) frequency, instead of the whole vocabulary."""
    features = model((source, target_in), training=True)
    mask = tf.not_equal(target_out, PAD)
    inputs = tf.boolean_mask(features, mask)
    labels = tf.cast(tf.boolean_mask(target_out, mask), tf.int64)[:, None]
    sampled = tf.random.fixed_unigram_candidate_sampler(
        labels,
        1,
        num_sampled,
        unique=True,
        range_max=model.config.vocab_size,
        distortion=0.75,
        unigrams=unigrams,
    )
    weights, biases = model.output_weights()
    losses = tf.nn.sampled_softmax_loss(
        weights,
        biases,
        labels,
        inputs,
        num_sampled,
        model.config.vocab_size,
        sampled_values=sampled,
    )
    return tf.reduce_sum(losses), tf.shape(labels)[0]


def make_eval_step(model):
    @tf.function(input_signature=_SPEC)
    def step(source, target_in, target_out):
        return loss_fn(model, source, target_in, target_out, training=False)

    return step


def mean_loss(step, data, batch_size=128, limit=None):
    """Average per-token negative log-likelihood over `data` (its first `limit` examples)."""
    if limit is not None:
        data = Encoded(data.sources[:limit], data.targets[:limit])
    total, count = 0.0, 0
    for index in by_length(data, batch_size):
        loss_sum, n = step(*make_batch(data, index))
        total += float(loss_sum)
        count += int(n)
    return total / max(count, 1)


class Trainer:
    """Fits a `Seq2Seq` on encoded train/valid data, writing into a model directory."""

    def __init__(self, model, train, valid, directory, options):
        self.model = model
        self.train = train
        self.valid = valid
        self.dir = Path(directory)
        self.opts = options
        self.optimizer = keras.optimizers.Adam(options.learning_rate)
        self.optimizer.build(model.trainable_variables)
        self.train_step = self._make_train_step()
        self._eval_step = make_eval_step(model)
        self.state = {
            "epoch": 0,
            "batch": 0,
            "best": math.inf,
            "bad_epochs": 0,
            "seconds": 0.0,
            "cpu_seconds": 0.0,  # of the training steps, all threads
            "epoch_loss": 0.0,  # summed loss and tokens of the epoch so far, across resumes
            "epoch_tokens": 0,
            "history": [],
        }

    def _make_train_step(self):
        model, optimizer, opts = self.model, self.optimizer, self.opts
        smoothing = model.config.label_smoothing
        num_sampled = model.config.sampled_softmax
        if num_sampled >= model.config.vocab_size:
            num_sampled = 0
        counts = np.bincount(np.concatenate(self.train.targets), minlength=model.config.vocab_size)
        unigrams = (counts + 1).astype(float).tolist()

        @tf.function(input_signature=_SPEC)
        def step(source, target_in, target_out):
            with tf.GradientTape() as tape:
                if num_sampled:
                    loss_sum, n = sampled_loss_fn(
                        model, source, target_in, target_out, unigrams, num_sampled
                    )
                else:
                    loss_sum, n = loss_fn(model, source, target_in, target_out, True, smoothing)
                loss = loss_sum / tf.cast(n, tf.float32)
            grads = tape.gradient(loss, model.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, opts.clip_norm)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss, n

        return step

    # -- checkpoints ------------------------------------------------------------------------

    @property
    def checkpoint_dir(self):
        return self.dir / CHECKPOINTS

    def save_checkpoint(self):
        new = self.dir / (CHECKPOINTS + ".new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        artifact.save_weights(new / "model.npz", self.model.weight_dict())
        np.savez(new / "optimizer.npz", *[v.numpy() for v in self.optimizer.variables])
        (new / "state.json").write_text(json.dumps(self.state))
        old = self.dir / (CHECKPOINTS + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint_dir.exists():
            self.checkpoint_dir.rename(old)
        new.rename(self.checkpoint_dir)
        shutil.rmtree(old, ignore_errors=True)

    def restore_checkpoint(self):
        """Load the last checkpoint, if any. Returns whether one was found."""
        for path in (self.checkpoint_dir, self.dir / (CHECKPOINTS + ".old")):
            if (path / "state.json").is_file():
                self.model.assign_weights(artifact.load_weights(path / "model.npz"))
                with np.load(path / "optimizer.npz") as saved:
                    for i, var in enumerate(self.optimizer.variables):
                        var.assign(saved[f"arr_{i}"])
                saved = json.loads((path / "state.json").read_text())
                self.state = {"cpu_seconds": 0.0, "epoch_loss": 0.0, "epoch_tokens": 0, **saved}
                return True
        return False

    # -- the loop -----------------------------------------------------------------------------

    def fit(self):
        """Train until the epochs, patience or time budget run out. Returns the history."""
        resumed = self.restore_checkpoint()
        if resumed and self.opts.verbose:
            print(
                f"resuming at epoch {self.state['epoch'] + 1}, batch {self.state['batch']}",
                file=sys.stderr,
            )
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signum

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.state["epoch"] < self.opts.epochs and not self._patience_out():
                if not self._epoch(stop):
                    self.save_checkpoint()
                    raise TrainingInterrupted(
                        f"stopped at epoch {self.state['epoch'] + 1}, batch {self.state['batch']}; "
                        "run the same command again to resume"
                    )
                if self._time_out():
                    break
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return self.state["history"]

    def summary(self):
        """What parley.json records about the finished run."""
        return {
            "epochs": len(self.state["history"]),
            "seconds": round(self.state["seconds"], 1),
            "cpu_seconds": round(self.state["cpu_seconds"], 1),
            "best_valid_loss": self.state["best"],
            "train_examples": len(self.train),
            "parameters": int(sum(np.prod(w.shape) for w in self.model.weights)),
        }

    def _patience_out(self):
        return self.state["bad_epochs"] >= self.opts.patience

    def _time_out(self):
        wall, cpu = self.opts.max_minutes, self.opts.max_cpu_minutes
        return (bool(wall) and self.state["seconds"] >= wall * 60) or (
            bool(cpu) and self.state["cpu_seconds"] >= cpu * 60
        )

    def _epoch(self, stop):
        """One epoch from the saved position; False if a signal or the time budget cut it."""
        epoch = self.state["epoch"]
        self.optimizer.learning_rate.assign(self.opts.learning_rate * self.opts.lr_decay**epoch)
        batches = bucketed(
            self.train,
            self.opts.batch_tokens,
            self.opts.max_batch,
            seed=self.opts.seed * 1000 + epoch,
        )
        bar = keras.utils.Progbar(
            len(batches), stateful_metrics=["loss", "tok/s"], verbose=1 if self.opts.verbose else 0
        )
        loss_sum, tokens = self.state["epoch_loss"], self.state["epoch_tokens"]
        session_tokens, last_save = 0, time.monotonic()
        started, start_seconds = time.monotonic(), self.state["seconds"]
        started_cpu, start_cpu = time.process_time(), self.state["cpu_seconds"]
        for i in range(self.state["batch"], len(batches)):
            loss, n = self.train_step(*make_batch(self.train, batches[i]))
            loss_sum += float(loss) * int(n)
            tokens += int(n)
            session_tokens += int(n)
            self.state["epoch_loss"], self.state["epoch_tokens"] = loss_sum, tokens
            elapsed = time.monotonic() - started
            self.state["seconds"] = start_seconds + elapsed
            self.state["cpu_seconds"] = start_cpu + time.process_time() - started_cpu
            self.state["batch"] = i + 1
            speed = session_tokens / max(elapsed, 1e-9)
            bar.update(i + 1, [("loss", loss_sum / tokens), ("tok/s", speed)])
            if stop["signal"] is not None:
                return False
            if self._time_out() and i + 1 < len(batches):
                break
            if time.monotonic() - last_save > self.opts.checkpoint_minutes * 60:
                self.save_checkpoint()
                last_save = time.monotonic()
        valid_loss = mean_loss(self._eval_step, self.valid, limit=self.opts.max_valid_examples)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(tokens, 1),
            "valid_loss": valid_loss,
            "tokens_per_second": session_tokens / max(elapsed, 1e-9),
            "seconds": self.state["seconds"],
            "cpu_seconds": self.state["cpu_seconds"],
        }
        self.state["history"].append(record)
        if valid_loss < self.state["best"]:
            self.state["best"] = valid_loss
            self.state["bad_epochs"] = 0
            artifact.save_weights(self.dir / artifact.WEIGHTS, self.model.weight_dict(np.float16))
        else:
            self.state["bad_epochs"] += 1
        self.state["epoch"] = epoch + 1
        self.state["batch"] = 0
        self.state["epoch_loss"], self.state["epoch_tokens"] = 0.0, 0
        artifact.save_history(self.dir, self.state["history"])
        sampled = 0 < self.model.config.sampled_softmax < self.model.config.vocab_size
        plot_losses(
            self.state["history"],
            self.dir / "loss.png",
            "train (sampled softmax)" if sampled else "train",
        )
        if self.opts.verbose:
            print(
                f"epoch {epoch + 1}: train loss {record['train_loss']:.3f}, valid loss "
                f"{valid_loss:.3f} (perplexity {math.exp(valid_loss):.1f}), "
                f"{record['tokens_per_second']:.0f} tokens/s",
                file=sys.stderr,
            )
        self.save_checkpoint()
        return True


def plot_losses(history, path, train_label="train"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label=train_label)
    ax.plot(epochs, [h["valid_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def encode_parts(tokenizer, split, conversations, config):
    """{"train": Encoded, "valid": Encoded}: the examples of the split's two training parts."""
    from core.corpora import examples_from
    from core.model.batches import encode_examples

    return {
        name: encode_examples(
            tokenizer, examples_from(split.part(conversations, name), config.context_turns), config
        )
        for name in ("train", "valid")
    }


def train(corpus, out, config, options, decoding=None):
    """Train a model on a corpus spec into directory `out`, resuming an interrupted run.

    Returns the training history. Raises `TrainingInterrupted` after saving a checkpoint.
    """
    return train_prepared(prepare(corpus, out, config, options, decoding), options)


def train_prepared(prepared, options):
    """The TensorFlow part of `train`, on what `preparation.prepare` made ready."""
    from core.model.seq2seq import Seq2Seq

    keras.utils.set_random_seed(options.seed)
    model = Seq2Seq(prepared.meta.config).build_all()
    trainer = Trainer(model, prepared.train, prepared.valid, prepared.out, options)
    history = trainer.fit()
    prepared.meta.training = trainer.summary()
    artifact.write_meta(prepared.out, prepared.meta)
    warn_if_weak(prepared, trainer.state["best"], options.max_valid_examples)
    return history
