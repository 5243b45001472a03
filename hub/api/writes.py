"""Writes to reference data: the one ending every admin create, edit and delete shares.

Zones, programmes, trainings, machines, slots, exceptions, quotas and badges are what
the policy decides with. A route that changes them checks its input, changes rows, then
always ends the same way: commit (a constraint violation past the checks becomes a 409
with the route's French message) and tell the running hub *once*
(``control.reference_changed()``: decisions use the change at once, edges get fresh
snapshots). :class:`ReferenceWrite`, injected as :data:`ReferenceWriteDep`, is that
ending; the routes stay explicit (one function, summary and response model each) so
that the OpenAPI page reads like the API.

:func:`apply_changes` is the edit without the signal, for rows the policy does not read
(a badge's label).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from sqlalchemy.orm import Session

from hub.api.common import commit, conflict, get_or_404
from hub.api.deps import ControlDep, SessionDep
from hub.control import HubControl

T = TypeVar("T")

#: The 409 message of an edit that a database constraint refused.
EDIT_REFUSED = "Modification refusée"
#: The 409 message of a delete that a database constraint refused.
DELETE_REFUSED = "Suppression refusée"


def apply_changes(db: Session, row: T, changes: Mapping[str, Any]) -> T:
    """Set the fields a partial update sent (``Patch.changes()``) and commit; 409 if refused."""
    for name, value in changes.items():
        setattr(row, name, value)
    commit(db, EDIT_REFUSED)
    return row


class ReferenceWrite:
    """One request's change to reference data: commits, then signals the hub once."""

    def __init__(self, db: Session, control: HubControl) -> None:
        self.db = db
        self._control = control

    def get(self, model: type[T], key: Any, what: str) -> T:
        """The row to change, or 404 ``"<what> introuvable"``."""
        return get_or_404(self.db, model, key, what)

    def absent(self, model: type[Any], key: Any, message: str) -> None:
        """409 with ``message`` if a ``model`` row with primary key ``key`` exists."""
        if self.db.get(model, key) is not None:
            conflict(message)

    def create(self, row: T, conflict_message: str, *, key: Any = None) -> T:
        """Add ``row`` and commit; a constraint violation is a 409 with ``conflict_message``.

        With ``key``, a row of the same model with that primary key is that 409 at once.
        """
        if key is not None:
            self.absent(type(row), key, conflict_message)
        self.db.add(row)
        self.commit(conflict_message)
        return row

    def update(self, row: T, changes: Mapping[str, Any]) -> T:
        """Apply a partial update (``Patch.changes()``) to ``row`` and commit."""
        apply_changes(self.db, row, changes)
        self._control.reference_changed()
        return row

    def delete(self, row: object, conflict_message: str = DELETE_REFUSED) -> None:
        """Delete ``row`` and commit; a row still referenced is a 409 with ``conflict_message``."""
        self.db.delete(row)
        self.commit(conflict_message)

    def commit(self, conflict_message: str) -> None:
        """Commit what the route changed, then tell the hub (once) to reload it."""
        commit(self.db, conflict_message)
        self._control.reference_changed()


def reference_write(db: SessionDep, control: ControlDep) -> ReferenceWrite:
    """The request's :class:`ReferenceWrite` (on the request's session)."""
    return ReferenceWrite(db, control)


ReferenceWriteDep = Annotated[ReferenceWrite, Depends(reference_write)]
