"""The `parley` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, get_args

from bots.logs import setup_logging
from bots.settings import BUNDLED_MODEL, Settings, WorkerSettings, load_settings
from core.errors import ConfigError, ParleyError, TrainingInterrupted, VocabularyTooSmall
from core.model.config import DecodeMethod, ModelConfig, TrainOptions
from core.model.responder import Responder  # cheap: TensorFlow loads with the first model

View = TypeVar("View")

# sysexits' EX_CONFIG: the units do not restart a process that exits with it.
EX_CONFIG = 78

# `parley train` options, named as the fields they set.
TRAIN_OPTIONS = {
    "epochs": "passes over the training data at most",
    "max_minutes": "stop after this much training time; 0 for no limit",
    "max_cpu_minutes": "stop after this much CPU time (summed over cores); 0 for no limit",
    "patience": "stop after this many epochs without validation improvement",
    "batch_tokens": "padded tokens per batch",
    "learning_rate": "Adam's learning rate",
    "lr_decay": "factor applied to the learning rate after each epoch",
    "seed": "seeds the split, the shuffling and the initial weights",
}
MODEL_OPTIONS = {
    "vocab_size": "tokenizer pieces",
    "embed_dim": "embedding size",
    "encoder_units": "GRU units of each encoder direction",
    "decoder_units": "GRU units of the decoder",
    "dropout": "dropout rate while training",
    "context_turns": "earlier turns the encoder sees",
    "max_context_tokens": "context tokens kept (the latest)",
    "max_reply_tokens": "longest reply in tokens, end mark included",
    "sampled_softmax": "output classes sampled per training step; 0 for the full softmax",
}

DESCRIPTION = """\
parley: a group-chat bot with its own seq2seq model.

Start here:
  parley serve                     a group chat in the browser, with the bundled model
  parley chat                      talk to the bundled model in the terminal
  parley train --out models/mine   train your own (default corpus: chitchat-dataset)
  parley eval models/mine          measure it on its held-out test conversations
  parley chat models/mine          talk to it

