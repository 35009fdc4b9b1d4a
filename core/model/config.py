"""Model and decoding settings. Plain dataclasses: importing them does not load TensorFlow."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from core.errors import ModelFormatError

DecodeMethod = Literal["greedy", "beam", "sample"]


def _from_dict(cls: Any, data: dict[str, Any], what: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelFormatError(f"unknown {what} setting(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Sizes of the attention encoder-decoder and how it reads a conversation."""

    vocab_size: int = 8000
    embed_dim: int = 256
    encoder_units: int = 256  # per direction; the encoder is bidirectional
    decoder_units: int = 512
    dropout: float = 0.1
    tie_embeddings: bool = True  # output layer shares the embedding matrix
    label_smoothing: float = 0.0  # applies when training with the full softmax
    sampled_softmax: int = 1024  # classes sampled per training step; 0 = full softmax
    context_turns: int = 3  # how many previous turns the encoder sees
    max_context_tokens: int = 64
    max_reply_tokens: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "model")


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How replies are generated."""

    # Sampling by default: beam search at this model size favours very short, bland replies.
    method: DecodeMethod = "sample"
    beam_width: int = 4
    length_penalty: float = 0.6  # GNMT's alpha; 0 ranks beams by raw log-probability
    temperature: float = 0.8
    top_p: float = 0.9
    no_repeat_ngram: int = 3  # never emit an n-gram of tokens twice in one reply; 0 = off
    max_length: int = 32
    min_length: int = 1
    seed: int = 0  # for sampling: 0 draws a fresh seed per call, any other value repeats
    # Choosing among candidates (the reply index's and `samples` generated ones): score =
    # match similarity + pmi_weight * (log p(reply | context) - prior_weight * log p(reply)),
    # log-probabilities per token, among the candidates whose pointwise mutual information
    # log p(reply | context) - log p(reply) is at least min_pmi (all of them if none is):
    # a reply the conversation makes no likelier is one that would fit anywhere. Within
    # each of those two tiers, replies under min_words words rank after the longer ones.
    # candidates = 0 turns the index off: generated replies only.
    candidates: int = 24
    samples: int = 4
    pmi_weight: float = 0.5
    prior_weight: float = 0.5
    min_pmi: float = 0.3
    min_words: int = 3  # shorter candidates ("ok", "lol") rank after the longer ones

    def __post_init__(self) -> None:
        if self.method not in get_args(DecodeMethod):
            raise ValueError(f"decoding method must be greedy, beam or sample, not {self.method!r}")
        if self.beam_width < 1 or self.max_length < 1 or self.min_length < 1:
            raise ValueError("beam width, max length and min length must be at least 1")
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("top_p must be in (0, 1] and temperature above 0")
        if self.candidates < 0 or self.samples < 1:
            raise ValueError("candidates must be 0 (off) or more, samples at least 1")
        if self.no_repeat_ngram == 1 or self.no_repeat_ngram < 0:
            raise ValueError("no_repeat_ngram must be 0 (off) or at least 2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeOptions:
        return _from_dict(cls, data, "decoding")


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """How long and how hard to train."""

    epochs: int = 10
    batch_tokens: int = 6000  # padded source + target tokens per batch
    max_batch: int = 128
    learning_rate: float = 2e-3
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch
    clip_norm: float = 1.0
    patience: int = 2  # epochs without validation improvement before stopping
    checkpoint_minutes: float = 5.0
    seed: int = 0
    max_valid_examples: int = 4000
    max_minutes: float = 0.0  # 0 = no limit; otherwise stop (and finish) after this long
    # The same in CPU time summed over cores: a budget that does not depend on how many
    # cores the run gets or what else the machine is doing (for comparing models).
    max_cpu_minutes: float = 0.0
    verbose: bool = True
