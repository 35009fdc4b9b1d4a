"""Blind side-by-side judging of reply systems on group-chat prompts.

    python -m bench.judge answer [--prompts bench/judging/prompts.json] --run NAME
    python -m bench.judge score --run NAME

`answer` has every system hold each conversation of the prompt file (each system sees its
own earlier replies, as in a real chat), then writes into bench/judging/NAME/:
- sheet.md: every reply of every system, shuffled, without system names, each with the
  conversation so far; this file and the scale in it are all a judge sees;
- key.json: which system wrote each item (never shown to judges).
Judges write scores-JUDGE.json: {"ITEM": [relevance, fluency], ...}, each 0-2.
`score` prints each system's mean per judge and overall, the judges' agreement, and the
share of replies cut mid-sentence.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import DEFAULT_MODEL, table
from core.metrics import mid_sentence

HERE = Path(__file__).resolve().parent / "judging"
PROMPTS = HERE / "prompts.json"
SCALE = """\
Score each reply twice, as a member of the group chat would:

relevance
  2 = responds to the last message, sensibly, given the conversation so far
  1 = loosely related, vague or generic (would fit many messages), or partly off
  0 = ignores the message, contradicts the conversation, or makes no sense here
fluency
  2 = natural, well-formed chat English (casual style and lower case are fine)
  1 = understandable but awkward, ungrammatical or cut off
  0 = broken: word salad, garbled, unreadable

Write your scores as JSON, one entry per item: {"1": [relevance, fluency], "2": [...], ...}
"""

Reply = Callable[[list[str]], str]  # the conversation so far, oldest first -> a reply


def systems(names: Sequence[str]) -> dict[str, Reply]:
    from bench.quality import FORMER
    from bench.retrieval import TfidfRetrieval
    from core.corpora import examples_from, load_corpus
    from core.model import artifact
    from core.model.responder import Responder

    model = DEFAULT_MODEL
    out: dict[str, Reply] = {}
    responder = Responder.load(model, warm_up=False)
    if "retrieval" in names:
        split = artifact.load_split(model)
        train = examples_from(split.part(load_corpus("chitchat"), "train"), 3)
        bot = TfidfRetrieval(train, seed=1)
        out["retrieval"] = lambda turns: bot.reply([turns])[0]
    if "generated" in names:  # the bundled model's decoder alone, as first shipped
        out["generated"] = lambda turns: responder.generate([turns], **FORMER, seed=7)[0]
    for name in names:  # parley, or a variant: parley@pmi_weight=0.25,prior_weight=1
        if name.partition("@")[0] == "parley":
            options = {
                k: int(v) if v.lstrip("-").isdigit() else float(v)
                for k, _, v in (o.partition("=") for o in name[7:].split(",") if o)
            }
            out[name] = lambda turns, o=options: responder.reply([turns], seed=7, **o)[0]
    return out


def answer(prompts: Path, run: Path, names: Sequence[str], seed: int = 0) -> None:
    conversations = json.loads(prompts.read_text())["conversations"]
    items = []
    for name, reply in systems(names).items():
        for conv in conversations:
            turns: list[str] = []
            for message in conv["turns"]:
                turns.append(message)
                text = reply(turns[-3:])
                items.append(
                    {
                        "system": name,
                        "conversation": conv["id"],
                        "turns": list(turns),
                        "reply": text,
                    }
                )
                turns.append(text)
    random.Random(seed).shuffle(items)
    run.mkdir(parents=True, exist_ok=True)
    lines = ["# Replies to judge", "", SCALE]
    for number, item in enumerate(items, start=1):
        item["item"] = str(number)
        lines += [f"## item {number}", ""]
        for i, turn in enumerate(item["turns"]):
            lines.append(f"> {'person' if i % 2 == 0 else 'bot'}: {turn}")
        lines += ["", f"reply: {item['reply']}", ""]
    (run / "sheet.md").write_text("\n".join(lines))
    (run / "key.json").write_text(json.dumps(items, indent=1, ensure_ascii=False))
    print(f"{len(items)} items in {run / 'sheet.md'}")


def score(run: Path) -> None:
    key = {item["item"]: item for item in json.loads((run / "key.json").read_text())}
    judges = {
        path.stem.removeprefix("scores-"): {
            k: tuple(v) for k, v in json.loads(path.read_text()).items()
        }
        for path in sorted(run.glob("scores-*.json"))
    }
    names = sorted({item["system"] for item in key.values()})
    rows = []
    for name in names:
        mine = [k for k, item in key.items() if item["system"] == name]
        cells = [name, str(len(mine))]
        for axis in (0, 1):
            per_judge = [
                sum(scores[k][axis] for k in mine) / len(mine) for scores in judges.values()
            ]
            cells.append(" / ".join(f"{m:.2f}" for m in per_judge))
            cells.append(f"{sum(per_judge) / len(per_judge):.2f}")
        cut = round(mid_sentence([key[k]["reply"] for k in mine]) * len(mine))
        cells.append(str(cut))
        rows.append(tuple(cells))
    print(f"judges: {', '.join(judges)}")
    print(
        table(
            rows,
            (
                "system",
                "replies",
                "relevance per judge",
                "relevance",
                "fluency per judge",
                "fluency",
                "cut mid-sentence",
            ),
        )
    )
    if len(judges) >= 2:
        print()
        a, b = list(judges.values())[:2]
        for axis, label in ((0, "relevance"), (1, "fluency")):
            same = sum(a[k][axis] == b[k][axis] for k in key) / len(key)
            close = sum(abs(a[k][axis] - b[k][axis]) <= 1 for k in key) / len(key)
            print(f"{label}: judges agree exactly on {same:.0%}, within one point on {close:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["answer", "score"])
    parser.add_argument("--run", required=True, help="folder name under bench/judging/")
    parser.add_argument("--prompts", type=Path, default=PROMPTS)
    parser.add_argument("--systems", default="retrieval;generated;parley")
    args = parser.parse_args()
    run = HERE / args.run
    if args.command == "answer":
        answer(args.prompts, run, args.systems.split(";"))
    else:
        score(run)


if __name__ == "__main__":
    main()
