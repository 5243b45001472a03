"""Every message of the MQTT contract (DESIGN §3), defined once.

Models are frozen pydantic models that forbid unknown fields and carry their format's
version ``"v"``: 1 for what edges send, 2 (:data:`SCHEMA_VERSION`) for the hub's signed
commands to an edge (:class:`Signed`: a MAC under the edge's own key, see
:mod:`protocol.signing`).
Decode untrusted bytes with :func:`decode` (or :func:`decode_event` for journal
events): it never raises anything but a :class:`~protocol.errors.PayloadError`.
Encode with :func:`encode`.

Times are timezone-aware UTC datetimes. Durations measured by an edge come from its
monotonic clock (seconds, float); its wall times are estimates the hub corrects.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.errors import MalformedPayload, PayloadError, SchemaError, UnsupportedVersion
from protocol.ids import BadgeHash, Ident, Token

#: The contract's version: the highest ``v`` on the wire. Version 2 added the MAC of
#: every hub→edge command (:class:`Signed`) and ``JournalCommand.not_after``; the
#: messages an edge sends kept ``"v": 1``. See docs/protocol.md, "Versions".
SCHEMA_VERSION: Final = 2
#: Largest payload accepted for ordinary messages.
MAX_PAYLOAD: Final = 64 * 1024
#: Largest accepted policy snapshot (it lists every badge that may use an edge's machines:
#: about 200 bytes a member, so 1 MiB holds some 5,000). Checked on the raw bytes, before
#: any parsing: a forged 6.9 MB snapshot cost an edge 121 MB and 671 ms of tap-in.
MAX_POLICY_PAYLOAD: Final = 1024 * 1024
#: Largest journal sequence number (and snapshot version): a signed 64-bit integer,
#: what the hub's store holds (``BIGINT``).
MAX_SEQ: Final = 2**63 - 1
#: Largest connection epoch: a signed 32-bit integer (an edge reconnecting every
#: second would need 68 years to reach it).
MAX_EPOCH: Final = 2**31 - 1
#: Earliest and latest instant an edge may state (``[1970-01-01, 2100-01-01)`` UTC):
#: the Unix epoch, where a Raspberry Pi without a real-time clock starts before its
#: clock is synchronised (its events must still be journaled: their durations are
#: monotonic), to a date no clock can mean. The hub narrows the upper end to its own
#: clock plus a day for journal events.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


class Message(BaseModel):
    """Base of every payload: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_timedelta="float")
    max_size: ClassVar[int] = MAX_PAYLOAD

    v: Literal[1] = 1

    @model_validator(mode="before")
    @classmethod
    def _version_on_the_wire(cls, data: Any, info: ValidationInfo) -> Any:
        # Built in code, ``v`` defaults to 1; decoded from the wire it must be present.
        if info.context and info.context.get("wire") and isinstance(data, dict) and "v" not in data:
            raise ValueError("missing schema version 'v'")
        return data


_WIRE = {"wire": True}


class Signed(Message):
    """A hub→edge command, authenticated with the receiving edge's own key.

    ``mac`` is an HMAC-SHA256 (hex) over the message's canonical bytes (every field but
    ``mac``, see :func:`protocol.signing.canonical_bytes`), so a field or an action added
    later is covered without more code. The edge drops a message whose MAC fails or
    whose ``not_after`` has passed. Built by the hub with ``mac=""`` and signed just
    before publishing (:func:`protocol.signing.sign`).
    """

    v: Literal[2] = 2  # type: ignore[assignment]
    mac: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    not_after: AwareDatetime