Settings come from PARLEY_* environment variables or a .env file (see .env.example).
"""


def _decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=get_args(DecodeMethod),
        help="decoding method (default: the model's, usually sample)",
    )
    p.add_argument("--beam-width", type=int, help="beams for --method beam")
    p.add_argument("--temperature", type=float, help="for --method sample")
    p.add_argument("--top-p", type=float, help="nucleus size for --method sample")
    p.add_argument("--min-length", type=int, help="shortest reply in tokens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="a group chat in the browser with the model in this process (the main job)",
        description="Serve chat rooms at http://PARLEY_HTTP_HOST:PARLEY_WEB_PORT/r/NAME and "
        "answer messages that mention the bot (@PARLEY_BOT_NAME) or start with /ask, with "
        "the model in this process. The queue is in memory unless PARLEY_REDIS_URL is set.",
    )
    serve.add_argument(
        "model",
        nargs="?",
        type=Path,
        help="model directory (default: $PARLEY_MODEL or the bundled model)",
    )
    _decode_args(serve)

    sub.add_parser(
        "web",
        help="the browser group chat alone; `parley worker` processes answer (needs Redis)",
        description="Serve the chat rooms like `parley serve`, without a model: questions "
        "go through Redis (PARLEY_REDIS_URL) to `parley worker` processes.",
    )

    chat = sub.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description="Chat in the terminal; the model sees your last turns. "
        "Type /reset to forget them, /quit to leave. When standard input is "
        "not a terminal, every line is a message and every reply one line.",
    )
    chat.add_argument(
        "model",
        nargs="?",
        type=Path,
        help=f"model directory (default: $PARLEY_MODEL or {BUNDLED_MODEL.name})",
    )
    _decode_args(chat)

    from core.corpora import HELP as CORPUS_HELP

    train = sub.add_parser(
        "train",
        help="train a model on a dialogue corpus",
        description="Train a tokenizer and a seq2seq model. Progress is "
        "checkpointed: after Ctrl-C or a kill, run the same command to resume.",
    )
    train.add_argument("--corpus", default="chitchat", help=CORPUS_HELP)
    train.add_argument("--out", type=Path, required=True, help="model directory to create")
    train.add_argument(
        "--index-extra",
        action="append",
        default=[],
        metavar="CORPUS",
        help="a further corpus whose replies the bot may choose from (repeatable)",
    )
    for name, text in {**TRAIN_OPTIONS, **MODEL_OPTIONS}.items():
        default = getattr(TrainOptions() if name in TRAIN_OPTIONS else ModelConfig(), name)
        train.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"{text} (default: {default})",
        )

    index = sub.add_parser(
        "index",
        help="(re)build a model's reply index and persona",
        description="Index the replies of the model's training conversations (and of the "
        "corpora given with --extra) for the bot to choose from, and add the default "
        "persona.yml if the model has none. `parley train` does this when it finishes.",
    )
    index.add_argument("model", type=Path)
    index.add_argument("--extra", action="append", default=[], metavar="CORPUS", help=CORPUS_HELP)

    ev = sub.add_parser("eval", help="perplexity and reply metrics on the held-out test split")
    ev.add_argument("model", type=Path)
    ev.add_argument(
        "--max-examples", type=int, default=None, help="test examples for perplexity (default: all)"
    )
    ev.add_argument(
        "--words",
        type=int,
        default=50_000,
        help="answer held-out contexts until the replies hold this many words; the "
        "diversity figures are taken over them (default: 50000)",
    )
    _decode_args(ev)

    worker = sub.add_parser(
        "worker",
        help="answer queued messages from Redis (PARLEY_REDIS_URL) until stopped",
        description="Take the oldest messages of up to PARLEY_WORKER_BATCH chats from Redis, "
        "answer them in one model batch, and queue the replies. Run as many workers, on as "
        "many machines, as the load needs. SIGTERM finishes the batch in hand and exits.",
    )
    worker.add_argument(
        "model",
        nargs="?",
        type=Path,
        help="model directory (default: $PARLEY_MODEL or the bundled model)",
    )
    worker.add_argument(
        "--port",
        type=_port,
        help="port of /healthz and /metrics, over PARLEY_WORKER_PORT (the systemd "
        "instance name: an environment file cannot override it)",
    )
    _decode_args(worker)

    sub.add_parser(
        "telegram",
        help="run the Telegram bot until stopped (PARLEY_TELEGRAM_*)",
        description="Receive Telegram updates (long polling, or a webhook with "
        "PARLEY_TELEGRAM_MODE=webhook), queue the questions in Redis for the workers and "
        "send their replies. /healthz and /metrics are on PARLEY_TELEGRAM_PORT.",
    )

    sub.add_parser(
        "slack",
        help="run the Slack bot until stopped (PARLEY_SLACK_*)",
        description="Answer the slash command (PARLEY_SLACK_COMMAND) and @-mentions: "
        "receive them on POST /slack/events (PARLEY_SLACK_MODE=http) or over Socket Mode "
        "(socket), queue the questions in Redis for the workers and send their replies. "
        "/healthz and /metrics are on PARLEY_SLACK_PORT.",
    )

    config = sub.add_parser(
        "config",
        help="check the settings and print them, secrets masked",
        description="Read the settings (PARLEY_* variables and .env) as the services will, "
        "print them with secrets masked, and exit non-zero naming any invalid or missing one.",
    )
    config.add_argument("action", choices=["check"])
    config.add_argument(
        "--env-file", type=Path, help="read this file as the services do (default: .env)"
    )
    config.add_argument(
        "--for",
        dest="role",
        choices=["worker", "web", "telegram", "slack"],
        help="also require the settings this process needs",
    )

    export = sub.add_parser("export", help="export the decoder as a TensorFlow SavedModel")
    export.add_argument("model", type=Path)
    export.add_argument("out", type=Path)
    return parser


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def _responder(model: Path | None, args: argparse.Namespace) -> Responder:
    """The model with the settings' and the command line's decoding options; not yet
    compiled (each process warms it up for what it will meet)."""
    settings = load_settings()
    responder = Responder.load(model or settings.model, warm_up=False, name=settings.bot_name)
    overrides = settings.decode_overrides()
    cli = {
        "method": args.method,
        "beam_width": args.beam_width,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "min_length": args.min_length,
    }
    overrides.update({k: v for k, v in cli.items() if v is not None})
    try:
        responder.options = replace(responder.options, **overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ParleyError(str(exc)) from None
    return responder


def _run_service(
    role: Callable[[Settings], View], run: Callable[[View], Coroutine[Any, Any, None]]
) -> int:
    """The settings and the process's view of them (`role`, which names every missing
    setting at once) checked before anything loads, then logging, then the process's loop
    until SIGTERM or SIGINT."""
    import asyncio

    settings = load_settings()
    view = role(settings)
    setup_logging(settings)
    asyncio.run(run(view))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bots.web import serve
    from core.model import artifact

    model = args.model or load_settings().model
    artifact.read_meta(model)  # a bad model fails now, not after the page is up
    # its own worker answers: the embedded store will do, Redis is used when set

    def load() -> Responder:  # the web process warms it up before it says it is ready
        return _responder(model, args)

    return _run_service(
        lambda settings: settings.web(shared_queue=False),
        lambda web: serve(web, load),
    )


def cmd_web(args: argparse.Namespace) -> int:
    from bots.web import serve

    return _run_service(Settings.web, lambda web: serve(web, None))


def cmd_chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    responder = _responder(args.model, args)
    responder.warm_up(batch=1)  # one conversation at a time
    turns: list[str] = []
    keep = responder.meta.config.context_turns
    if interactive:
        print("parley is listening. /reset forgets the conversation, /quit leaves.")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            turns.clear()
            if interactive:
                print("(conversation forgotten)")
            continue
        turns.append(text)
        reply = responder.reply([turns[-keep:]])[0]
        turns.append(reply)
        print(f"parley> {reply}" if interactive else reply, flush=True)
    return 0


def _check_train_args(args: argparse.Namespace) -> None:
    """Option values no corpus could train with, all named at once (--vocab-size depends
    on the corpus: the tokenizer says how small it may be)."""
    positive = ["epochs", "patience", "batch_tokens", "learning_rate", "lr_decay"]
    positive += ["embed_dim", "encoder_units", "decoder_units", "context_turns"]
    positive += ["max_context_tokens"]
    wrong = [f"--{n.replace('_', '-')} must be above 0" for n in positive if getattr(args, n) <= 0]
    for name in ("max_minutes", "max_cpu_minutes", "sampled_softmax", "seed"):
        if getattr(args, name) < 0:
            wrong.append(f"--{name.replace('_', '-')} must be 0 or more")
    if args.max_reply_tokens < 2:
        wrong.append("--max-reply-tokens must be at least 2 (a token and the end mark)")
    if not 0 <= args.dropout < 1:
        wrong.append("--dropout must be at least 0 and below 1")
    if wrong:
        raise ConfigError("; ".join(wrong))


@contextlib.contextmanager
def _training_warnings() -> Iterator[None]:
    """Training's warnings (a corpus too small to learn from) on standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("parley: warning: %(message)s"))
    logger = logging.getLogger("parley.training")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def cmd_train(args: argparse.Namespace) -> int:
    from core.corpora import load_corpus
    from core.model.preparation import prepare

    _check_train_args(args)
    config = ModelConfig(**{name: getattr(args, name) for name in MODEL_OPTIONS})
    options = TrainOptions(**{name: getattr(args, name) for name in TRAIN_OPTIONS})
    with _training_warnings():
        # Every corpus is read and checked before TensorFlow loads (10-20 s) and before
        # training: a bad line fails in a second, not after the import or the training.
        for spec in args.index_extra:
            load_corpus(spec)
        try:
            prepared = prepare(args.corpus, args.out, config, options)
        except VocabularyTooSmall as exc:
            raise ConfigError(
                f"--vocab-size {exc.asked} is too small for this corpus: its characters, the "
                f"special pieces and the 256 byte pieces need {exc.needed}; use --vocab-size "
                f"{exc.needed} or more (a size above what the corpus yields is cut to that)"
            ) from None
        from core.model.indexing import build
        from core.model.training import train_prepared

        history = train_prepared(prepared, options)
        best = min(h["valid_loss"] for h in history) if history else float("nan")
        index = build(args.out, args.index_extra)
    print(
        f"model saved in {args.out} (best validation loss {best:.3f}, {len(index)} replies "
        f"indexed); next: parley eval {args.out}"
    )
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from core.model.indexing import build

    index = build(args.model, args.extra)
    print(f"{len(index)} replies indexed in {args.model}; the persona is {args.model}/persona.yml")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from core.model.evaluation import evaluate, format_table

    responder = _responder(args.model, args)
    result = evaluate(args.model, responder, max_examples=args.max_examples, words=args.words)
    print(format_table(result))
    print(f"(written to {args.model / 'eval.json'})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.model.export import export_saved_model

    export_saved_model(Responder.load(args.model, warm_up=False), args.out)
    print(json.dumps({"saved_model": str(args.out), "signatures": ["greedy", "beam", "sample"]}))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from bots.worker import serve_worker

    def load() -> Responder:  # the worker warms it up before it says it is ready
        return _responder(args.model, args)

    def role(settings: Settings) -> WorkerSettings:
        view = settings.worker()
        return view if args.port is None else replace(view, port=args.port)

    return _run_service(role, lambda worker: serve_worker(worker, load))


def cmd_telegram(args: argparse.Namespace) -> int:
    from bots.telegram import serve_telegram

    return _run_service(Settings.telegram, serve_telegram)


def cmd_slack(args: argparse.Namespace) -> int:
    from bots.slack import serve_slack

    return _run_service(Settings.slack, serve_slack)


def cmd_config(args: argparse.Namespace) -> int:
    if args.env_file and not args.env_file.is_file():
        raise ConfigError(f"{args.env_file}: no such file")
    settings = load_settings(**({"_env_file": args.env_file} if args.env_file else {}))
    print("\n".join(settings.describe()))
    if args.role:
        ROLES[args.role](settings)
        print(f"# the settings {args.role} needs are set", file=sys.stderr)
    return 0


# `parley config check --for ROLE`: each builds the role's view, naming what it lacks.
ROLES: dict[str, Callable[[Settings], object]] = {
    "worker": Settings.worker,
    "web": Settings.web,
    "telegram": Settings.telegram,
    "slack": Settings.slack,
}

COMMANDS = {
    "serve": cmd_serve,
    "web": cmd_web,
    "chat": cmd_chat,
    "train": cmd_train,
    "index": cmd_index,
    "eval": cmd_eval,
    "worker": cmd_worker,
    "telegram": cmd_telegram,
    "slack": cmd_slack,
    "export": cmd_export,
    "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"parley: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ParleyError as exc:
        print(f"parley: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
