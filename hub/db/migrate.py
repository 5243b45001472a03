"""Schema migrations (Alembic), callable from code and from ``fabrique hub migrate``.

``python -m hub.db.migrate revision "message"`` autogenerates a new revision against a
scratch SQLite database (development only).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (default: the latest)."""
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None when unversioned)."""
    from alembic.runtime.migration import MigrationContext

    from hub.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            return rev
    finally:
        engine.dispose()


def _revision(message: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/scratch.db"
        upgrade(url)
        command.revision(alembic_config(url), message=message, autogenerate=True)


if __name__ == "__main__":  # pragma: no cover - developer tool
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m hub.db.migrate revision "message"')
    _revision(sys.argv[2])
