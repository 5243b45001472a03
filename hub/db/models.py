"""The hub's tables (SQLAlchemy 2 typed ORM).

Two groups live here:

* the **reference data** admins edit (zones, machines, members, badges, trainings,
  slots, exceptions, quotas, accounts), and
* the **ledger** the hub writes from edge journals (edge events, cursors, sessions,
  access log, staff presence).

Minimisation (DESIGN §4, privacy): a member has a display name, a birth year and
month (never a day), programmes, a status, a role and the date of a guardian's
consent; badges exist only as keyed hashes. Times are stored as aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false

from protocol.kinds import MachineKind as MachineKind
from protocol.messages import EndReason, JobResult, OfflineRule, utcnow

ID_LEN = 32


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; ``type_annotation_map`` maps Python types to columns."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class Role(enum.StrEnum):
    """Roles, from least to most privileged for the floor; see hub.api.auth for the matrix."""

    MEMBER = "member"
    ANIMATOR = "animator"
    FABMANAGER = "fabmanager"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.ANIMATOR, Role.FABMANAGER, Role.ADMIN})


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Gender(enum.StrEnum):
    """A member's declared gender, for funders' reports only; optional (not declared)."""

    FEMME = "femme"
    HOMME = "homme"
    AUTRE = "autre"
    NON_DECLARE = "non_declare"


class ConsentScope(enum.StrEnum):
    """What a guardian's consent covers (CNIL recommendation 4, GDPR art. 8)."""

    #: Badge access and usage metering (required to activate an under-15's badge).
    ACCESS = "access"
    #: Pseudonymous statistics for funders (reports, dashboards).
    STATISTICS = "statistics"
    #: Photos and publications about workshops.
    PHOTOS = "photos"


class ExceptionKind(enum.StrEnum):
    CLOSURE = "closure"
    OPENING = "opening"


def _enum(e: type[enum.Enum]) -> Enum:
    return Enum(e, native_enum=False, length=32, values_callable=lambda x: [m.value for m in x])


# --------------------------------------------------------------------------- reference data


class Zone(Base):
    __tablename__ = "zone"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: Most simultaneous sessions in the zone (None: no limit).
    capacity: Mapped[int | None] = mapped_column(Integer, default=None)


class Training(Base):
    __tablename__ = "training"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: Validity of a grant in days (None: never expires).
    validity_days: Mapped[int | None] = mapped_column(Integer, default=None)


class MachineTraining(Base):
    __tablename__ = "machine_training"

    machine_id: Mapped[str] = mapped_column(
        ForeignKey("machine.id", ondelete="CASCADE"), primary_key=True
    )
    training_id: Mapped[str] = mapped_column(
        ForeignKey("training.id", ondelete="RESTRICT"), primary_key=True
    )


