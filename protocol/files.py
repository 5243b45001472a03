"""Files at rest that hold members' data or secrets: private to the service's account.

Shared by the hub (its SQLite store) and the edges (journal, policy cache), which may
import nothing of each other. New files are created ``0600``; an existing file loses its
"other" permission bits and keeps its group bits, so an administrator may give a service
group read access (``chgrp fabrique f && chmod 0640 f``). SQLite creates a database's
``-wal`` and ``-shm`` files with the database file's permissions, so preparing the
database file before SQLite opens it covers them too.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing, else take away others' access.

    Raises:
        OSError: the file cannot be created or its mode changed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007:
            os.chmod(path, mode & ~0o007)
            log.warning("%s was readable by others (mode %o): now %o", path, mode, mode & ~0o007)
        return
    os.close(fd)
    os.chmod(path, PRIVATE_MODE)  # whatever the umask


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 (a temporary file, then rename).

    Raises:
        OSError: the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


#: Keys whose presence in a configuration file makes it secret-holding.
_SECRET_KEYS = ("secret", "password", "token", "api_key")


def exposed_secrets(path: Path) -> str | None:
    """A French warning if the configuration file ``path`` holds a secret others can read."""
    if not exposed(path):
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return None
    if not any(key in text for key in _SECRET_KEYS):
        return None
    return (
        f"Attention : {path} contient un secret et est lisible par tous les comptes de la "
        f"machine : `chmod 0600 {path}` (ou 0640 avec le groupe du service)"
    )


def exposed(path: Path) -> bool:
    """True if others (not the owner, not the group) may read ``path``."""
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o004)
    except OSError:
        return False
