from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bots.cli import COMMANDS, EX_CONFIG, main
from bots.settings import BUNDLED_MODEL
from core.text import words


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_names_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    listed = set(re.findall(r"^    (\w+)\s", result.stdout, re.M))
    assert listed >= set(COMMANDS)


@pytest.mark.slow
def test_chat_with_the_bundled_model_from_a_pipe() -> None:
    assert (BUNDLED_MODEL / "weights.npz").is_file(), "the bundled model is missing"
    result = run_cli(
        "chat",
        "--method",
        "greedy",
        stdin="hi there! how are you?\n\n/reset\nwhat do you do for fun?\nwhat is your name?\n",
        env={"PARLEY_BOT_NAME": "Quill"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    replies = result.stdout.splitlines()
    assert len(replies) == 3  # one line per message; blank lines and /reset answer nothing
    assert all(words(r) and r.isascii() and any(c.isalpha() for c in r) for r in replies), replies
    assert replies[0] != replies[1]
    assert "Quill" in replies[2]  # the name setting reaches the persona


@pytest.mark.slow
def test_chat_keeps_context_until_reset(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.model.responder import WARM_UP, Responder

    responder = Responder.load(tiny_model, warm_up=False)
    seen: list[list[str]] = []
    answer = responder.reply

    def reply(contexts: list[list[str]]) -> list[str]:
        seen.extend(list(c) for c in contexts)
        return answer(contexts)

    monkeypatch.setattr(responder, "reply", reply)
    monkeypatch.setattr("bots.cli._responder", lambda model, args: responder)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\nwhat did you eat\n/reset\nhi\n"))
    assert main(["chat", str(tiny_model)]) == 0
    first, second, third = capsys.readouterr().out.splitlines()
    keep = responder.meta.config.context_turns
    assert (
        seen
        == [
            [WARM_UP],  # chat compiles what a reply needs before it reads the first line
            ["hello there"],
            ["hello there", first, "what did you eat"][-keep:],
            ["hi"],
        ]
    )
    assert all(words(r) for r in (first, second, third))


def test_bad_setting_is_named() -> None:
    result = run_cli("chat", stdin="hi\n", env={"PARLEY_DECODING": "telepathy"})
    assert result.returncode == EX_CONFIG
    assert "PARLEY_DECODING" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", str(tmp_path / "nowhere")]) == 2
    assert "not a parley model directory" in capsys.readouterr().err


def test_bad_corpus_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "mine.tsv"
    corpus.write_text("hello\tworld\nno tab on this line\n")
    assert main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "m")]) == 2
    assert f"{corpus}:2: no tab" in capsys.readouterr().err


# `parley train` run in a subprocess that reports whether TensorFlow was imported.
TRAIN_AND_TELL = (
    "import sys\n"
    "from bots.cli import main\n"
    "code = main(['train', *sys.argv[1:]])\n"
    "print('tensorflow' in sys.modules)\n"
    "sys.exit(code)\n"
)


def train_and_tell(*args: str) -> tuple[int, bool, str]:
    """(exit code, whether TensorFlow was imported, standard error) of `parley train`."""
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_TELL, *args], capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stdout.strip() == "True", result.stderr


def test_a_bad_corpus_fails_before_tensorflow_loads_naming_every_bad_line(tmp_path: Path) -> None:
    corpus = tmp_path / "mine.tsv"
    lines = ["hello\tworld"] + [f"no tab on line {n}" for n in range(2, 27)] + ["\tno context"]
    corpus.write_text("\n".join(lines) + "\n")
    code, tensorflow, err = train_and_tell("--corpus", str(corpus), "--out", str(tmp_path / "m"))
    assert (code, tensorflow) == (2, False), err
    assert err.startswith(f"parley: error: {corpus}: 26 bad lines; fix them and run again:\n")
    listed = [line.strip() for line in err.splitlines()[1:]]
    assert listed[:20] == [
        f"{corpus}:{n}: no tab: expected 'context<TAB>reply'" for n in range(2, 22)
    ]
    assert listed[20:] == ["... and 6 more"]
    assert "Traceback" not in err and not (tmp_path / "m").exists()


def test_an_impossible_vocabulary_size_is_one_line_saying_what_works(tmp_path: Path) -> None:
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("".join(f"question {n}?\tanswer number {n}.\n" for n in range(30)))
    code, tensorflow, err = train_and_tell(
        "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--vocab-size", "100"
    )
    assert (code, tensorflow) == (EX_CONFIG, False), err
    [line] = err.splitlines()
    needed = re.search(r"use --vocab-size (\d+) or more", line)
    assert line.startswith("parley: configuration error: --vocab-size 100 is too small"), line
    assert needed and int(needed.group(1)) > 261, line
    assert not (tmp_path / "m").exists()


def test_a_bad_index_extra_corpus_fails_before_training(tmp_path: Path) -> None:
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("".join(f"question {n}?\tanswer {n}.\n" for n in range(30)))
    extra = tmp_path / "extra.tsv"
    extra.write_text("fine\tthanks\nbroken\n")
    code, tensorflow, err = train_and_tell(
        "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--index-extra", str(extra)
    )
    assert (code, tensorflow) == (2, False), err
    assert f"{extra}:2: no tab" in err and not (tmp_path / "m").exists()


