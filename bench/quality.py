"""Reply quality: parley against the seed models and a retrieval bot, one held-out split.

    .venv/bin/python -m bench.quality [--budget 50] [--jobs 2] [--levers]

Trains, each with the same budget of CPU minutes (summed over cores, training steps only)
and the same tokenizer, split and examples:
- seed LSTM: the seed documents' model (one-layer LSTM encoder-decoder, no attention,
  256 units, full softmax), decoded greedily;
- parley: the attention model. With its training settings unchanged since the responder's
  first version, the same weights also serve baseline 2, the first version's greedy
  decoding, beside the decodings parley has now;
and builds a retrieval bot (TF-IDF nearest neighbour over the training contexts' last
turns, answering with the stored reply, as ChatterBot does). parley's responder, as it
ships, chooses among the replies of its reply index (built from the training split and
chatterbot-corpus's small talk, `INDEX_EXTRA`) with the same weights.

Every system answers the same held-out contexts of chitchat-dataset (the test split, then
the validation split if needed) until it has written `--words` words; the diversity
figures are taken over exactly that many words, BLEU-2, embedding similarity and the
mid-sentence share over the replies written. Hits@1 of 20 ranks each of 500 test replies
against 19 others with the system's own scorer. Trained models stay in `--work`; a later
run reuses them and only evaluates. These figures are diagnostics: which replies people
prefer is measured by blind judging (`bench.judge`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.corpora import Example
from core.model.config import DecodeOptions
from core.model.evaluation import ReplyFn

CORPUS = "chitchat"
WORK = Path(__file__).resolve().parent / "work"


def train_parley(work: Path, budget: float) -> Path:
    from core.model.config import ModelConfig, TrainOptions
    from core.model.training import train

    out = work / "parley"
    if not _trained(out):
        train(CORPUS, out, ModelConfig(), TrainOptions(epochs=100, max_cpu_minutes=budget))
    return out


def train_seed(work: Path, budget: float) -> Path:
    """The seed LSTM, on parley's tokenizer, split and examples."""
    import keras

    from bench.seed_models import seed_lstm, seed_lstm_config
    from core.corpora import load_corpus
    from core.model import artifact
    from core.model.config import TrainOptions
    from core.model.training import Trainer, encode_parts

    out, source = work / "seed-lstm", work / "parley"
    if _trained(out):
        return out
    while not (source / artifact.SPLIT).is_file():  # parley's run writes them first
        time.sleep(5)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = artifact.load_tokenizer(source)
    split = artifact.load_split(source)
    tokenizer.save(out / artifact.TOKENIZER)
    split.save(out / artifact.SPLIT)
    config = seed_lstm_config(tokenizer.vocab_size)
    parts = encode_parts(tokenizer, split, load_corpus(CORPUS), config)
    options = TrainOptions(epochs=100, max_cpu_minutes=budget)
    keras.utils.set_random_seed(options.seed)
    trainer = Trainer(seed_lstm(config), parts["train"], parts["valid"], out, options)
    trainer.fit()
    meta = artifact.ModelMeta(config, CORPUS, DecodeOptions(method="greedy", no_repeat_ngram=0))
    meta.training = trainer.summary()
    artifact.write_meta(out, meta)
    return out


def _trained(directory: Path) -> bool:
    from core.errors import ModelFormatError
    from core.model import artifact

    try:
        return bool(artifact.read_meta(directory).training)
    except ModelFormatError:
        return False


TRAINERS = {"parley": train_parley, "seed-lstm": train_seed}


def train_all(work: Path, budget: float, jobs: int) -> None:
    """Train what is missing; with `jobs` > 1, in parallel processes of one thread each."""
    missing = [name for name in TRAINERS if not _trained(work / name)]
    if jobs <= 1:
        for name in missing:
            TRAINERS[name](work, budget)
        return
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    command = [sys.executable, "-m", "bench.quality", "--work", str(work), "--budget", str(budget)]
    procs = [subprocess.Popen([*command, "--train", name], env=env) for name in missing]
    if any(p.wait() for p in procs):
        raise SystemExit("a training run failed")


# -- the systems -------------------------------------------------------------------------

# Decodings spell out what they rely on, so that changing parley's defaults does not
# change the baselines or the levers.
PLAIN = {"min_length": 1, "no_repeat_ngram": 3}
BASELINE2 = {**PLAIN, "method": "greedy"}  # the responder's first version, greedy decoding
# How the bundled model generated its replies before the responder chose among candidates.
FORMER = {**PLAIN, "method": "sample", "temperature": 0.8, "top_p": 0.9, "min_length": 12}
# The corpora besides chitchat's training split whose replies the bundled model's index
# holds: chatterbot-corpus's small talk (its bot-profile topics are the persona's job).
INDEX_EXTRA = tuple(
    f"chatterbot:english/{topic}"
    for topic in (
        "greetings",
        "conversations",
        "emotion",
        "food",
        "humor",
        "movies",
        "sports",
        "literature",
        "psychology",
    )
)


