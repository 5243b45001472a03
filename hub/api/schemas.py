"""Request and response models of the REST API: Create/Update/Public families per resource.

Inputs forbid unknown fields (no mass assignment) and bound every string and number to
what the database column holds, so bad input becomes a precise 422, never a database
error. ``Update`` models are partial: only the fields sent are applied, and ``null`` is
accepted only for nullable columns. Outputs never carry password hashes, raw badge
UIDs or full badge hashes (a short fingerprint is enough to tell badges apart).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hub.api.auth import USERNAME_PATTERN
from hub.db.models import ConsentScope, ExceptionKind, Gender, MachineKind, MemberStatus, Role
from hub.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from protocol.ids import BadgeHash
from protocol.ids import Ident as Ident  # re-exported: the routes' path and body ids
from protocol.messages import (
    Availability,
    EndReason,
    JobResult,
    MachineAction,
    MachineDetail,
    OfflineRule,
    Outcome,
    utcnow,
)

#: Largest value of a 32-bit INTEGER column (PostgreSQL refuses more).
MAX_INT = 2_147_483_647
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("Caractères de contrôle interdits")
    return value


#: A required short name.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
#: An optional label (may be empty).
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_printable)
]
Note = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_printable)
]
Minutes = Annotated[int, Field(ge=0, le=7 * 24 * 60)]
DbId = Annotated[int, Field(ge=1, le=MAX_INT)]
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
Password = Annotated[str, StringConstraints(max_length=MAX_PASSWORD_LENGTH)]
IdList = Annotated[list[Ident], Field(max_length=50)]
AgeGroupName = Annotated[str, StringConstraints(max_length=16)]
AgeGroupList = Annotated[list[AgeGroupName], Field(max_length=10)]


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values))


def _naive_time(value: time | None) -> time | None:
    if value is not None and value.tzinfo is not None:
        raise ValueError("Heure locale attendue, sans fuseau horaire")
    return value


LocalTime = Annotated[time, AfterValidator(_naive_time)]


class Input(BaseModel):
    """Base of request bodies: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Patch(Input):
    """Base of partial updates: ``null`` only for the fields listed in ``nullable``."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Patch:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise ValueError(f"Le champ {name} ne peut pas être vide (null)")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, ready to apply."""
        return self.model_dump(exclude_unset=True)


class Output(BaseModel):
    """Base of responses: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(Output, Generic[T]):
    """One page of a list, with the total count for pagination."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Message(Output):
    """A plain acknowledgement."""

    detail: str


# --------------------------------------------------------------------------- auth


class LoginRequest(Input):
    username: Annotated[str, StringConstraints(max_length=64)]
    password: Password


class AccountPublic(Output):
    id: int
    username: str
    role: Role
    member_id: int | None
    active: bool
    created_at: datetime


class LoginResponse(Output):
    token: str = Field(description="bearer token; also set as the fabrique_session cookie")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_at: datetime
    account: AccountPublic


class AccountCreate(Input):
    username: Username
    password: Password
    role: Role
    member_id: DbId | None = None


class AccountUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"member_id"})

    password: Password | None = None
    role: Role | None = None
    member_id: DbId | None = None
    active: bool | None = None


# --------------------------------------------------------------------------- zones, programmes


class ZoneCreate(Input):
    id: Ident
    name: Name
    capacity: Annotated[int, Field(ge=1, le=10_000)] | None = None


class ZoneUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"capacity"})

    name: Name | None = None
    capacity: Annotated[int, Field(ge=1, le=10_000)] | None = None


class ZonePublic(Output):
    id: str
    name: str
    capacity: int | None


class ProgrammeCreate(Input):
    id: Ident
    name: Name


class ProgrammeUpdate(Patch):
    name: Name | None = None


class ProgrammePublic(Output):
    id: str
    name: str


# --------------------------------------------------------------------------- trainings

ValidityDays = Annotated[int, Field(ge=1, le=3650)]


class TrainingCreate(Input):
    id: Ident
    name: Name
    validity_days: ValidityDays | None = None


class TrainingUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"validity_days"})

    name: Name | None = None
    validity_days: ValidityDays | None = None


class TrainingPublic(Output):
    id: str
    name: str
    validity_days: int | None


