"""``docs/protocol.md`` and ``protocol/contract.py`` say the same as the code.

The page's generated blocks must be exactly what :mod:`tests.protocol.contract_doc`
renders from the contract table and the message models (run
``python -m tests.protocol.contract_doc`` after changing the contract), and the table
must cover every topic kind and every message model.
"""

from __future__ import annotations

import inspect
import re

import pytest

import protocol.messages as messages
from protocol.contract import CONTRACT, spec
from protocol.messages import SCHEMA_VERSION, Message
from protocol.topics import Kind, Topics, parse_topic
from tests.protocol import contract_doc


def test_generated_blocks_match_the_code() -> None:
    text = contract_doc.DOC.read_text(encoding="utf-8")
    found = contract_doc.blocks(text)
    assert set(found) == set(contract_doc.RENDERERS), "a generated block is missing"
    for name, render in contract_doc.RENDERERS.items():
        assert found[name] == render(), (
            f"docs/protocol.md block {name!r} is stale: run python -m tests.protocol.contract_doc"
        )


def test_every_topic_kind_has_exactly_one_row() -> None:
    kinds = [row.kind for row in CONTRACT]
    assert sorted(kinds) == sorted(Kind)
    assert len(set(kinds)) == len(kinds)
    assert all(spec(kind).kind is kind for kind in Kind)


def test_every_message_model_travels_on_a_topic() -> None:
    carried = {m for row in CONTRACT for m in row.messages}
    defined = {
        cls
        for _name, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, Message)
        and cls.__module__ == messages.__name__
        and cls not in (Message, messages.Signed)  # bases, never sent as such
        and not cls.__name__.startswith("_")
    }
    assert defined == carried


def test_page_rows_name_real_topics_with_their_flags() -> None:
    """Read the page's topic table back and build each topic with the real builders."""
    text = contract_doc.DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (\d) \| (yes|no) \|", text, re.MULTILINE)
    assert len(rows) == len(CONTRACT)
    topics = Topics("site-a")
    for (path, direction, qos, retained), row in zip(rows, CONTRACT, strict=True):
        concrete = path.replace("{edge}", "pi-1").replace("{machine}", "m-1")
        assert parse_topic(f"{topics.root}/{concrete}").kind is row.kind
        assert (direction.strip(), int(qos), retained == "yes") == (
            row.direction.value,
            row.qos,
            row.retained,
        )


def test_commands_are_never_retained() -> None:
    for row in CONTRACT:
        if row.kind.value.startswith("cmd/"):
            assert not row.retained, row.kind


@pytest.mark.parametrize("needle", [f'"v": {SCHEMA_VERSION}', "SCHEMA_VERSION"])
def test_page_states_the_schema_version(needle: str) -> None:
    assert needle in contract_doc.DOC.read_text(encoding="utf-8")
