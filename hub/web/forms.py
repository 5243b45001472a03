"""Form handling shared by the admin pages: validation messages next to each field.

A page validates what was typed with the API's own input models (``SlotCreate``,
``MemberCreate``…) and calls the API's own route functions, so a rule lives in one
place. This module turns what they raise into ``{field: French message}``:

* :func:`validate` runs a pydantic model; each error goes to its field (the API's
  French wording, :func:`hub.api.app.french_error`); an error of the whole model goes
  to ``whole`` (the field the page names, e.g. the end time of a slot).
* :func:`api_errors` reads an :class:`~fastapi.HTTPException` from an API route: a 422
  lists fields (``loc`` ends with the field name), anything else is a form-level
  message under :data:`FORM`.

The page then re-renders its template with the typed values and ``errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError

#: Key of a message about the whole form (shown above it).
FORM = "_form"

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

Errors = dict[str, str]


def _message(error: Mapping[str, Any]) -> str:
    from hub.api.app import french_error  # hub.api.app imports the web pages

    return str(french_error(dict(error))["msg"])


def _field(loc: Any, whole: str) -> str:
    names = [str(part) for part in loc or () if not isinstance(part, int)]
    names = [n for n in names if n not in ("body", "query")]
    return names[0] if names else whole


def validate(model: type[M], data: Mapping[str, Any], whole: str = FORM) -> tuple[M | None, Errors]:
    """``model`` built from ``data``, or None and the French message of each field."""
    try:
        return model.model_validate(dict(data)), {}
    except ValidationError as err:
        errors: Errors = {}
        for error in err.errors():
            errors.setdefault(_field(error.get("loc"), whole), _message(error))
        return None, errors


def api_errors(err: HTTPException, whole: str = FORM) -> Errors:
    """The French messages of an API route's refusal, by field."""
    detail = err.detail
    if isinstance(detail, list):
        errors: Errors = {}
        for item in detail:
            if isinstance(item, Mapping):
                errors.setdefault(_field(item.get("loc"), whole), str(item.get("msg", "")))
        return errors or {whole: "Valeur refusée"}
    return {whole: str(detail)}


def submit(call: Callable[[], R], whole: str = FORM) -> tuple[R | None, Errors]:
    """Run an API route function: its result, or None and its refusal by field."""
    try:
        return call(), {}
    except HTTPException as err:
        return None, api_errors(err, whole=whole)


def save(
    model: type[M],
    data: Mapping[str, Any],
    apply: Callable[[M], object],
    *,
    whole: str,
    refused_whole: str | None = None,
) -> Errors:
    """Validate ``data`` as ``model``, then ``apply`` it (an API route function).

    The French messages by field of whichever refused (empty: saved); a refusal of
    the route as a whole goes to ``refused_whole`` (default ``whole``)."""
    body, errors = validate(model, data, whole=whole)
    if body is None:
        return errors
    return submit(lambda: apply(body), whole=refused_whole or whole)[1]


def checked(values: list[str]) -> list[str]:
    """Checkbox values, without empties and duplicates, in order."""
    return list(dict.fromkeys(v for v in values if v))