def test_a_corpus_too_small_to_split_is_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "two.tsv"
    corpus.write_text("hi\tthere\nhow are you\tfine\n")
    code, tensorflow, err = train_and_tell("--corpus", str(corpus), "--out", str(tmp_path / "m"))
    assert (code, tensorflow) == (2, False), err
    assert err.startswith(f"parley: error: {corpus}: 2 conversation(s) are too few") and (
        len(err.splitlines()) == 1
    ), err


def test_impossible_training_options_are_named_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--out", str(tmp_path / "m"), "--epochs", "0", "--dropout", "1.5"]
    assert main(args) == EX_CONFIG
    err = capsys.readouterr().err
    assert "--epochs must be above 0" in err and "--dropout must be at least 0 and below 1" in err


@pytest.mark.slow
def test_eval_prints_and_writes_metrics(
    tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tiny_model), "--words", "300", "--max-examples", "100"]) == 0
    out = capsys.readouterr().out
    for label in ("perplexity", "distinct-1", "distinct-2", "repeated 2-gram rate", "samples:"):
        assert label in out
    result = json.loads((tiny_model / "eval.json").read_text())
    assert 0 < result["words"] <= 300 and result["replies"] <= result["words"]
    assert 1 < result["perplexity"] < 400
    assert len(result["samples"]) == 6 and all(s["reply"] for s in result["samples"])


@pytest.mark.slow
def test_eval_when_the_corpus_lost_the_test_conversations(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from core.corpora import Split
    from core.model import artifact

    model = Path(shutil.copytree(tiny_model, tmp_path / "tiny"))
    split = artifact.load_split(model)
    Split(split.seed, split.valid, frozenset({"gone"})).save(model / artifact.SPLIT)
    assert main(["eval", str(model)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("parley: error: jsonl:") and "no test example to measure" in line


def test_cli_and_core_import_without_tensorflow() -> None:
    # Adapters and the command line start fast: TensorFlow loads with the first model only.
    code = (
        "import sys, bots.cli, adapters, core.corpora, core.model.responder, core.metrics; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.slow
def test_export_command(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tiny_model), str(tmp_path / "sm")]) == 0
    assert json.loads(capsys.readouterr().out)["signatures"] == ["greedy", "beam", "sample"]
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


def test_worker_needs_redis() -> None:
    result = run_cli("worker", env={"PARLEY_REDIS_URL": ""})
    assert result.returncode == EX_CONFIG and "PARLEY_REDIS_URL is not set" in result.stderr


@pytest.mark.slow
async def test_worker_answers_from_redis_and_stops_on_sigterm(
    tiny_model: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import signal

    from core.messages import ChatKey, Incoming
    from core.queue.redis_store import RedisStore

    redis_server.flush()
    store = RedisStore.from_url(redis_server.url)
    rooms = [ChatKey("web", "sky"), ChatKey("web", "kitchen")]
    for room, text in zip(rooms, ["how is the weather", "what did you eat"], strict=True):
        await store.enqueue(Incoming(room, "ann", text, "m1"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "worker", str(tiny_model), "--method", "greedy"],
        # a batch of two: the two rooms in one batch, and two decoder shapes to compile
        env={**os.environ, "PARLEY_REDIS_URL": redis_server.url, "PARLEY_WORKER_BATCH": "2"},
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):
            answered = [await store.replies(room) for room in rooms]
            if all(answered) or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        weather, food = [r[0].text for r in answered]
        assert any(w in weather for w in ("sunny", "rain", "cold")), weather
        assert any(w in food for w in ("pizza", "pasta", "soup")), food
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        await store.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"worker stopped" in err


@pytest.mark.slow
def test_index_builds_the_reply_index_and_persona(
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    from core.model.index import ReplyIndex

    model = tmp_path / "tiny"
    shutil.copytree(tiny_model, model)
    (model / "persona.yml").unlink(missing_ok=True)
    extra = tmp_path / "extra.tsv"
    extra.write_text("what is your favourite board game\tChess, every time.\n")
    result = run_cli("index", str(model), "--extra", f"tsv:{extra}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replies indexed" in result.stdout
    assert (model / "index.npz").is_file() and (model / "persona.yml").is_file()
    index = ReplyIndex.load(model / "index.npz")
    assert index.search(["what is your favourite board game?"], 1)[0].text == "Chess, every time."
    monkeypatch.setenv("PARLEY_BOT_NAME", "Kim")
    monkeypatch.setattr("sys.stdin", io.StringIO("what is your name?\n"))
    assert main(["chat", str(model)]) == 0
    assert "Kim" in capsys.readouterr().out  # the persona, with the bot's name
    assert main(["index", str(tmp_path / "nothing-here")]) != 0
    assert "parley.json" in capsys.readouterr().err


def test_a_wrong_redis_password_stops_an_adapter_with_one_line(tmp_path: Path) -> None:
    import socket

    from support.redis_server import RedisServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = RedisServer(tmp_path / "r", password="s3cret").start()
    try:
        env = {
            "PARLEY_REDIS_URL": f"{server.url}?password=wrong",
            "PARLEY_WEB_PORT": str(port),
            "PARLEY_HTTP_HOST": "127.0.0.1",
        }
        result = run_cli("web", env=env, timeout=60)
    finally:
        server.stop()
    assert result.returncode == EX_CONFIG, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "parley: configuration error: PARLEY_REDIS_URL: Redis refused the password"
    )
