"""What redis-py's exceptions mean to parley: the one translation of the Redis backend's
failures into `core.errors`' store errors, applied to every public method of `RedisStore`.

- `StoreUnavailable`: waiting heals it (no connection, a timeout, a Redis Cluster moving a
  slot or electing a master, a server loading its data or out of memory);
- `StoreAuthError`: Redis refused parley's credentials (a wrong password, an ACL user
  without the commands parley runs); no wait heals it;
- `StoreError`: any other failure of Redis (a script error, a malformed reply).

Anything that is not the backend's (a bug, a value that cannot be encoded) propagates as
it is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import redis.exceptions as rex

from core.errors import StoreAuthError, StoreError, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=type)

# A wrong password, or an ACL user lacking a command: no wait heals these. (redis-py
# counts AuthenticationError as a ConnectionError, so these are checked first.)
_REFUSED = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.AuthenticationWrongNumberOfArgsError,
    rex.NoPermissionError,
)
# What waiting heals: no connection (refused, reset, timed out, none free in the pool, a
# server still loading its data), a Redis Cluster moving a slot (MOVED, ASK, TRYAGAIN) or
# electing a master (CLUSTERDOWN, MASTERDOWN, READONLY on a demoted one), a full memory,
# and the socket errors redis-py lets through.
_TRANSIENT = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ClusterError,
    rex.AskError,
    rex.TryAgainError,
    rex.ReadOnlyError,
    rex.OutOfMemoryError,
    rex.SlotNotCoveredError,
    OSError,
)
# The same, as the first word of an error reply that reached redis-py as a plain
# ResponseError (from inside a Lua script, or a server newer than the client).
_REFUSED_REPLIES = {"NOAUTH", "WRONGPASS", "NOPERM"}
_TRANSIENT_REPLIES = {
    "LOADING", "BUSY", "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "OOM"
}  # fmt: skip


def store_error(exc: Exception) -> StoreError | None:
    """The store error that `exc`, raised by redis-py, stands for; None for what is not the
    backend's (a bug, a value that cannot be encoded), which propagates as it is."""
    code = str(exc).split(" ", 1)[0] if isinstance(exc, rex.ResponseError) else ""
    if isinstance(exc, _REFUSED) or code in _REFUSED_REPLIES or _refused_within(exc):
        return StoreAuthError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, _TRANSIENT) or code in _TRANSIENT_REPLIES:
        return StoreUnavailable(f"Redis unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, (rex.RedisError, rex.RedisClusterException)):
        return StoreError(f"Redis: {type(exc).__name__}: {exc}")
    return None


def _refused_within(exc: BaseException) -> bool:
    """Whether a refusal caused `exc`: redis-py reports a wrong password met while it
    connects as a ConnectionError raised from the AuthenticationError."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _REFUSED):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _translated(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(method)
    async def translating(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            error = store_error(exc)
            if error is None:
                raise
            raise error from exc

    return translating


def backend_errors_translated(cls: C) -> C:
    """Wrap every public coroutine method of `cls` so that redis-py's exceptions leave it
    as store errors: one place, so a method added later cannot leak them."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _translated(member))
    return cls
