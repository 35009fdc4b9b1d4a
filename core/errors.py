"""Errors that parley raises; only `bots` turns them into exit codes."""

from __future__ import annotations


class ParleyError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(ParleyError):
    """A setting is missing or malformed."""


class VocabularyTooSmall(ConfigError):
    """The vocabulary asked for cannot hold a corpus's characters and the fixed pieces."""

    def __init__(self, asked: int, needed: int) -> None:
        super().__init__(
            f"a vocabulary of {asked} pieces is too small for this corpus: its characters, "
            f"the special pieces and the 256 byte pieces need at least {needed}"
        )
        self.asked = asked
        self.needed = needed


class CorpusError(ParleyError):
    """A corpus file is missing, empty or malformed.

    The message names the file and, where it applies, the line. An error for several bad
    lines (`several`) lists them, one per line, and keeps each in `problems`.
    """

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.problems: list[CorpusError] = [self]

    @classmethod
    def several(cls, path: object, problems: list[CorpusError], total: int) -> CorpusError:
        """One error for a corpus with `total` bad lines, listing `problems` (the first
        of them): fixing a corpus takes one run, not one run per bad line."""
        if total == 1:
            return problems[0]
        listed = "\n".join(f"  {p}" for p in problems)
        more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
        error = cls(path, f"{total} bad lines; fix them and run again:\n{listed}{more}")
        error.problems = list(problems)
        return error


class ModelFormatError(ParleyError):
    """A model directory is missing, corrupt, or of another format version."""


class TrainingInterrupted(ParleyError):
    """Training stopped on a signal after saving a checkpoint; rerunning resumes it."""


class StoreError(ParleyError):
    """The store (Redis, or the embedded one) failed; stores raise only these."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now: a refused or cut connection, a timeout, a cluster
    moving a slot or electing a master. Waiting heals it."""


class StoreAuthError(StoreError):
    """The store refused parley's credentials. No wait heals it."""
