"""Validate the dashboards: structure, stable uids, and queries against the schema.

Queries are InfluxQL written in one house style the checker relies on: every
identifier double-quoted (``"session"``, ``"duration_s"``), aliases after ``AS``,
string values single-quoted, Grafana's ``$site`` / ``$timeFilter`` / ``$__interval``.
Each query reads one measurement; every other quoted identifier must be one of its
tags or fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards import DATASOURCE_UID, JSON_DIR
from protocol.telemetry_schema import MEASUREMENTS, SITE

_FROM = re.compile(r'\bFROM\s+"([^"]+)"', re.IGNORECASE)
_ALIAS = re.compile(r'\bAS\s+"[^"]*"', re.IGNORECASE)
_STRING = re.compile(r"'[^']*'")
_IDENT = re.compile(r'"([^"]+)"')
_UID = re.compile(r"^[a-z0-9-]{1,40}$")


@dataclass(frozen=True, slots=True)
class Query:
    """One panel query, where it comes from."""

    dashboard: str
    panel: int
    title: str
    ref: str
    text: str


def load(directory: Path = JSON_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard by file name (without ``.json``)."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


def queries(dashboards: dict[str, dict[str, Any]]) -> Iterator[Query]:
    """Every panel query of every dashboard."""
    for name, dash in dashboards.items():
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                yield Query(
                    name,
                    int(panel.get("id", 0)),
                    str(panel.get("title", "")),
                    str(target.get("refId", "")),
                    str(target.get("query", "")),
                )


def check_query(text: str) -> list[str]:
    """What is wrong with one query (empty: nothing)."""
    measurements = _FROM.findall(text)
    if len(measurements) != 1:
        return [f'expected one FROM "measurement", found {len(measurements)}']
    schema = MEASUREMENTS.get(measurements[0])
    if schema is None:
        return [f"unknown measurement {measurements[0]!r}"]
    names = set(schema.tags) | set(schema.fields)
    body = _STRING.sub("''", _ALIAS.sub("", text))
    problems = [
        f"{schema.name} has no tag or field {ident!r}"
        for ident in _IDENT.findall(body)
        if ident != schema.name and ident not in names
    ]
    if "$timeFilter" not in text:
        problems.append("no $timeFilter: the panel would ignore the dashboard's time range")
    if not re.search(rf'"{SITE}"\s*=~\s*/\^\$site\$/', text):
        problems.append('no "site" =~ /^$site$/ filter')
    return problems


def check(directory: Path = JSON_DIR) -> list[str]:
    """Every problem of the dashboards in ``directory`` (empty: all good)."""
    problems: list[str] = []
    try:
        dashboards = load(directory)
    except json.JSONDecodeError as err:
        return [f"invalid JSON: {err}"]
    if not dashboards:
        return [f"no dashboard in {directory}"]
    uids: dict[str, str] = {}
    for name, dash in dashboards.items():
        uid = dash.get("uid")
        if not isinstance(uid, str) or not _UID.match(uid):
            problems.append(f"{name}: uid {uid!r} is not a stable [a-z0-9-] id")
        elif uid in uids:
            problems.append(f"{name}: uid {uid} already used by {uids[uid]}")
        else:
            uids[uid] = name
        if not dash.get("title"):
            problems.append(f"{name}: no title")
        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        if "site" not in variables:
            problems.append(f"{name}: no $site variable")
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(set(ids)) != len(ids):
            problems.append(f"{name}: panel ids repeat")
        for panel in dash.get("panels", []):
            where = f"{name} panel {panel.get('id')} ({panel.get('title')})"
            if (panel.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                problems.append(f"{where}: datasource is not {DATASOURCE_UID}")
            if not panel.get("targets"):
                problems.append(f"{where}: no query")
            for target in panel.get("targets", []):
                if not target.get("rawQuery"):
                    problems.append(f"{where}: query {target.get('refId')} is not raw InfluxQL")
    for q in queries(dashboards):
        problems += [
            f"{q.dashboard} panel {q.panel} ({q.title}) {q.ref}: {p}" for p in check_query(q.text)
        ]
    return problems