class Machine(Base):
    __tablename__ = "machine"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[MachineKind] = mapped_column(_enum(MachineKind))
    zone_id: Mapped[str] = mapped_column(ForeignKey("zone.id", ondelete="RESTRICT"), index=True)
    edge_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    min_age: Mapped[int | None] = mapped_column(Integer, default=None)
    offline_rule: Mapped[OfflineRule] = mapped_column(_enum(OfflineRule), default=OfflineRule.ALLOW)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_note: Mapped[str] = mapped_column(String(200), default="")

    trainings: Mapped[list[MachineTraining]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def required_trainings(self) -> list[str]:
        return sorted(t.training_id for t in self.trainings)


class Programme(Base):
    """A programme members belong to (e.g. ``fablab-9-15``, ``fablab-16-25``, ``esport``)."""

    __tablename__ = "programme"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class MemberProgramme(Base):
    __tablename__ = "member_programme"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    programme_id: Mapped[str] = mapped_column(
        ForeignKey("programme.id", ondelete="RESTRICT"), primary_key=True
    )


class Member(Base):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(String(100))
    birth_year: Mapped[int] = mapped_column(Integer)
    birth_month: Mapped[int] = mapped_column(Integer)
    status: Mapped[MemberStatus] = mapped_column(_enum(MemberStatus), default=MemberStatus.ACTIVE)
    role: Mapped[Role] = mapped_column(_enum(Role), default=Role.MEMBER)
    #: Date a guardian consented (required under the consent age, 15 in France).
    consent_at: Mapped[date | None] = mapped_column(Date, default=None)
    #: Username of the staff account that recorded the consent (kept if the account goes).
    consent_recorded_by: Mapped[str | None] = mapped_column(String(64), default=None)
    #: What the consent covers (:class:`ConsentScope` values).
    consent_scope: Mapped[list[str]] = mapped_column(default=list)
    gender: Mapped[Gender] = mapped_column(
        _enum(Gender), default=Gender.NON_DECLARE, server_default=Gender.NON_DECLARE.value
    )
    #: Start of the member's first session among those already pseudonymised (set by
    #: hub.retention), so "new participants" stay right once old sessions name nobody.
    first_visit_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    programmes: Mapped[list[MemberProgramme]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    badges: Mapped[list[Badge]] = relationship(
        back_populates="member", cascade="all, delete-orphan", lazy="selectin"
    )
    trainings: Mapped[list[MemberTraining]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def first_name(self) -> str:
        return self.display_name.split()[0] if self.display_name.strip() else ""

    @property
    def programme_ids(self) -> list[str]:
        return sorted(p.programme_id for p in self.programmes)


class Badge(Base):
    __tablename__ = "badge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: HMAC-SHA256 of the normalised UID with the site secret; the raw UID is never stored.
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    member: Mapped[Member] = relationship(back_populates="badges")


class MemberTraining(Base):
    __tablename__ = "member_training"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    training_id: Mapped[str] = mapped_column(
        ForeignKey("training.id", ondelete="RESTRICT"), primary_key=True
    )
    granted_on: Mapped[date] = mapped_column(Date)
    #: Last day the training is valid (None: never expires).
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)


class Slot(Base):
    """A weekly opening window of a zone, for an audience, in the site's local time."""

    __tablename__ = "slot"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zone.id", ondelete="CASCADE"), index=True)
    #: 0 = Monday … 6 = Sunday.
    weekday: Mapped[int] = mapped_column(Integer)
    start: Mapped[time] = mapped_column(Time)
    end: Mapped[time] = mapped_column(Time)
    label: Mapped[str] = mapped_column(String(100), default="")
    #: Age groups admitted (e.g. ``["9-15"]``); empty = any age group.
    age_groups: Mapped[list[str]] = mapped_column(default=list)
    #: Programmes admitted; empty = any programme. A member qualifies if both match.
    programmes: Mapped[list[str]] = mapped_column(default=list)
    animator_required: Mapped[bool] = mapped_column(Boolean, default=False)


class SlotException(Base):
    """A dated closure (whole day or hours) or special opening of a zone (or all zones)."""

    __tablename__ = "slot_exception"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str | None] = mapped_column(
        ForeignKey("zone.id", ondelete="CASCADE"), default=None, index=True
    )
    day: Mapped[date] = mapped_column(Date, index=True)
    kind: Mapped[ExceptionKind] = mapped_column(_enum(ExceptionKind))
    #: Closure hours (None/None = the whole day) or opening hours (required).
    start: Mapped[time | None] = mapped_column(Time, default=None)
    end: Mapped[time | None] = mapped_column(Time, default=None)
    label: Mapped[str] = mapped_column(String(100), default="")
    age_groups: Mapped[list[str]] = mapped_column(default=list)
    programmes: Mapped[list[str]] = mapped_column(default=list)
    animator_required: Mapped[bool] = mapped_column(Boolean, default=False)


class Quota(Base):
    """Time limits for an age group in a zone, and its forced-break rule."""

    __tablename__ = "quota"
    __table_args__ = (UniqueConstraint("zone_id", "age_group"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zone.id", ondelete="CASCADE"))
    age_group: Mapped[str] = mapped_column(String(16))
    daily_min: Mapped[int | None] = mapped_column(Integer, default=None)
    weekly_min: Mapped[int | None] = mapped_column(Integer, default=None)
    break_after_min: Mapped[int | None] = mapped_column(Integer, default=None)
    break_min: Mapped[int | None] = mapped_column(Integer, default=None)


class Account(Base):
    """A login to the web UI / API. Staff accounts usually point at their member row."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), default=None
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KioskToken(Base):
    """A kiosk screen paired with one machine: only the token's keyed hash is stored.

    Without a valid, unrevoked token a kiosk page shows nobody's name.
    """

    __tablename__ = "kiosk_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    machine_id: Mapped[str] = mapped_column(
        ForeignKey("machine.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(Base):
    """A bearer/cookie token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


# --------------------------------------------------------------------------- ledger


class EdgeEvent(Base):
    """Every journal event accepted from an edge, once (unique on edge + seq)."""

    __tablename__ = "edge_event"

    edge_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]]
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantinedEvent(Base):
    """A journal event the ledger could not apply (a poison event), kept for staff.

    It holds its seq in the edge's journal (the cursor moves past it, so the journal
    does not stall) unless its seq was out of the journal's window. The body is kept
    without its badge hash and job file name: the ledger never applied it, and the
    edge's own journal still has the full event while it retains it.
    """

    __tablename__ = "edge_quarantine"

    edge_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    #: ``apply_failed``, ``future``, ``out_of_window``.
    reason: Mapped[str] = mapped_column(String(32))
    #: What failed, without values (an exception class, an SQLSTATE).
    detail: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[dict[str, Any]]
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class EdgeCursor(Base):
    """Per-edge progress of the journal and liveness (epoch rule)."""

    __tablename__ = "edge_cursor"

    edge_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    #: Every seq up to here has been applied.
    contiguous_through: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Highest seq seen (> contiguous_through means a gap).
    max_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[str] = mapped_column(String(64), default="")
    last_seen: Mapped[datetime | None] = mapped_column(default=None)


class UsageSession(Base):
    """One session on one machine: the usage ledger's unit."""

    __tablename__ = "usage_session"
    __table_args__ = (
        Index("ix_usage_session_member_started", "member_id", "started_at"),
        Index("ix_usage_session_open", "ended_at"),
        Index("ix_usage_session_started", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    edge_id: Mapped[str] = mapped_column(String(ID_LEN))
    machine_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    zone_id: Mapped[str | None] = mapped_column(String(ID_LEN), default=None)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), default=None
    )
    badge_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Pseudonymous dimensions frozen at start, for reports that outlive erasure.
    age_group: Mapped[str] = mapped_column(String(16), default="")
    programmes: Mapped[list[str]] = mapped_column(default=list)
    machine_kind: Mapped[str] = mapped_column(String(32), default="")
    #: The member's declared gender, frozen when the row is pseudonymised ("" before:
    #: reports read the member's).
    gender: Mapped[str] = mapped_column(String(16), default="", server_default="")
    #: Pseudonymous participant of the row's month, set when the row is pseudonymised
    #: (hub.retention): the same person has the same value within one month only.
    participant: Mapped[str | None] = mapped_column(String(32), default=None)
    #: Set when pseudonymised: this was the participant's first month of visits.
    first_month: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    staff: Mapped[bool] = mapped_column(Boolean, default=False)
    req_id: Mapped[str | None] = mapped_column(String(64), default=None)
    started_at: Mapped[datetime]
    granted_until: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[EndReason | None] = mapped_column(_enum(EndReason), default=None)
    #: Seconds the machine was held by the session: max of tick elapsed and the final
    #: monotonic duration (a print's end and its cool-down after the member left count).
    used_s: Mapped[float] = mapped_column(Float, default=0.0)
    #: Seconds the member was there: from the start until the session was asked to
    #: end (badge-out, time up…), without the wait for a job or a cool-down. None from
    #: edges that do not report it (then ``used_s`` is all there is). Funders count it.
    present_s: Mapped[float | None] = mapped_column(Float, default=None)
    last_minute: Mapped[int] = mapped_column(Integer, default=0)
    #: Seconds the machine really worked (a laser's beam-on time), as its driver measured
    #: it; None when nothing measures it. Max of what the edge reported, like ``used_s``.
    run_s: Mapped[float | None] = mapped_column(Float, default=None)


class MachineJob(Base):
    """One job (a 3D print) that ended on a machine, from one ``job_ended`` event.

    Attributed to the session during which it started: ``member_id`` and ``age_group``
    are copied from that session (or filled in when the session's start arrives after
    the job). The row outlives the member's erasure, pseudonymous (``member_id`` NULL,
    the age group kept for reports).
    """

    __tablename__ = "machine_job"
    __table_args__ = (UniqueConstraint("edge_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    edge_id: Mapped[str] = mapped_column(String(ID_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)
    machine_id: Mapped[str] = mapped_column(String(ID_LEN))
    zone_id: Mapped[str | None] = mapped_column(String(ID_LEN), default=None)
    session_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), default=None, index=True
    )
    age_group: Mapped[str] = mapped_column(String(16), default="")
    job: Mapped[str] = mapped_column(String(200), default="")
    result: Mapped[JobResult] = mapped_column(_enum(JobResult))
    duration_s: Mapped[float] = mapped_column(Float)
    filament_mm: Mapped[float | None] = mapped_column(Float, default=None)
    #: ``filament_mm`` is scaled from progress (a job that did not finish).
    filament_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ended_at: Mapped[datetime] = mapped_column(index=True)
    #: The controller's user who started it (OctoPrint's login): staff-only.
    controller_user: Mapped[str | None] = mapped_column(String(64), default=None)


class AccessLog(Base):
    """Identified log of every decision; purged after the retention period."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(index=True)
    edge_id: Mapped[str] = mapped_column(String(ID_LEN))
    machine_id: Mapped[str] = mapped_column(String(ID_LEN))
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), default=None, index=True
    )
    badge_hash: Mapped[str] = mapped_column(String(64))
    req_id: Mapped[str] = mapped_column(String(64))
    granted: Mapped[bool] = mapped_column(Boolean)
    code: Mapped[str] = mapped_column(String(64))
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    session_id: Mapped[str | None] = mapped_column(String(64), default=None)


class PseudonymKey(Base):
    """The random key of one month's participant pseudonyms (hub.retention).

    Deleted once the whole month is older than the retention period: from then on the
    month's pseudonyms cannot be linked back to anyone, not even by the hub.
    """

    __tablename__ = "pseudonym_key"

    #: Local calendar month, ``YYYY-MM``.
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ErasureTombstone(Base):
    """Proof that a member's data was erased: when, by whom, how many rows. Names nobody
    (no member id, no name, no badge hash)."""

    __tablename__ = "erasure_tombstone"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    #: The staff account that erased (no foreign key: the proof outlives the account).
    erased_by_account: Mapped[int | None] = mapped_column(Integer, default=None)
    erased_by_username: Mapped[str] = mapped_column(String(64), default="")
    #: Rows deleted or pseudonymised, per table.
    rows: Mapped[dict[str, Any]] = mapped_column(default=dict)


class StaffPresence(Base):
    """A staff member present in a zone from ``since`` until ``until``."""

    __tablename__ = "staff_presence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zone.id", ondelete="CASCADE"))
    since: Mapped[datetime]
    until: Mapped[datetime]


class Alert(Base):
    """Something staff should see: machine fault, edge offline, anomaly in a journal."""

    __tablename__ = "alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    edge_id: Mapped[str | None] = mapped_column(String(ID_LEN), default=None)
    machine_id: Mapped[str | None] = mapped_column(String(ID_LEN), default=None)
    detail: Mapped[str] = mapped_column(Text, default="")
    #: A staff member saw it on the floor ("vu"); it stays open until resolved.
    seen_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """Who did what, when, from where: staff actions and logins (:mod:`hub.audit`).

    No personal data beyond the acting account: targets are ids from the route's path,
    details are the names of the changed fields (and role or status values).
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    actor_role: Mapped[str | None] = mapped_column(String(16), default=None)
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(128), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    detail: Mapped[str] = mapped_column(String(256), default="")
