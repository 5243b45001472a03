"""Renders the generated parts of ``docs/protocol.md`` from :mod:`protocol.contract`.

The page has hand-written prose and two generated blocks, each between
``<!-- generated:NAME -->`` and ``<!-- end:NAME -->``: ``topics`` (every topic with its
direction, QoS, retained flag and messages) and ``messages`` (every message model with
its fields). ``tests/protocol/test_contract_doc.py`` fails when a block differs from
what this module renders; ``python -m tests.protocol.contract_doc`` rewrites them.
"""

from __future__ import annotations

import enum
import re
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from protocol.contract import CONTRACT
from protocol.ids import BADGE_HASH_PATTERN, ID_PATTERN, TOKEN_PATTERN
from protocol.messages import Message, Part
from protocol.topics import Kind

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- end:\2 -->)", re.DOTALL)


def topic_path(kind: Kind) -> str:
    """The topic below the site root, with its placeholders."""
    if kind is Kind.HUB_STATUS:
        return kind.value
    if kind in (Kind.STATE, Kind.TELE):
        return f"edge/{{edge}}/{kind.value}/{{machine}}"
    return f"edge/{{edge}}/{kind.value}"


#: String patterns of :mod:`protocol.ids`, by the name the page gives them.
_PATTERNS = {ID_PATTERN: "id", BADGE_HASH_PATTERN: "badge hash", TOKEN_PATTERN: "token"}


def _pattern_name(metadata: Sequence[Any]) -> str | None:
    for item in metadata:
        name = _PATTERNS.get(getattr(item, "pattern", None) or "")
        if name is not None:
            return name
    return None


def field_type(field: FieldInfo) -> str:
    """How the page spells a field's type."""
    return _pattern_name(field.metadata) or type_name(field.annotation)


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a type (ids of :mod:`protocol.ids` by name)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _pattern_name(annotation.__metadata__) or type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " or ".join(f"`{a!r}`" for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return "(" + ", ".join(type_name(a) for a in args) + ")"
    if origin in (dict, typing.Mapping) or (origin is not None and origin.__name__ == "Mapping"):
        return f"object of {type_name(args[1])}" if args else "object"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"{annotation.__name__} ({', '.join(repr(m.value) for m in annotation)})"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"`{annotation.__name__}`"
    name = getattr(annotation, "__name__", str(annotation))
    return {"AwareDatetime": "datetime (UTC, ISO 8601)", "str": "string", "int": "integer"}.get(
        name, name
    )


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of the model's own docstring, in Markdown."""
    doc = model.__dict__.get("__doc__") or ""
    if not doc and "type" in model.model_fields:
        event_type = model.model_fields["type"].default
        body = type_name(model.model_fields["body"].annotation)
        return f"A journal event on `evt` with `type` = `{event_type!r}`; its body is {body}."
    if not doc:
        return f"A part of `{_HOLDERS[model].__name__}`."
    text = " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`.]+)`", r"`\1`", text)
    return text.replace("``", "`")


#: part -> the first model that holds it (filled by :func:`_models`).
_HOLDERS: dict[type[BaseModel], type[BaseModel]] = {}


def _models() -> list[type[BaseModel]]:
    """Every message and part reachable from the contract, in contract order."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for field in model.model_fields.values():
            for inner in _nested(field.annotation):
                _HOLDERS.setdefault(inner, model)
                visit(inner)

    for row in CONTRACT:
        for message in row.messages:
            visit(message)
    return seen


def _nested(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a)]


def render_topics() -> str:
    lines = [
        "| topic (under `fabrique/v1/{site}/`) | direction | QoS | retained | messages | what |",
        "|---|---|---|---|---|---|",
    ]
    for row in CONTRACT:
        messages = ", ".join(f"`{m.__name__}`" for m in row.messages)
        lines.append(
            f"| `{topic_path(row.kind)}` | {row.direction.value} | {row.qos} | "
            f"{'yes' if row.retained else 'no'} | {messages} | {row.what} |"
        )
    return "\n".join(lines) + "\n"


def render_messages() -> str:
    out: list[str] = []
    for model in _models():
        kind = "message" if issubclass(model, Message) else "part"
        out.append(f"### `{model.__name__}` ({kind})\n")
        out.append(_summary(model) + "\n")
        out.append("| field | type | required |")
        out.append("|---|---|---|")
        for name, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            required = "yes" if field.is_required() else f"no (default `{default!r}`)"
            if name == "v":
                required = "yes (on the wire)"
            out.append(f"| `{name}` | {field_type(field)} | {required} |")
        out.append("")
    assert all(issubclass(m, Message | Part) for m in _models())
    return "\n".join(out)


RENDERERS = {"topics": render_topics, "messages": render_messages}


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of the page, by name."""
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}


def rewrite(text: str) -> str:
    """``text`` with every generated block rendered anew."""
    return _BLOCK.sub(lambda m: m.group(1) + RENDERERS[m.group(2)]() + m.group(4), text)


def main() -> int:
    DOC.write_text(rewrite(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote the generated blocks of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