class Part(BaseModel):
    """A nested part of a message (event body, window…): frozen and strict, no version."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _bounded_time(value: datetime) -> datetime:
    """An edge's instant, in UTC and within ``[EARLIEST, LATEST)``.

    Converting first refuses an offset that overflows the calendar (year 1 at
    +05:00, year 9999 at -05:00), which would otherwise raise ``OverflowError``
    deep in the hub; the window refuses clocks nobody can mean.
    """
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError) as err:
        raise ValueError("time out of range") from err
    if not EARLIEST <= utc < LATEST:
        raise ValueError("time must be between 1970-01-01 and 2100-01-01 UTC")
    return utc


#: An instant stated by an edge: timezone-aware, converted to UTC, bounded.
EdgeTime = Annotated[AwareDatetime, AfterValidator(_bounded_time)]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the contract's only time zone)."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------- status


class HubStatus(Message):
    """Retained on ``hub/status``; the hub's last will sets ``online`` false."""

    online: bool
    ts: AwareDatetime
    version: str = ""


#: A health counter: a non-negative integer, bounded so that a hostile value stays small.
HealthCount = Annotated[int, Field(ge=0, le=2**53)]


class EdgeHealth(Part):
    """An edge's health counters since its process started, on its online status.

    Small and typed on purpose (no free-form map): the hub exports each field as a
    Prometheus gauge per edge (``docs/metrics.md``). Republished with the status
    about once a minute, and at every connection.
    """

    uptime_s: HealthCount = 0
    #: Connections made (the first one included): more than one means reconnects.
    connects: HealthCount = 0
    #: Journal events not yet acknowledged by the hub.
    journal_backlog: HealthCount = 0
    #: Messages from the hub dropped as invalid (bad topic, payload or schema).
    bad_messages: HealthCount = 0
    #: Handler failures on received messages (a bug, logged by the edge).
    handler_errors: HealthCount = 0


class EdgeStatus(Message):
    """Retained on ``edge/{edge}/status``.

    ``epoch`` is persisted by the edge and incremented before each connect; the
    last will carries the same epoch, so a late will of an older connection
    (lower epoch) never marks a newer connection offline. ``goodbye`` is true on the
    offline status an edge publishes itself when it stops (a planned stop), false on
    its last will (a lost edge).
    """

    online: bool
    epoch: int = Field(ge=0, le=MAX_EPOCH)
    version: str = ""
    machines: tuple[Ident, ...] = ()
    ts: EdgeTime | None = None
    goodbye: bool = False
    #: Hub→edge messages this edge dropped since it started: bad or missing MAC, past
    #: their ``not_after``, an ``ack_through`` beyond its journal (a forgery, a replay,
    #: or a hub and edge that disagree on the edge's key).
    rejected: int = Field(default=0, ge=0)
    #: The edge's health counters (online statuses only; None from older edges).
    health: EdgeHealth | None = None


# --------------------------------------------------------------------------- access


class AccessRequest(Message):
    """A badge was presented at ``machine``: sent by the edge on ``req/access``."""

    req_id: Token
    edge: Ident
    machine: Ident
    badge: BadgeHash
    ts: EdgeTime


class BreakRule(Part):
    """Forced break: after ``play_min`` minutes of play, ``break_min`` minutes off."""

    play_min: int = Field(gt=0, le=24 * 60)
    break_min: int = Field(gt=0, le=24 * 60)


class AccessDecision(Signed):
    """The hub's answer to one :class:`AccessRequest`, sent on ``cmd/access``.

    ``code`` is a stable machine-readable reason (see the hub's policy module),
    ``message`` the plain-French text shown to the member. A grant carries the
    session id to journal, its end time, warning times and break rule. An edge
    never acts on a decision received after ``not_after``.

    ``break_at`` is when the member's forced break starts, counted by the hub over
    their continuous play on every machine of the zone (a player who changes PC
    keeps counting); when it is at or before ``ends_at`` the session ends there as
    a break, not as time up. ``None`` without a break rule or when the break falls
    after the grant.
    """

    req_id: Token
    machine: Ident
    granted: bool
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=500)
    session_id: Token | None = None
    ends_at: AwareDatetime | None = None
    warn_at: tuple[AwareDatetime, ...] = ()
    break_rule: BreakRule | None = None
    break_at: AwareDatetime | None = None
    staff: bool = False
    first_name: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _grant_is_complete(self) -> AccessDecision:
        if self.granted and (self.session_id is None or self.ends_at is None):
            raise ValueError("a grant needs session_id and ends_at")
        return self


