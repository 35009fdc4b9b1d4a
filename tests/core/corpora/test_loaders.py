from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.corpora import Split, examples_from, load_corpus
from core.corpora.types import Conversation
from core.errors import CorpusError

SEP = " +++$+++ "


def write_cornell(folder: Path, lines: list[str], convs: list[str], enc: str = "utf-8") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "movie_lines.txt").write_bytes("\n".join(lines).encode(enc))
    (folder / "movie_conversations.txt").write_bytes("\n".join(convs).encode(enc))
    return folder


def cornell_line(lid: str, char: str, text: str) -> str:
    return SEP.join([lid, char, "m0", char.upper(), text])


def test_chitchat_default_corpus_has_thousands_of_conversations() -> None:
    convs = load_corpus("chitchat")
    assert len(convs) > 3000
    assert all(len(c.turns) >= 2 for c in convs)
    # consecutive messages of one sender are one turn
    assert all(t for c in convs[:50] for t in c.turns)


def test_chitchat_merges_one_senders_groups(tmp_path: Path) -> None:
    data = {
        "k1": {
            "messages": [
                [{"text": "hi", "sender": "a"}, {"text": "there", "sender": "a"}],
                [{"text": "again", "sender": "a"}],
                [{"text": "hello", "sender": "b"}],
            ]
        }
    }
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    assert load_corpus(f"chitchat:{path}") == [Conversation("k1", ("hi there again", "hello"))]


def test_cornell_latin1_and_speaker_merge(tmp_path: Path) -> None:
    folder = write_cornell(
        tmp_path / "cornell",
        [
            cornell_line("L1", "u0", "Can we make this quick?"),
            cornell_line("L2", "u1", "Well, I thought we'd start with pronunciation."),
            cornell_line("L3", "u1", "Café?"),
            cornell_line("L4", "u0", "Not the hacking."),
        ],
        [SEP.join(["u0", "u1", "m0", "['L1', 'L2', 'L3', 'L4']"])],
        enc="iso-8859-1",
    )
    (conv,) = load_corpus(f"cornell:{folder}")
    assert conv.turns == (
        "Can we make this quick?",
        "Well, I thought we'd start with pronunciation. Café?",
        "Not the hacking.",
    )
    assert load_corpus(str(folder)) == [conv]  # a bare folder is recognised


def test_cornell_bad_field_count_names_file_and_line(tmp_path: Path) -> None:
    folder = write_cornell(
        tmp_path / "c", [cornell_line("L1", "u0", "hi"), "L2 +++$+++ broken"], ["x"]
    )
    with pytest.raises(CorpusError, match=r"movie_lines.txt:2: expected 5 fields"):
        load_corpus(f"cornell:{folder}")


def test_cornell_unknown_line_id(tmp_path: Path) -> None:
    folder = write_cornell(
        tmp_path / "c",
        [cornell_line("L1", "u0", "hi")],
        [SEP.join(["u0", "u1", "m0", "['L1', 'L9']"])],
    )
    with pytest.raises(CorpusError, match=r"movie_conversations.txt:1: line id L9"):
        load_corpus(f"cornell:{folder}")


def test_chatterbot_chinese_ships_with_the_package() -> None:
    convs = load_corpus("chatterbot:chinese")
    assert len(convs) > 100
    assert any("你好" in t for c in convs for t in c.turns)


def test_chatterbot_file_and_bad_yaml(tmp_path: Path) -> None:
    good = tmp_path / "g.yml"
    good.write_text("categories: [x]\nconversations:\n- - 你好\n  - 嗨\n- - a\n  - b\n  - c\n")
    assert [c.turns for c in load_corpus(str(good))] == [("你好", "嗨"), ("a", "b", "c")]
    bad = tmp_path / "b.yml"
    bad.write_text("conversations:\n- - a\n  - [unclosed\n")
    with pytest.raises(CorpusError, match=r"b.yml:\d+: not valid YAML"):
        load_corpus(str(bad))
    wrong = tmp_path / "w.yml"
    wrong.write_text("just: a mapping\n")
    with pytest.raises(CorpusError, match="'conversations' list"):
        load_corpus(str(wrong))


def test_unknown_chatterbot_language() -> None:
    with pytest.raises(CorpusError, match="no language 'klingon'"):
        load_corpus("chatterbot:klingon")


def test_tsv_context_turns_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("hi\thello\n\nhow are you\tfine\tgreat to hear\n")
    convs = load_corpus(str(path))
    assert [c.turns for c in convs] == [("hi", "hello"), ("how are you", "fine", "great to hear")]
    path.write_text("hi\thello\nno tab here\n")
    with pytest.raises(CorpusError, match=r"pairs.tsv:2: no tab"):
        load_corpus(f"tsv:{path}")
    path.write_text("hi\t\n")
    with pytest.raises(CorpusError, match=r"pairs.tsv:1: empty field"):
        load_corpus(f"tsv:{path}")


def test_broken_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"hi\thello\nok\tfine\n\xff\xfe\tbroken\n")
    with pytest.raises(CorpusError, match=r"bad.tsv:3: not valid utf-8"):
        load_corpus(str(path))