@dataclass
class System:
    name: str
    reply: ReplyFn
    rank: Any  # (context, candidate examples) -> scores, for hits@1
    model: Any = None  # a Seq2Seq-like model: its test perplexity is measured
    cpu_minutes: float | None = None


def load_seed(directory: Path) -> Any:
    from bench.seed_models import seed_lstm
    from core.model import artifact
    from core.model.responder import Responder

    meta = artifact.read_meta(directory)
    model = seed_lstm(meta.config)
    model.assign_weights(artifact.load_weights(directory / artifact.WEIGHTS))
    return Responder(model, artifact.load_tokenizer(directory), meta)


def systems(work: Path, parley: Any, train: list[Example], seed: int = 0) -> list[System]:
    """The baselines, the bundled model's former decoding, and parley's responder."""
    from bench.retrieval import TfidfRetrieval
    from core.model import artifact, indexing
    from core.model.evaluation import likelihood_rank, responder_rank, seeded
    from core.model.index import FILE
    from core.model.responder import Responder

    def cpu(directory: Path) -> float:
        return float(artifact.read_meta(directory).training["cpu_seconds"]) / 60

    def decoder(options: dict[str, Any]) -> Any:
        return Responder(parley.model, parley.tokenizer, parley.meta, DecodeOptions(**options))

    if not (work / "parley" / FILE).is_file():
        indexing.build(work / "parley", INDEX_EXTRA, parley)
    chooser = Responder.load(work / "parley", warm_up=False)
    seed_lstm, first, former = load_seed(work / "seed-lstm"), decoder(BASELINE2), decoder(FORMER)
    retrieval = TfidfRetrieval(train, seed)
    minutes = cpu(work / "parley")
    return [
        System(
            "1. seed LSTM, no attention (greedy)",
            seeded(seed_lstm, generate=True),
            likelihood_rank(seed_lstm),
            seed_lstm.model,
            cpu(work / "seed-lstm"),
        ),
        System(
            "2. attention, first version (greedy)",
            seeded(first, generate=True),
            likelihood_rank(first),
            parley.model,
            minutes,
        ),
        System("3. retrieval, TF-IDF", retrieval.reply, retrieval.rank),
        System(
            f"4. bundled model, generating ({describe(former.options)})",
            seeded(former, generate=True),
            likelihood_rank(former),
            parley.model,
            minutes,
        ),
        System(
            "parley: index + persona, ranked by the model",
            seeded(chooser),
            responder_rank(chooser),
            parley.model,
            minutes,
        ),
    ]