# --------------------------------------------------------------------------- journal


class EndReason(enum.StrEnum):
    """Why a session ended; stored in the ledger as is."""

    BADGE_OUT = "badge_out"
    TIME_UP = "time_up"
    STAFF = "staff"
    JOB_DONE = "job_done"
    IDLE = "idle"
    FAULT = "fault"
    LINK_LOST = "link_lost"
    BREAK = "break"
    EDGE_RESTART = "edge_restart"
    REVOKED = "revoked"
    #: the session's job vanished (the printer's controller came back without it)
    JOB_LOST = "job_lost"
    #: staff cancelled the session's job from the hub
    STAFF_CANCEL = "staff_cancel"


class SessionStartedBody(Part):
    """Journaled before the machine is switched on."""

    session_id: Token
    machine: Ident
    badge: BadgeHash
    req_id: Token | None = None
    offline: bool = False
    started_at: EdgeTime
    ends_at: EdgeTime | None = None


class UsageTickBody(Part):
    """Journaled every minute of an active session.

    ``elapsed_s`` is the session's monotonic age at the tick; the ledger keeps the
    largest value seen, so duplicates and reordering change nothing.
    """

    session_id: Token
    machine: Ident
    minute: int = Field(ge=1, le=7 * 24 * 60)
    elapsed_s: float = Field(ge=0, le=7 * 24 * 3600)


class SessionEndedBody(Part):
    """Journaled when a session ends, with its exact monotonic duration."""

    session_id: Token
    machine: Ident
    reason: EndReason
    duration_s: float = Field(ge=0, le=7 * 24 * 3600)
    ended_at: EdgeTime
    #: The member's presence: from the start until the session was asked to end
    #: (badge-out, time up…), before any wait for a job or a cool-down; ``None``
    #: from older edges (then ``duration_s`` is all there is).
    present_s: float | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    #: Time the machine really worked during the session, measured by its driver
    #: (a laser: time in ``Run`` with the beam on). ``None`` when nothing measures it.
    run_s: float | None = Field(default=None, ge=0, le=7 * 24 * 3600)


class JobResult(enum.StrEnum):
    """How a machine's job (a print) ended."""

    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: the job vanished unseen (OctoPrint restarted mid-print, the edge restarted)
    LOST = "lost"


class JobEndedBody(Part):
    """A job (a 3D print) ended on a machine; attributed to the session that ran it.

    ``session_id`` is the session during which the job started (the member who
    started it), ``None`` for a job started with no session (from OctoPrint's own
    interface, by staff). ``duration_s`` is the job's own duration (pauses excluded
    when the controller says so); ``filament_mm`` the filament length used, scaled
    by progress for a job that did not finish, ``None`` when unknown.
    """

    session_id: Token | None = None
    machine: Ident
    job: str = Field(default="", max_length=200)
    result: JobResult
    duration_s: float = Field(ge=0, le=7 * 24 * 3600)
    filament_mm: float | None = Field(default=None, ge=0, le=10_000_000)
    #: ``filament_mm`` is scaled from progress (a job that did not finish).
    filament_estimated: bool = False
    ended_at: EdgeTime
    #: The controller's user who started the job (OctoPrint's login, e.g. staff who
    #: started it from OctoPrint's own page). Staff-only on the hub; never on ``tele/+``.
    user: str | None = Field(default=None, max_length=64, repr=False)


