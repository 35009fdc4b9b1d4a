"""`parley index`: build a model's reply index and persona from corpora.

The stored pairs are (the end of a turn, the start of the turn that answered it): a turn
in chat logs often joins several messages, and the reply that follows answers the last
of them, with its first sentences. Only the training split of the model's own corpus is
indexed, so held-out figures stay held out; further corpora (say, chatterbot-corpus's
small talk) are indexed whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.corpora import Conversation, load_corpus
from core.model import artifact
from core.model.index import FILE, ReplyIndex
from core.model.persona import Persona
from core.text import first_sentences, last_sentences

MESSAGE_WORDS = 20  # the end of the answered turn kept as the message to match
REPLY_WORDS = 25  # a stored reply is the answering turn's first sentences, up to this


def pairs(conversations: Sequence[Conversation]) -> Iterator[tuple[str, str]]:
    for conv in conversations:
        for before, turn in zip(conv.turns, conv.turns[1:], strict=False):
            message = last_sentences(before, MESSAGE_WORDS)
            reply = first_sentences(turn, REPLY_WORDS)
            if message and reply:
                yield message, reply


def build(directory: Path, extra: Sequence[str] = (), responder: Any = None) -> ReplyIndex:
    """Index the model's training conversations plus the corpora `extra` names, score each
    reply's prior with the model, save `index.npz` and, if missing, `persona.yml`."""
    from core.model.responder import Responder

    directory = Path(directory)
    responder = responder or Responder.load(directory, warm_up=False)
    own = load_corpus(responder.meta.corpus)
    training = artifact.load_split(directory).part(own, "train")
    everything = list(pairs(training))
    for spec in extra:
        everything += pairs(load_corpus(spec))
    index = ReplyIndex.build(everything)
    index.prior = responder.priors(index.replies)
    index.save(directory / FILE)
    Persona.install(directory, index.scripts)
    return index
