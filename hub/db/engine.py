"""Engine and session factory, built from settings (no import-time engine).

SQLite is opened in WAL mode with foreign keys on and ``secure_delete`` (a deleted row is
overwritten, not left in free pages: erasures must not leave badge hashes behind); its
file is created 0600 (:func:`protocol.files.private_file`, the WAL and SHM follow).
:func:`checkpoint` folds the WAL back and truncates it, after an erasure.
PostgreSQL through psycopg 3.

Every engine has ``hide_parameters``: a failed statement's error (and so any log line
or traceback quoting it) never carries its parameters, which are members' names, birth
dates and badge hashes (see :mod:`hub.db.errors` for the rest of the error text).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from protocol.files import private_file


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with the per-backend settings fabrique relies on."""
    url = normalise_url(url)
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_file(Path(database))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def checkpoint(session: Session) -> None:
    """On SQLite, copy the WAL into the database and truncate it (no-op elsewhere).

    After an erasure the deleted rows' old pages are otherwise still in the WAL until
    the next automatic checkpoint. Best effort: a reader holding an old snapshot keeps
    the WAL alive, which SQLite reports without failing.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session