class JobStartedBody(Part):
    """A job (a 3D print) started on a machine, with the session open then, if any.

    ``session_id`` ``None`` is a job nobody badged for (started from OctoPrint's own
    page): the machine runs without a session. ``file_name`` names the job for
    staff: journaled to the hub only, never on ``tele/+`` or ``state/+``.
    """

    machine: Ident
    session_id: Token | None = None
    file_name: str | None = Field(default=None, max_length=200)


class OfflineDecisionBody(Part):
    """A decision the edge took alone from its policy snapshot."""

    req_id: Token
    machine: Ident
    badge: BadgeHash
    granted: bool
    code: str = Field(min_length=1, max_length=64)
    session_id: Token | None = None
    ends_at: EdgeTime | None = None
    snapshot_version: int | None = Field(default=None, ge=0, le=MAX_SEQ)


class MachineFaultBody(Part):
    """A machine reported a fault (alarm, lost controller, actuator error)."""

    machine: Ident
    code: str = Field(min_length=1, max_length=64)
    detail: str = Field(default="", max_length=500)


class MachineRearmedBody(Part):
    """Staff re-armed a machine (a laser after a hard limit or an abort).

    ``by`` is the staff account that sent the command (``None``: the hub's own);
    ``cmd_id`` the command that did it.
    """

    machine: Ident
    cmd_id: Token
    by: int | None = Field(default=None, ge=1)


class _EventBase(Message):
    edge: Ident
    seq: int = Field(ge=1, le=MAX_SEQ)
    event_id: Token
    epoch: int = Field(default=0, ge=0, le=MAX_EPOCH)
    ts: EdgeTime


class SessionStarted(_EventBase):
    type: Literal["session_started"] = "session_started"
    body: SessionStartedBody


class UsageTick(_EventBase):
    type: Literal["usage_tick"] = "usage_tick"
    body: UsageTickBody


class SessionEnded(_EventBase):
    type: Literal["session_ended"] = "session_ended"
    body: SessionEndedBody


class OfflineDecision(_EventBase):
    type: Literal["offline_decision"] = "offline_decision"
    body: OfflineDecisionBody


class MachineFault(_EventBase):
    type: Literal["machine_fault"] = "machine_fault"
    body: MachineFaultBody


class JobEnded(_EventBase):
    type: Literal["job_ended"] = "job_ended"
    body: JobEndedBody


class JobStarted(_EventBase):
    type: Literal["job_started"] = "job_started"
    body: JobStartedBody


class MachineRearmed(_EventBase):
    type: Literal["machine_rearmed"] = "machine_rearmed"
    body: MachineRearmedBody