class TrainingGrant(Input):
    """Grant a training; the expiry follows from the training's validity."""

    granted_on: date | None = Field(default=None, description="default: today (site time)")


class MemberTrainingPublic(Output):
    training_id: str
    name: str
    granted_on: date
    expires_on: date | None
    valid: bool


# --------------------------------------------------------------------------- machines

MinAge = Annotated[int, Field(ge=0, le=99)]


class MachineCreate(Input):
    id: Ident
    name: Name
    kind: MachineKind
    zone_id: Ident
    edge_id: Ident
    min_age: MinAge | None = None
    offline_rule: OfflineRule = OfflineRule.ALLOW
    required_trainings: Annotated[IdList, AfterValidator(_unique)] = Field(default_factory=list)
    maintenance: bool = False
    maintenance_note: Note = ""


class MachineUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"min_age"})

    name: Name | None = None
    kind: MachineKind | None = None
    zone_id: Ident | None = None
    edge_id: Ident | None = None
    min_age: MinAge | None = None
    offline_rule: OfflineRule | None = None
    required_trainings: Annotated[IdList, AfterValidator(_unique)] | None = None
    maintenance: bool | None = None
    maintenance_note: Note | None = None


class MachinePublic(Output):
    id: str
    name: str
    kind: MachineKind
    zone_id: str
    edge_id: str
    min_age: int | None
    offline_rule: OfflineRule
    required_trainings: list[str]
    maintenance: bool
    maintenance_note: str


class MaintenanceRequest(Input):
    on: bool
    note: Note = ""


class CommandRequest(Input):
    """A job command, or re-arming a laser; maintenance has its own endpoint because it
    also changes the store."""

    action: Literal[
        MachineAction.PAUSE, MachineAction.RESUME, MachineAction.CANCEL, MachineAction.REARM
    ]


class CommandResult(Output):
    """What the machine's edge answered (``outcome``: ``None`` when it did not answer
    in time, or the command could not be sent: ``delivered`` false)."""

    machine_id: str
    action: MachineAction
    delivered: bool
    outcome: Outcome | None = None
    code: str = ""
    reason: str = ""


# --------------------------------------------------------------------------- members


def _plausible_year(value: int) -> int:
    this_year = utcnow().year
    if not this_year - 120 <= value <= this_year:
        raise ValueError(
            f"Année de naissance invraisemblable (entre {this_year - 120} et {this_year})"
        )
    return value


BirthYear = Annotated[int, Field(ge=1900, le=2200), AfterValidator(_plausible_year)]
BirthMonth = Annotated[int, Field(ge=1, le=12)]


def _consent_not_future(value: date | None) -> date | None:
    if value is not None and value > utcnow().date():
        raise ValueError("La date de consentement ne peut pas être dans le futur")
    return value


ConsentDate = Annotated[date, AfterValidator(_consent_not_future)]


def _scopes(value: list[ConsentScope]) -> list[ConsentScope]:
    return sorted(set(value))


ConsentScopes = Annotated[list[ConsentScope], Field(max_length=8), AfterValidator(_scopes)]


class MemberCreate(Input):
    display_name: Name
    birth_year: BirthYear
    birth_month: BirthMonth
    programmes: Annotated[IdList, AfterValidator(_unique)] = Field(default_factory=list)
    role: Role = Role.MEMBER
    status: MemberStatus = MemberStatus.ACTIVE
    gender: Gender = Gender.NON_DECLARE
    consent_at: ConsentDate | None = None
    consent_scope: ConsentScopes | None = Field(
        default=None,
        description="what the guardian's consent covers (default with a consent: access)",
    )

    @model_validator(mode="after")
    def _born_in_the_past(self) -> MemberCreate:
        _check_birth(self.birth_year, self.birth_month)
        return self


class MemberUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"consent_at"})

    display_name: Name | None = None
    birth_year: BirthYear | None = None
    birth_month: BirthMonth | None = None
    programmes: Annotated[IdList, AfterValidator(_unique)] | None = None
    role: Role | None = None
    status: MemberStatus | None = None
    gender: Gender | None = None
    consent_at: ConsentDate | None = None
    consent_scope: ConsentScopes | None = None


def _check_birth(year: int, month: int) -> None:
    today = utcnow().date()
    if (year, month) > (today.year, today.month):
        raise ValueError("La date de naissance ne peut pas être dans le futur")