def test_jsonl_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "turns": ["hi", "hello", "bye"]}\n{"turns": ["x", "y"]}\n')
    convs = load_corpus(str(path))
    assert convs[0] == Conversation("a", ("hi", "hello", "bye"))
    assert convs[1].id == "c.jsonl:2"
    path.write_text('{"turns": ["hi", "hello"]}\n{"turns": "nope"}\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: expected"):
        load_corpus(str(path))
    path.write_text('{"turns": ["hi", "hello"]}\n{not json\n')
    with pytest.raises(CorpusError, match=r"c.jsonl:2: not valid JSON"):
        load_corpus(str(path))


@pytest.mark.parametrize("spec", ["tsv:/nonexistent/x.tsv", "jsonl:/nonexistent/x.jsonl"])
def test_missing_file(spec: str) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(spec)


def test_empty_corpus(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text('{"turns": ["only one turn"]}\n')
    with pytest.raises(CorpusError, match="no conversation with at least two turns"):
        load_corpus(str(path))
    path.write_text("")
    with pytest.raises(CorpusError, match=r"empty\.jsonl"):
        load_corpus(str(path))


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "corpus.bin"
    path.write_text("x")
    with pytest.raises(CorpusError, match="cannot tell the corpus format"):
        load_corpus(str(path))


def test_examples_keep_previous_turns_as_context() -> None:
    conv = Conversation("c", ("a", "b", "c", "d", "e"))
    examples = examples_from([conv], context_turns=2)
    assert [(e.context, e.reply) for e in examples] == [
        (("a",), "b"),
        (("a", "b"), "c"),
        (("b", "c"), "d"),
        (("c", "d"), "e"),
    ]


def test_split_is_by_conversation_deterministic_and_saved(tmp_path: Path) -> None:
    convs = [Conversation(f"c{i}", ("a", "b", "c")) for i in range(200)]
    split = Split.make(convs, seed=3)
    assert split == Split.make(list(reversed(convs)), seed=3)
    assert split != Split.make(convs, seed=4)
    parts = {name: split.part(convs, name) for name in ("train", "valid", "test")}
    ids = [{c.id for c in part} for part in parts.values()]
    assert sum(map(len, ids)) == 200 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(parts["valid"]) == len(parts["test"]) == 10
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
    # every example of a conversation lands in the same part
    for name, part in parts.items():
        assert {e.conversation_id for e in examples_from(part, 3)} <= {c.id for c in parts[name]}


# -- a corpus with many bad lines is reported whole, in one run --------------------------------


def test_every_bad_line_is_listed_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "mine.tsv"
    path.write_bytes(
        b"hi\tthere\nno tab here\nok\tfine\n\tempty context\nstill no tab\n\xff\xfe\tx\nbye\tnow\n"
    )
    with pytest.raises(CorpusError) as caught:
        load_corpus(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: 4 bad lines")
    assert message.splitlines()[1:] == [
        f"  {path}:2: no tab: expected 'context<TAB>reply'",
        f"  {path}:4: empty field: expected 'context<TAB>reply'",
        f"  {path}:5: no tab: expected 'context<TAB>reply'",
        f"  {path}:6: not valid utf-8 text (byte 57)",
    ]
    assert [(p.path, p.line) for p in caught.value.problems] == [
        (path, 2),
        (path, 4),
        (path, 5),
        (path, 6),
    ]


def test_bad_lines_beyond_the_cap_are_counted(tmp_path: Path) -> None:
    from core.corpora.loaders import MAX_LISTED

    path = tmp_path / "c.jsonl"
    lines = ['{"turns": ["a", "b"]}'] + ["{broken"] * (MAX_LISTED + 7) + ['{"turns": 3}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError) as caught:
        load_corpus(str(path))
    message = str(caught.value).splitlines()
    assert message[0] == f"{path}: {MAX_LISTED + 8} bad lines; fix them and run again:"
    assert (
        message[1]
        == f"  {path}:2: not valid JSON: Expecting property name enclosed in double quotes"
    )
    assert len(message) == 1 + MAX_LISTED + 1
    assert message[-1] == "  ... and 8 more"  # the last of them, line 29's wrong turns, too


def test_every_file_of_a_folder_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "yml"
    folder.mkdir()
    (folder / "a.yml").write_text(
        "conversations:\n- - hi\n  - hello\n- just text\n- - x\n  - [y]\n"
    )
    (folder / "b.yml").write_text("conversations:\n- - a\n  - [unclosed\n")
    (folder / "c.yml").write_text("conversations:\n- - fine\n  - thanks\n")
    with pytest.raises(CorpusError) as caught:
        load_corpus(f"chatterbot:{folder}")
    assert [(p.path.name, p.line) for p in caught.value.problems] == [  # type: ignore[attr-defined]
        ("a.yml", 4),
        ("a.yml", 5),
        ("b.yml", 4),
    ]
    assert "conversation 2 is not a list of strings" in str(caught.value)
    assert "b.yml:4: not valid YAML" in str(caught.value)


def test_cornell_bad_records_of_both_files_are_listed(tmp_path: Path) -> None:
    folder = write_cornell(
        tmp_path / "c",
        [cornell_line("L1", "u0", "hi"), "L2 broken", cornell_line("L3", "u1", "yo"), "L4"],
        [SEP.join(["u0", "u1", "m0", "['L1', 'L3']"]), SEP.join(["u0", "u1", "m0", "['L9']"])],
    )
    with pytest.raises(CorpusError) as caught:
        load_corpus(f"cornell:{folder}")
    found = [(p.path.name, p.line) for p in caught.value.problems]  # type: ignore[attr-defined]
    assert found == [("movie_lines.txt", 2), ("movie_lines.txt", 4), ("movie_conversations.txt", 2)]


def test_a_latin1_corpus_is_read_whole_as_latin1(tmp_path: Path) -> None:
    # Each line of a file that is not UTF-8 as a whole is decoded the same way.
    folder = write_cornell(
        tmp_path / "c",
        [cornell_line("L1", "u0", "Ã© is two letters here"), cornell_line("L2", "u1", "café")],
        [SEP.join(["u0", "u1", "m0", "['L1', 'L2']"])],
        enc="iso-8859-1",
    )
    (conv,) = load_corpus(f"cornell:{folder}")
    assert conv.turns == ("Ã© is two letters here", "café")