#: Every journal event, as a plain union (for ``isinstance`` and annotations).
Event = (
    SessionStarted
    | UsageTick
    | SessionEnded
    | OfflineDecision
    | MachineFault
    | JobEnded
    | JobStarted
    | MachineRearmed
)
#: The same union, discriminated on ``type`` for decoding.
JournalEvent = Annotated[Event, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[JournalEvent] = TypeAdapter(JournalEvent)


class JournalCommand(Signed):
    """Hub to edge on ``cmd/journal``: exactly one of ``ack_through`` / ``replay_from``.

    The edge refuses an ``ack_through`` beyond the last event it journaled (and so
    could have sent): it would stop sending its journal.
    """

    ack_through: int | None = Field(default=None, ge=0)
    replay_from: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> JournalCommand:
        if (self.ack_through is None) == (self.replay_from is None):
            raise ValueError("exactly one of ack_through and replay_from is required")
        return self


# --------------------------------------------------------------------------- commands


class SessionAction(enum.StrEnum):
    END = "end"
    EXTEND = "extend"
    WARN = "warn"
    BREAK = "break"


class SessionCommand(Signed):
    """Staff or hub command about a running session, on ``cmd/session``."""

    cmd_id: Token
    session_id: Token
    action: SessionAction
    minutes: int | None = Field(default=None, gt=0, le=24 * 60)
    message: str = Field(default="", max_length=500)


class MachineAction(enum.StrEnum):
    MAINTENANCE_ON = "maintenance_on"
    MAINTENANCE_OFF = "maintenance_off"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    #: clear a laser's alarm: GRBL unlock ``$X``, and homing ``$H`` when ``$22=1``
    REARM = "rearm"


class MachineCommand(Signed):
    """Staff command about a machine, on ``cmd/machine``.

    ``by`` is the staff account that sent it (journaled by the edge with what it
    did, e.g. a re-arm); ``None`` for the hub's own commands.
    """

    cmd_id: Token
    machine: Ident
    action: MachineAction
    by: int | None = Field(default=None, ge=1)


class Outcome(enum.StrEnum):
    """What became of a ``cmd/session`` or ``cmd/machine`` command on the edge."""

    APPLIED = "applied"
    REFUSED = "refused"
    #: it arrived after its ``not_after``: nothing was done
    EXPIRED = "expired"


class CommandOutcome(Message):
    """Edge to hub on ``outcome``: the answer to one command (``cmd_id``).

    ``code`` is stable, for programs (``no_job``, ``unsupported``, ``driver_refused``…,
    see docs/machines.md); ``reason`` is French, for the staff member who sent it.
    Sent once per command (a duplicate delivery is not answered again).
    """

    cmd_id: Token
    outcome: Outcome
    code: str = Field(default="", max_length=32, pattern=r"^[a-z0-9_]*$")
    reason: str = Field(default="", max_length=300)
    ts: AwareDatetime


# --------------------------------------------------------------------------- policy


class OfflineRule(enum.StrEnum):
    """What an edge may decide alone for a machine when the hub does not answer."""

    ALLOW = "allow"
    STAFF_ONLY = "staff_only"
    DENY = "deny"


class SnapshotMachine(Part):
    machine: Ident
    zone: Ident
    rule: OfflineRule


class SnapshotWindow(Part):
    """The badge may start a session on ``machines`` between ``start`` and ``end``."""

    start: AwareDatetime
    end: AwareDatetime
    machines: tuple[Ident, ...]


class SnapshotEntry(Part):
    badge: BadgeHash
    staff: bool = False
    windows: tuple[SnapshotWindow, ...] = ()
    #: Remaining minutes per zone (today's quota at compile time); absent = no quota.
    quota_min: dict[Ident, int] = Field(default_factory=dict)


class PolicySnapshot(Message):
    """Retained on ``policy``: what an edge may decide alone, signed by the hub.

    ``signature`` is an HMAC-SHA256 (hex) over :func:`canonical_json` of every other
    field, keyed with the edge's policy key (see :func:`protocol.signing.policy_key`).
    """

    max_size: ClassVar[int] = MAX_POLICY_PAYLOAD

    edge: Ident
    version: int = Field(ge=1)
    issued_at: AwareDatetime
    valid_until: AwareDatetime
    machines: tuple[SnapshotMachine, ...] = ()
    entries: tuple[SnapshotEntry, ...] = ()
    signature: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")


# --------------------------------------------------------------------------- machines


class Availability(enum.StrEnum):
    FREE = "free"
    IN_USE = "in_use"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    FAULT = "fault"


Scalar = str | float | int | bool | None


class MachineDetail(Part):
    """What the edge says about a machine besides its availability (floor view).

    Attributes:
        kind: the machine's kind on the edge (a :class:`protocol.kinds.MachineKind`
            value, or a kind only the edge knows).
        state: the session machine's state (``idle``, ``awaiting_decision``,
            ``active``, ``ending``, ``on_break``, ``maintenance``); ``None`` when the
            edge is going offline.
        reader: whether the badge reader is connected.
        offline: the running session was granted offline.
        staff: the running session is a staff member's.
        ends_at: when the running session ends (estimated wall time).
        job: a job holds the machine (a print, busy by power).
        cooling: the session ended; power waits for the machine to cool.
        foreign_job: the job holding the machine was started with no session open
            (from the printer's own page, a laser run or a plug drawing power with
            nobody badged): the machine runs without a session.
        faults: active fault sources (``actuator``, ``grbl``, ``printer``…).
    """

    kind: str = Field(min_length=1, max_length=32)
    state: str | None = Field(default=None, max_length=32)
    reader: bool | None = None
    offline: bool = False
    staff: bool = False
    ends_at: EdgeTime | None = None
    job: bool = False
    cooling: bool = False
    foreign_job: bool = False
    faults: tuple[Annotated[str, Field(max_length=64)], ...] = Field(default=(), max_length=32)


class MachineState(Message):
    """Retained on ``state/{machine}``: the machine's availability snapshot."""

    machine: Ident
    availability: Availability
    session_id: Token | None = None
    detail: MachineDetail | None = None
    ts: EdgeTime


class Telemetry(Message):
    """On ``tele/{machine}``: temperatures, progress, power… never used for metering."""

    machine: Ident
    ts: EdgeTime
    values: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _small(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if len(value) > 64:
            raise ValueError("at most 64 telemetry values")
        return value


# --------------------------------------------------------------------------- codec

M = TypeVar("M", bound=Message)


def encode(message: Message) -> bytes:
    """Serialise a message to the JSON bytes sent on the wire."""
    return message.model_dump_json().encode()


def _classify(err: ValidationError, what: str) -> PayloadError:
    errors = err.errors(include_url=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    etype, loc = first["type"], tuple(first["loc"])
    if etype in ("json_invalid", "json_type"):
        return MalformedPayload(f"{what}: invalid JSON ({first.get('msg', '')})")
    if etype in ("model_type", "model_attributes_type", "dict_type") and loc == ():
        return MalformedPayload(f"{what}: payload is not a JSON object")
    if etype == "model_attributes_type" and not loc:
        return MalformedPayload(f"{what}: payload is not a JSON object")
    if (
        loc[:1] == ("v",)
        or (len(loc) == 2 and loc[1] == "v")
        or "schema version" in str(first.get("msg", ""))
    ):
        return UnsupportedVersion(
            f"{what}: unsupported schema version (we speak v{SCHEMA_VERSION})"
        )
    if etype == "union_tag_invalid" or etype == "union_tag_not_found":
        return SchemaError(f"{what}: unknown or missing event type")
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:3]
    )
    return SchemaError(f"{what}: {detail}")


def _precheck(payload: bytes, limit: int, what: str) -> None:
    if len(payload) > limit:
        raise MalformedPayload(f"{what}: payload of {len(payload)} bytes exceeds {limit}")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedPayload(f"{what}: payload is not UTF-8") from err
    stripped = payload.lstrip()
    if not stripped.startswith(b"{"):
        raise MalformedPayload(f"{what}: payload is not a JSON object")


def decode(model: type[M], payload: bytes) -> M:
    """Validate untrusted bytes as ``model``.

    Raises:
        MalformedPayload: too large, not UTF-8, not JSON or not an object.
        UnsupportedVersion: ``v`` missing or different from 1.
        SchemaError: anything else the model refuses.
    """
    what = model.__name__
    _precheck(payload, model.max_size, what)
    try:
        return model.model_validate_json(payload, context=_WIRE)
    except ValidationError as err:
        raise _classify(err, what) from err


def decode_event(payload: bytes) -> Event:
    """Validate one journal event (any type) from untrusted bytes."""
    _precheck(payload, MAX_PAYLOAD, "JournalEvent")
    try:
        return _EVENT_ADAPTER.validate_json(payload, context=_WIRE)
    except ValidationError as err:
        raise _classify(err, "JournalEvent") from err


def to_jsonable(message: Message) -> dict[str, Any]:
    """A message as plain JSON-compatible data (for storage and signing)."""
    return message.model_dump(mode="json")
