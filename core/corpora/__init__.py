"""Dialogue corpora: loaders, the conversation split, and training examples."""

from core.corpora.spec import HELP, load_corpus
from core.corpora.split import Split
from core.corpora.types import Conversation, Example, examples_from

__all__ = ["HELP", "Conversation", "Example", "Split", "examples_from", "load_corpus"]
