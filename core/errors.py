"""Errors that parley raises; only `bots` turns them into exit codes."""

from __future__ import annotations


class ParleyError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(ParleyError):
    """A setting is missing or malformed."""


class CorpusError(ParleyError):
    """A corpus file is missing, empty or malformed.

    The message names the file and, where it applies, the line.
    """

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


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
