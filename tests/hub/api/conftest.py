"""Fixtures for the REST API tests: a real store (SQLite and PostgreSQL), the app with a
recording HubControl, and one account (with a linked member) per role.

Accounts get their tokens directly from :func:`hub.api.auth.issue_token` (the login
endpoint has its own tests); argon2 runs with cheap parameters here only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from hub.api.app import create_app
from hub.api.auth import create_account, issue_token
from hub.control import NullControl
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.migrate import upgrade
from hub.db.models import MachineJob, Member, Role, UsageSession
from hub.settings import HubSettings
from protocol.messages import (
    CommandOutcome,
    MachineAction,
    MachineState,
    Outcome,
    Telemetry,
    utcnow,
)

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"
ROLES = tuple(Role)


@dataclass
class Answered:
    """A command the fake edge answered at once (``outcome`` None: it never answers)."""

    outcome: CommandOutcome | None

    def wait(self, timeout: float | None = None) -> CommandOutcome | None:
        return self.outcome


def outcome_of(kind: Outcome, code: str = "", reason: str = "") -> CommandOutcome:
    return CommandOutcome(cmd_id="c-1", outcome=kind, code=code, reason=reason, ts=utcnow())


class RecordingControl(NullControl):
    """A hub that records what the API asked of it; ``deliver`` says whether commands
    are sent, ``answer`` what the edge answers (applied by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.deliver = True
        self.answer: CommandOutcome | None = outcome_of(Outcome.APPLIED)
        self.by: list[int | None] = []
        self.ended: list[str] = []
        self.extended: list[tuple[str, int]] = []
        self.commands: list[tuple[str, MachineAction]] = []
        self.states: dict[str, MachineState] = {}
        self.edges: dict[str, bool] = {}
        self.telemetry: dict[str, Telemetry] = {}
        self.job_files: dict[str, str | None] = {}

    def _sent(self) -> Answered | None:
        return Answered(self.answer) if self.deliver else None

    def end_session(self, session_id: str, message: str = "") -> Answered | None:
        self.ended.append(session_id)
        return self._sent()

    def extend_session(self, session_id: str, minutes: int, message: str = "") -> Answered | None:
        self.extended.append((session_id, minutes))
        return self._sent()

    def machine_command(
        self, machine_id: str, action: MachineAction, by: int | None = None
    ) -> Answered | None:
        self.commands.append((machine_id, action))
        self.by.append(by)
        return self._sent()

    def machine_states(self) -> Mapping[str, MachineState]:
        return self.states

    def edges_online(self) -> Mapping[str, bool]:
        return self.edges

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        return self.telemetry

    def running_job_files(self) -> Mapping[str, str | None]:
        return self.job_files


@dataclass
class Api:
    """The app under test plus handles on its store and its control seam."""

    client: TestClient
    control: RecordingControl
    db: sessionmaker[Session]
    settings: HubSettings
    tokens: dict[Role, str] = field(default_factory=dict)
    accounts: dict[Role, int] = field(default_factory=dict)
    members: dict[Role, int] = field(default_factory=dict)

    def call(self, method: str, path: str, role: Role | None = Role.ADMIN, **kwargs: Any) -> Any:
        """Send a request as ``role`` (None: anonymous), never with a stored cookie."""
        self.client.cookies.clear()
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.call("GET", path, role, **kw)

    def post(self, path: str, json: Any = None, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.call("POST", path, role, json=json, **kw)

    def patch(self, path: str, json: Any, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.call("PATCH", path, role, json=json, **kw)

    def delete(self, path: str, role: Role | None = Role.ADMIN, **kw: Any) -> Any:
        return self.call("DELETE", path, role, **kw)


def build_api(url: str, **overrides: Any) -> Iterator[Api]:
    """The app on a migrated store at ``url``; documentation admin-only as in production."""
    upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    values: dict[str, Any] = {"demo": True, "site": "test", "database_url": url}
    settings = HubSettings(**{**values, "api_docs": "admin", **overrides})
    control = RecordingControl()
    app = create_app(settings, factory, control, password_hasher=CHEAP_HASHER)
    api = Api(TestClient(app), control, factory, settings)
    with factory() as session:
        for role in ROLES:
            member = Member(
                display_name=f"{role.value.title()} Staff",
                birth_year=1990,
                birth_month=1,
                role=role,
            )
            session.add(member)
            session.flush()
            account = create_account(
                session, role.value, PASSWORD, role, member.id, hasher=CHEAP_HASHER
            )
            token, _ = issue_token(session, settings, account)
            api.tokens[role] = token
            api.accounts[role] = account.id
            api.members[role] = member.id
        session.commit()
    try:
        with api.client:
            yield api
    finally:
        engine.dispose()


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    """The API on each backend."""
    yield from build_api(db_url)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    """The API on SQLite only (for the broad, backend-independent walks)."""
    yield from build_api(f"sqlite:///{tmp_path / 'hub.db'}")


def add_session(
    api: Api,
    session_id: str,
    *,
    member_id: int | None,
    machine_id: str = "laser-1",
    zone_id: str = "fablab",
    used_s: float = 600.0,
    started_at: datetime | None = None,
    ended: bool = True,
    age_group: str = "16-25",
    programmes: list[str] | None = None,
    machine_kind: str = "laser",
    badge_hash: str | None = None,
    run_s: float | None = None,
) -> None:
    """Write a ledger row directly, as the hub's ledger would."""
    start = started_at or datetime.now(UTC) - timedelta(hours=1)
    with api.db() as s:
        s.add(
            UsageSession(
                id=session_id,
                edge_id="edge-1",
                machine_id=machine_id,
                zone_id=zone_id,
                member_id=member_id,
                badge_hash=badge_hash,
                age_group=age_group,
                programmes=programmes or [],
                machine_kind=machine_kind,
                started_at=start,
                ended_at=start + timedelta(seconds=used_s) if ended else None,
                used_s=used_s,
                run_s=run_s,
            )
        )
        s.commit()


_job_seq = itertools.count(1)


def add_job(
    api: Api,
    *,
    session_id: str | None,
    member_id: int | None,
    machine_id: str = "printer-1",
    zone_id: str = "fablab",
    age_group: str = "16-25",
    ended_at: datetime | None = None,
    duration_s: float = 3600.0,
    filament_mm: float | None = 1000.0,
    result: str = "done",
    name: str = "piece.gcode",
    seq: int | None = None,
) -> None:
    """Write a ``machine_job`` row directly, as the ledger would from ``job_ended``."""
    with api.db() as s:
        s.add(
            MachineJob(
                edge_id="edge-1",
                seq=seq if seq is not None else next(_job_seq),
                machine_id=machine_id,
                zone_id=zone_id,
                session_id=session_id,
                member_id=member_id,
                age_group=age_group,
                job=name,
                result=result,
                duration_s=duration_s,
                filament_mm=filament_mm,
                ended_at=ended_at or datetime.now(UTC) - timedelta(minutes=5),
            )
        )
        s.commit()