class BadgePublic(Output):
    id: int
    member_id: int
    fingerprint: str = Field(description="first 12 hex digits of the keyed hash")
    label: str
    created_at: datetime
    revoked_at: datetime | None
    active: bool


class MemberPublic(Output):
    """A member as admins and fabmanagers see them."""

    id: int
    display_name: str
    first_name: str
    birth_year: int
    birth_month: int
    age: int
    age_group: str
    programmes: list[str]
    role: Role
    status: MemberStatus
    gender: Gender
    consent_at: date | None
    consent_recorded_by: str | None = Field(description="staff account that recorded it")
    consent_scope: list[str]
    consent_missing: bool = Field(description="under the consent age without a guardian consent")
    created_at: datetime
    trainings: list[MemberTrainingPublic]
    badges: list[BadgePublic]


class MemberBrief(Output):
    """A member as animators see them: first name, group and trainings only."""

    id: int
    first_name: str
    age_group: str
    status: MemberStatus
    role: Role
    trainings: list[MemberTrainingPublic]


# --------------------------------------------------------------------------- badges

_UID_RE = r"^[0-9A-Fa-f:\- ]{2,64}$"


class BadgeCreate(Input):
    """Enrol a badge by its raw UID (hashed at once, never stored) or by its keyed hash."""

    member_id: DbId
    uid: Annotated[str, StringConstraints(pattern=_UID_RE)] | None = Field(
        default=None, description="raw UID as a reader prints it (hex, separators allowed)"
    )
    hash: BadgeHash | None = Field(default=None, description="keyed hash as an edge reports it")
    label: Label = ""

    @model_validator(mode="after")
    def _exactly_one(self) -> BadgeCreate:
        if (self.uid is None) == (self.hash is None):
            raise ValueError("Indiquez soit uid, soit hash (un seul des deux)")
        return self

    def __repr__(self) -> str:  # never print a raw UID
        return f"BadgeCreate(member_id={self.member_id}, label={self.label!r})"


class BadgeUpdate(Patch):
    label: Label | None = None


# --------------------------------------------------------------------------- slots, quotas


class Audience(Input):
    label: Label = ""
    age_groups: Annotated[AgeGroupList, AfterValidator(_unique)] = Field(default_factory=list)
    programmes: Annotated[IdList, AfterValidator(_unique)] = Field(default_factory=list)
    animator_required: bool = False


class SlotCreate(Audience):
    """A weekly window; ``end`` before ``start`` means it ends after midnight."""

    zone_id: Ident
    weekday: Annotated[int, Field(ge=0, le=6, description="0 = Monday … 6 = Sunday")]
    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _not_empty(self) -> SlotCreate:
        if self.start == self.end:
            raise ValueError("Le créneau doit avoir une durée (début et fin différents)")
        return self


class SlotUpdate(Patch):
    zone_id: Ident | None = None
    weekday: Annotated[int, Field(ge=0, le=6)] | None = None
    start: LocalTime | None = None
    end: LocalTime | None = None
    label: Label | None = None
    age_groups: Annotated[AgeGroupList, AfterValidator(_unique)] | None = None
    programmes: Annotated[IdList, AfterValidator(_unique)] | None = None
    animator_required: bool | None = None


class SlotPublic(Output):
    id: int
    zone_id: str
    weekday: int
    start: time
    end: time
    label: str
    age_groups: list[str]
    programmes: list[str]
    animator_required: bool


def check_exception_hours(kind: ExceptionKind, start: time | None, end: time | None) -> None:
    """Closures: whole day (no hours) or both hours; openings: both hours, start before end."""
    if (start is None) != (end is None):
        raise ValueError("Indiquez l'heure de début et l'heure de fin, ou aucune des deux")
    if kind is ExceptionKind.OPENING and start is None:
        raise ValueError("Une ouverture exceptionnelle doit avoir des horaires")
    if start is not None and end is not None and start >= end:
        raise ValueError("L'heure de fin doit suivre l'heure de début")


class ExceptionCreate(Audience):
    zone_id: Ident | None = Field(default=None, description="None: every zone")
    day: date
    kind: ExceptionKind
    start: LocalTime | None = None
    end: LocalTime | None = None

    @model_validator(mode="after")
    def _hours(self) -> ExceptionCreate:
        check_exception_hours(self.kind, self.start, self.end)
        return self


class ExceptionUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset({"zone_id", "start", "end"})

    zone_id: Ident | None = None
    day: date | None = None
    kind: ExceptionKind | None = None
    start: LocalTime | None = None
    end: LocalTime | None = None
    label: Label | None = None
    age_groups: Annotated[AgeGroupList, AfterValidator(_unique)] | None = None
    programmes: Annotated[IdList, AfterValidator(_unique)] | None = None
    animator_required: bool | None = None


class ExceptionPublic(Output):
    id: int
    zone_id: str | None
    day: date
    kind: ExceptionKind
    start: time | None
    end: time | None
    label: str
    age_groups: list[str]
    programmes: list[str]
    animator_required: bool


def check_break(after: int | None, length: int | None) -> None:
    if (after is None) != (length is None):
        raise ValueError("Une pause forcée demande break_after_min et break_min ensemble")
    if after is not None and length is not None and (after == 0 or length == 0):
        raise ValueError("break_after_min et break_min doivent être positifs")


class QuotaCreate(Input):
    zone_id: Ident
    age_group: AgeGroupName
    daily_min: Minutes | None = None
    weekly_min: Minutes | None = None
    break_after_min: Minutes | None = None
    break_min: Minutes | None = None

    @model_validator(mode="after")
    def _break(self) -> QuotaCreate:
        check_break(self.break_after_min, self.break_min)
        return self


class QuotaUpdate(Patch):
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"daily_min", "weekly_min", "break_after_min", "break_min"}
    )

    daily_min: Minutes | None = None
    weekly_min: Minutes | None = None
    break_after_min: Minutes | None = None
    break_min: Minutes | None = None


class QuotaPublic(Output):
    id: int
    zone_id: str
    age_group: str
    daily_min: int | None
    weekly_min: int | None
    break_after_min: int | None
    break_min: int | None


# --------------------------------------------------------------------------- floor


class PresenceCreate(Input):
    zone_id: Ident
    hours: Annotated[float, Field(gt=0, le=24)] | None = Field(
        default=None, description="default: the hub's staff_presence_h"
    )


class PresencePublic(Output):
    id: int
    member_id: int
    first_name: str
    zone_id: str
    since: datetime
    until: datetime


class SessionPublic(Output):
    """A usage session; identity fields are filled according to the caller's role."""

    id: str
    machine_id: str
    zone_id: str | None
    edge_id: str
    member_id: int | None = Field(description="admins and fabmanagers only")
    first_name: str | None = Field(description="staff only")
    age_group: str
    programmes: list[str]
    machine_kind: str
    offline: bool
    staff: bool
    started_at: datetime
    granted_until: datetime | None
    ended_at: datetime | None
    end_reason: EndReason | None
    used_s: float = Field(
        description="seconds the session held the machine (a print's end and its "
        "cool-down after the member left included)"
    )
    present_s: float | None = Field(
        default=None,
        description="seconds the member was there (until badge-out, time up…); "
        "null from edges that do not report it",
    )
    run_s: float | None = Field(
        description="seconds the machine really worked (a laser's beam-on time); "
        "null when nothing measures it"
    )
    open: bool


class JobPublic(Output):
    """A job (a 3D print) that ended, attributed to the session it started in."""

    id: int
    machine_id: str
    zone_id: str | None
    session_id: str | None = Field(description="null: started outside any session")
    member_id: int | None
    first_name: str | None
    age_group: str
    job: str = Field(description="file name")
    result: JobResult
    duration_s: float
    filament_mm: float | None
    filament_g: float | None = Field(description="estimated from the configured filament")
    filament_estimated: bool = Field(
        default=False, description="filament_mm is scaled from progress (an unfinished job)"
    )
    ended_at: datetime
    controller_user: str | None = Field(
        default=None,
        description="the controller's user who started it (OctoPrint's login); staff only",
    )


class LiveSession(Output):
    id: str
    first_name: str | None
    age_group: str
    started_at: datetime
    granted_until: datetime | None
    used_s: float