def describe(options: DecodeOptions) -> str:
    o = options
    if o.method == "sample":
        text = f"sampling, T {o.temperature:g}, top-p {o.top_p:g}"
    elif o.method == "beam":
        text = f"beam {o.beam_width}, length penalty {o.length_penalty:g}"
    else:
        text = "greedy"
    if o.min_length > 1:
        text += f", at least {o.min_length} tokens"
    return text + ("" if o.no_repeat_ngram else ", no n-gram blocking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=WORK, help="where trained models stay")
    parser.add_argument("--budget", type=float, default=50.0, help="CPU minutes per model")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once")
    parser.add_argument("--words", type=int, default=50_000, help="words each system writes")
    parser.add_argument(
        "--levers", action="store_true", help="also compare decodings on the validation split"
    )
    parser.add_argument("--lever-words", type=int, default=20_000, help="words per decoding")
    parser.add_argument("--train", choices=sorted(TRAINERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.train:
        TRAINERS[args.train](args.work, args.budget)
        return
    train_all(args.work, args.budget, args.jobs)
    report(args.work, args.words, args.levers and args.lever_words)


# -- the report ------------------------------------------------------------------------------

METRICS = (
    "distinct-2",
    "top-10 share",
    "words/reply",
    "BLEU-2",
    "embedding sim.",
    "cut mid-sentence",
)


def cells(m: dict[str, Any]) -> tuple[str, ...]:
    similarity = m["embedding_similarity"]
    return (
        f"{m['distinct_2']:.3f}",
        f"{m['blandness_top10']:.1%}",
        f"{m['average_length']:.1f}",
        f"{m['bleu_2']:.4f}",
        "n/a" if similarity is None else f"{similarity:.3f}",
        f"{m['mid_sentence']:.1%}",
    )


# Decoding levers, tried on the validation split with parley's trained model. Every
# decoding keeps n-gram blocking (3) unless it says otherwise.
LEVERS = (
    {"method": "greedy", "no_repeat_ngram": 0},
    {"method": "greedy"},
    {"method": "beam"},
    {"method": "sample", "temperature": 0.8, "top_p": 0.9, "min_length": 1},
    {"method": "sample", "temperature": 1.0, "top_p": 0.95, "min_length": 1},
    {"method": "sample", "temperature": 0.8, "top_p": 0.9, "min_length": 12},
    {"method": "sample", "temperature": 1.0, "top_p": 0.95, "min_length": 12},
    {"method": "sample", "temperature": 1.0, "top_p": 1.0, "min_length": 12},
    {"method": "sample", "temperature": 1.1, "top_p": 1.0, "min_length": 12},
    {"method": "sample", "temperature": 1.0, "top_p": 1.0, "min_length": 16},
)


def report(work: Path, words: int, lever_words: int) -> None:
    """The table on the test split; with `lever_words`, the decoding levers too."""
    from bench.common import table
    from core.corpora import examples_from, load_corpus
    from core.model import artifact
    from core.model.evaluation import (
        answer_until,
        held_out,
        hits_at_1,
        perplexity,
        reply_metrics,
    )
    from core.model.responder import Responder

    split = artifact.load_split(work / "parley")
    conversations = load_corpus(CORPUS)
    parley = Responder.load(work / "parley", DecodeOptions(**FORMER), warm_up=False)  # type: ignore[arg-type]
    turns = parley.meta.config.context_turns
    test = examples_from(split.part(conversations, "test"), turns)
    contexts = held_out(split, conversations, turns)
    references = [ex.reply for ex in contexts]
    train = examples_from(split.part(conversations, "train"), turns)
    print(f"{len(test)} test examples; each system answers held-out contexts until {words} words")
    rows = []
    answers: dict[str, list[str]] = {}
    perplexities: dict[int, float] = {}
    for system in systems(work, parley, train):
        started = time.perf_counter()
        replies = answer_until(system.reply, contexts, words)
        ppl = cpu = ""
        if system.model is not None:
            key = id(system.model)
            if key not in perplexities:
                perplexities[key] = perplexity(system.model, parley.tokenizer, test)[0]
            ppl, cpu = f"{perplexities[key]:.1f}", f"{system.cpu_minutes:.0f}"
        hits = f"{hits_at_1(system.rank, test):.1%}"
        metrics = cells(reply_metrics(replies, references, words))
        rows.append((system.name, cpu, ppl, hits, *metrics))
        answers[system.name] = replies
        print(
            f"  {system.name}: {len(replies)} replies in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    print(table(rows, ("system", "train CPU-min", "perplexity", "hits@1 of 20", *METRICS)))
    print_latency(Responder.load(work / "parley"), [ex.context for ex in test[:60]])
    print_samples(test, answers)
    if lever_words:
        print_levers(parley, split.part(conversations, "valid"), lever_words)


def print_latency(responder: Any, contexts: list[tuple[str, ...]]) -> None:
    """parley's responder, one context at a time, as a quiet chat sees it."""
    from bench.common import pct

    times = []
    for context in contexts:
        started = time.perf_counter()
        responder.reply([context])
        times.append((time.perf_counter() - started) * 1000)
    print(
        f"\nparley's responder at batch 1, {len(times)} test contexts: "
        f"p50 {pct(times, 50):.1f} ms, p90 {pct(times, 90):.1f} ms"
    )


def print_samples(test: list[Example], answers: dict[str, list[str]], count: int = 6) -> None:
    shown = min(len(test), *(len(r) for r in answers.values()))
    print("\nSample exchanges (test split, spread over its conversations):")
    for i in range(0, shown, max(1, shown // count))[:count]:
        print()
        for turn in test[i].context:
            print(f"> {turn}")
        print(f"- reference: {test[i].reply}")
        for name, replies in answers.items():
            print(f"- {name.split(' (')[0]}: {replies[i]}")


def print_levers(parley: Any, valid: list[Any], words: int) -> None:
    from bench.common import table
    from core.corpora import examples_from
    from core.model.evaluation import answer_until, reply_metrics, seeded
    from core.model.responder import Responder

    examples = examples_from(valid, parley.meta.config.context_turns)
    references = [ex.reply for ex in examples]
    print(f"\nDecoding levers, parley's model on the validation split ({words} words each):")
    rows = []
    for lever in LEVERS:
        options = DecodeOptions(**{**PLAIN, **lever})  # type: ignore[arg-type]
        responder = Responder(parley.model, parley.tokenizer, parley.meta, options)
        replies = answer_until(seeded(responder, generate=True), examples, words)
        rows.append(
            (describe(responder.options), *cells(reply_metrics(replies, references, words)))
        )
    print(table(rows, ("decoding", *METRICS)))


if __name__ == "__main__":
    main()
