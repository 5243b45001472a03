"""Store errors described without the data they carry (no personal data in logs).

A failed statement's exception text holds its parameters (hidden by the engines'
``hide_parameters``) and, on PostgreSQL, a ``DETAIL`` line quoting the offending key
(``Key (hash)=(…) already exists``): a badge hash, a name. Log :func:`describe` of the
error, never the error itself nor its traceback.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError


def describe(err: BaseException) -> str:
    """The error's class and code (SQLSTATE, SQLite error name), without values."""
    name = type(err).__name__
    if isinstance(err, DBAPIError) and err.orig is not None:
        orig = err.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
        inner = type(orig).__name__
        return f"{name} ({inner}{', ' + str(code) if code else ''})"
    return name


def transient(err: BaseException) -> bool:
    """Whether ``err`` is the store being unavailable (retry later), not the data."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, OperationalError | InterfaceError | DisconnectionError)