class LiveMachine(Output):
    id: str
    name: str
    kind: MachineKind
    zone_id: str
    edge_id: str
    availability: Availability | Literal["unknown"]
    maintenance: bool
    maintenance_note: str
    edge_online: bool | None
    state_ts: datetime | None
    #: What the edge says of the machine (session state, job, faults…), as it sent it.
    detail: MachineDetail | None
    session: LiveSession | None
    #: Latest telemetry (printer temperatures and progress, plug power…), never metered.
    telemetry: dict[str, str | float | int | bool | None] = {}
    telemetry_ts: datetime | None = None


class EdgePublic(Output):
    id: str
    online: bool | None
    version: str
    last_seen: datetime | None
    machines: list[str]
    journal_through: int | None
    journal_max_seen: int | None


class AlertPublic(Output):
    id: int
    ts: datetime
    kind: str
    edge_id: str | None
    machine_id: str | None
    detail: str
    resolved_at: datetime | None


# --------------------------------------------------------------------------- reports

UsageDimension = Literal[
    "month", "zone", "machine", "programme", "age_group", "machine_kind", "gender", "member"
]
#: A count of people, or ``"< 5"`` when withheld from a coordinator.
PeopleCount = int | Literal["< 5"]


class UsageRow(Output):
    """One group's totals; for coordinators a group of fewer than 5 people keeps its row,
    reads ``"< 5"`` participants and has every figure withheld (null)."""

    key: str = Field(description="the group's keys joined by ' / '")
    label: str
    keys: list[str]
    labels: list[str]
    masked: bool = Field(description="figures withheld: fewer people than the minimum")
    participants: PeopleCount = Field(description="distinct participants (sessions or jobs)")
    new_participants: PeopleCount | None = Field(description="first visit ever in the period")
    sessions: int | None
    seconds: float | None
    hours: float | None
    average_session_min: float | None
    run_hours: float | None = Field(
        description="hours the machines really worked (a laser's beam-on time), where measured"
    )
    jobs: int | None = Field(description="print jobs ended in the period, whatever their result")
    print_hours: float | None
    filament_m: float | None
    filament_g: float | None = Field(description="estimated from the configured filament")
    machine_hours: float | None = Field(
        default=None,
        description=(
            "hours the sessions held the machines: ``hours`` (people's presence, what "
            "funders count) plus the wait for a print to end or a nozzle to cool after "
            "the member left"
        ),
    )
    unattributed_jobs: int | None = Field(
        default=None, description="of ``jobs``, those nobody badged for (started at the printer)"
    )
    unattributed_print_hours: float | None = Field(
        default=None, description="of ``print_hours``, those of jobs nobody badged for"
    )
    filament_estimated_m: float | None = Field(
        default=None,
        description="of ``filament_m``, the part estimated from progress (unfinished jobs)",
    )


class UsageTotals(Output):
    by: UsageDimension = Field(description="the first dimension")
    dimensions: list[UsageDimension]
    site: str
    since: datetime | None
    until: datetime | None
    rows: list[UsageRow]
    hidden_groups: int = Field(description="groups whose figures are withheld (small groups)")
    min_group_size: int | None
    note: str = Field(description="how participants are counted over pseudonymised months")


# --------------------------------------------------------------------------- me


class MyUsage(Output):
    zone_id: str
    today_s: float
    week_s: float
    daily_min: int | None
    weekly_min: int | None


class MySession(Output):
    machine_id: str
    started_at: datetime
    ended_at: datetime | None
    used_s: float


class MePublic(Output):
    account: AccountPublic
    first_name: str | None
    age_group: str | None
    trainings: list[MemberTrainingPublic]
    usage: list[MyUsage]
    recent_sessions: list[MySession]


class Health(Output):
    status: Literal["ok"]
    database: Literal["ok"]


class MemberExport(Output):
    """Every row about one member, table by table (GDPR right of access and portability)."""

    member_id: int
    exported_at: datetime
    tables: dict[str, list[dict[str, Any]]]

    @field_validator("tables")
    @classmethod
    def _sorted(cls, value: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return dict(sorted(value.items()))


# --------------------------------------------------------------------------- audit


class AuditEventPublic(Output):
    """One audit event: who (account), what, when, from where, with what outcome."""

    id: int
    at: datetime
    actor: str | None
    actor_role: str | None
    address: str
    action: str
    target: str
    outcome: str
    status: int | None
    detail: str
