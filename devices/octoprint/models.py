"""Typed, frozen values of the OctoPrint driver, parsed at the boundary.

OctoPrint speaks loosely typed JSON: ``null`` wherever a value is unknown, extra
keys that vary between versions and plugins, temperatures pushed as a *delta* list
that is often empty. Everything the rest of fabrique sees is parsed here, once, into
frozen pydantic models (unknown keys ignored, wrong types rejected), so a surprise
in OctoPrint's answers becomes a :class:`~devices.errors.DeviceProtocolError` at the
driver's edge instead of an ``AttributeError`` deep inside the agent.

The shapes follow OctoPrint 1.11 (verified against 1.11.8):

* ``GET /api/printer``: ``state{text, flags, error}``, ``temperature{tool0, bed}``;
* ``GET /api/job`` and the push ``current``/``history`` messages: ``job{file{…},
  estimatedPrintTime}``, ``progress{completion, printTime, printTimeLeft}``;
* push ``event`` messages: ``{"type": "PrintDone", "payload": {name, path, time…}}``.

:class:`PrinterSnapshot` merges them into the one picture the edge reads (state
flags, temperatures, job and progress) and :class:`JobEvent` carries the discrete
job events metering is built on (research note §2.4: meter on events, not on
``printTime``, which freezes while the printer heats).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.errors import DeviceProtocolError

__all__ = [
    "ConnectionInfo",
    "JobEvent",
    "JobEventKind",
    "JobStatus",
    "LoginSession",
    "PrinterFlags",
    "PrinterSnapshot",
    "PrinterStatus",
    "Temperature",
    "UploadResult",
    "Version",
    "parse_model",
]

_LOGGER = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class _Frozen(BaseModel):
    """Base of every model here: immutable, unknown keys ignored, fields by name or alias."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def parse_model(model: type[M], data: object, what: str) -> M:
    """Validate ``data`` as ``model``; a mismatch becomes a :class:`DeviceProtocolError`.

    Args:
        model: the pydantic model to build.
        data: decoded JSON.
        what: names the source in the error message (``"GET /api/job"``).
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise DeviceProtocolError(f"{what}: unexpected answer from OctoPrint: {err}") from err


# --------------------------------------------------------------------------- REST values


class Version(_Frozen):
    """``GET /api/version``: API and server versions (``server`` is e.g. ``"1.11.8"``)."""

    api: str
    server: str
    text: str = ""


class LoginSession(_Frozen):
    """The answer of a passive login: the user name and session id for the push socket."""

    name: str
    session: str
    active: bool = True
    admin: bool = False


class Temperature(_Frozen):
    """One heater: measured and target temperature in °C (``None`` when unknown)."""

    actual: float | None = None
    target: float | None = None


class PrinterFlags(_Frozen):
    """OctoPrint's state flags (``state.flags``), named in Python style.

    ``printing`` is true from *Starting* to *Finishing*, including *Pausing*,
    *Resuming* and *Cancelling*; ``paused`` only while fully paused.
    """

    operational: bool = False
    printing: bool = False
    paused: bool = False
    pausing: bool = False
    resuming: bool = False
    cancelling: bool = False
    finishing: bool = False
    error: bool = False
    ready: bool = False
    closed_or_error: bool = Field(default=False, alias="closedOrError")
    sd_ready: bool = Field(default=False, alias="sdReady")


class _WireState(_Frozen):
    text: str = "Unknown"
    flags: PrinterFlags = PrinterFlags()
    error: str | None = None


class PrinterStatus(_Frozen):
    """``GET /api/printer``: state text, flags, error and the tool0/bed temperatures."""

    state: str
    flags: PrinterFlags
    error: str | None = None
    tool0: Temperature | None = None
    bed: Temperature | None = None

    @classmethod
    def from_api(cls, body: object) -> PrinterStatus:
        """Parse the JSON of ``GET /api/printer``.

        Raises:
            DeviceProtocolError: the answer does not have the documented shape.
        """
        wire = parse_model(_WirePrinter, body, "GET /api/printer")
        return cls(
            state=wire.state.text,
            flags=wire.state.flags,
            error=wire.state.error or None,
            tool0=wire.temperature.get("tool0"),
            bed=wire.temperature.get("bed"),
        )


class _WirePrinter(_Frozen):
    state: _WireState
    temperature: dict[str, Temperature] = Field(default_factory=dict)


class _WireFile(_Frozen):
    name: str | None = None
    path: str | None = None
    origin: str | None = None
    size: int | None = None


class _WireToolFilament(_Frozen):
    length: float | None = None
    volume: float | None = None


class _WireJob(_Frozen):
    file: _WireFile = _WireFile()
    estimatedPrintTime: float | None = None
    #: OctoPrint's analysis of the file: filament per tool ("tool0"…), or null.
    filament: dict[str, _WireToolFilament | None] | None = None

    def filament_mm(self) -> float | None:
        """Total filament length of the whole file (every tool), ``None`` if unknown."""
        lengths = [t.length for t in (self.filament or {}).values() if t is not None and t.length]
        return round(sum(lengths), 1) if lengths else None


class _WireProgress(_Frozen):
    completion: float | None = None
    printTime: float | None = None
    printTimeLeft: float | None = None


class JobStatus(_Frozen):
    """``GET /api/job``: the selected file and the progress of the current job."""

    state: str
    error: str | None = None
    file_name: str | None = None
    file_path: str | None = None
    file_size: int | None = None
    estimated_print_time_s: float | None = None
    #: filament the whole file needs (OctoPrint's analysis), ``None`` if unknown
    filament_mm: float | None = None
    progress_pct: float | None = None
    print_time_s: float | None = None
    print_time_left_s: float | None = None

    @classmethod
    def from_api(cls, body: object) -> JobStatus:
        """Parse the JSON of ``GET /api/job``.

        Raises:
            DeviceProtocolError: the answer does not have the documented shape.
        """
        wire = parse_model(_WireJobAnswer, body, "GET /api/job")
        return cls._from_blocks(wire.state, wire.error, wire.job, wire.progress)

    @classmethod
    def _from_blocks(
        cls, state: str, error: str | None, job: _WireJob, progress: _WireProgress
    ) -> JobStatus:
        return cls(
            state=state,
            error=error or None,
            file_name=job.file.name,
            file_path=job.file.path,
            file_size=job.file.size,
            estimated_print_time_s=job.estimatedPrintTime,
            filament_mm=job.filament_mm(),
            progress_pct=progress.completion,
            print_time_s=progress.printTime,
            print_time_left_s=progress.printTimeLeft,
        )


class _WireJobAnswer(_Frozen):
    state: str
    error: str | None = None
    job: _WireJob = _WireJob()
    progress: _WireProgress = _WireProgress()


class ConnectionInfo(_Frozen):
    """``GET /api/connection``: the serial link between OctoPrint and the printer."""

    state: str
    port: str | None = None
    baudrate: int | None = None
    printer_profile: str | None = None
    ports: tuple[str, ...] = ()
    baudrates: tuple[int, ...] = ()
    printer_profiles: tuple[str, ...] = ()
    autoconnect: bool = False

    @classmethod
    def from_api(cls, body: object) -> ConnectionInfo:
        """Parse the JSON of ``GET /api/connection``.

        Raises:
            DeviceProtocolError: the answer does not have the documented shape.
        """
        wire = parse_model(_WireConnection, body, "GET /api/connection")
        return cls(
            state=wire.current.state,
            port=wire.current.port,
            baudrate=wire.current.baudrate,
            printer_profile=wire.current.printerProfile,
            ports=tuple(wire.options.ports),
            baudrates=tuple(wire.options.baudrates),
            printer_profiles=tuple(p.id for p in wire.options.printerProfiles),
            autoconnect=bool(wire.options.autoconnect),
        )


class _WireConnectionCurrent(_Frozen):
    state: str
    port: str | None = None
    baudrate: int | None = None
    printerProfile: str | None = None


class _WireProfile(_Frozen):
    id: str


class _WireConnectionOptions(_Frozen):
    ports: list[str] = Field(default_factory=list)
    baudrates: list[int] = Field(default_factory=list)
    printerProfiles: list[_WireProfile] = Field(default_factory=list)
    autoconnect: bool | None = None


class _WireConnection(_Frozen):
    current: _WireConnectionCurrent
    options: _WireConnectionOptions = _WireConnectionOptions()


class UploadResult(_Frozen):
    """The answer to an upload: where the file landed and what OctoPrint did with it."""

    name: str
    path: str
    done: bool
    selected: bool = False
    printing: bool = False

    @classmethod
    def from_api(cls, body: object) -> UploadResult:
        """Parse the JSON of ``POST /api/files/local`` (HTTP 201).

        Raises:
            DeviceProtocolError: the answer does not have the documented shape.
        """
        wire = parse_model(_WireUpload, body, "POST /api/files/local")
        local = wire.files.get("local")
        if local is None or local.name is None or local.path is None:
            raise DeviceProtocolError(f"POST /api/files/local: no local file in {body!r}")
        return cls(
            name=local.name,
            path=local.path,
            done=wire.done,
            selected=bool(wire.effectiveSelect),
            printing=bool(wire.effectivePrint),
        )


class _WireUpload(_Frozen):
    files: dict[str, _WireFile]
    done: bool = True
    effectiveSelect: bool | None = None
    effectivePrint: bool | None = None


# --------------------------------------------------------------------------- snapshot


class _WirePush(_Frozen):
    """A push ``current`` or ``history`` payload (logs and messages are not kept)."""

    state: _WireState
    job: _WireJob = _WireJob()
    progress: _WireProgress = _WireProgress()
    temps: list[dict[str, Any]] = Field(default_factory=list)


SnapshotSource = Literal["none", "push", "poll"]


class PrinterSnapshot(_Frozen):
    """Everything the edge knows about one printer at one moment.

    A new snapshot replaces the old one on every push ``current`` message (at most
    2 per second) and on every REST safety poll. Values OctoPrint does not send in
    a message (temperatures are a delta list, often empty) are carried over from
    the previous snapshot rather than reset.

    Attributes:
        state: OctoPrint's state text ("Operational", "Printing", "Paused",
            "Offline", "Error: …", "Unknown" before the first answer).
        flags: OctoPrint's state flags.
        error: the printer's error text, if any.
        tool0, bed: temperatures, ``None`` until first reported.
        file_name, file_path: the selected/printing file, ``None`` if none.
        filament_mm: filament the whole file needs (OctoPrint's analysis; the
            part used by an unfinished job is this times the progress).
        progress_pct: completion 0–100 of the current job (``None`` if no job).
        print_time_s, print_time_left_s: elapsed and estimated remaining print time;
            both can stay ``None`` or frozen while the printer heats (meter on
            :class:`JobEvent` instead).
        connected: the follower has a live, authenticated push connection to
            OctoPrint; when ``False`` the other fields are the last known values.
        last_update: wall time (UTC) of the data, ``None`` before the first.
        source: where the data came from: ``push``, ``poll`` or ``none``.
    """

    state: str = "Unknown"
    flags: PrinterFlags = PrinterFlags()
    error: str | None = None
    tool0: Temperature | None = None
    bed: Temperature | None = None
    file_name: str | None = None
    file_path: str | None = None
    filament_mm: float | None = None
    progress_pct: float | None = None
    print_time_s: float | None = None
    print_time_left_s: float | None = None
    connected: bool = False
    last_update: datetime | None = None
    source: SnapshotSource = "none"

    @property
    def job_active(self) -> bool:
        """OctoPrint reports a job (printing, pausing, paused, cancelling, finishing).

        Domain rule (DESIGN §4): the printer's power is never cut while this is true.
        """
        return self.flags.printing or self.flags.paused

    @property
    def known(self) -> bool:
        """Whether any data has been received yet."""
        return self.last_update is not None

    def with_link(self, connected: bool) -> PrinterSnapshot:
        """The same data with ``connected`` changed (link up or down)."""
        return self.model_copy(update={"connected": connected})

    def updated_from_push(
        self, payload: object, *, connected: bool, now: datetime
    ) -> PrinterSnapshot:
        """A new snapshot from a push ``current`` or ``history`` payload.

        Raises:
            DeviceProtocolError: the payload does not have the documented shape.
        """
        wire = parse_model(_WirePush, payload, "push current")
        job = JobStatus._from_blocks(wire.state.text, wire.state.error, wire.job, wire.progress)
        tool0, bed = _latest_temperatures(wire.temps, self.tool0, self.bed)
        return self._merge(
            state=wire.state.text,
            flags=wire.state.flags,
            error=wire.state.error or None,
            tool0=tool0,
            bed=bed,
            job=job,
            connected=connected,
            now=now,
            source="push",
        )

    def updated_from_poll(
        self,
        printer: PrinterStatus | None,
        job: JobStatus,
        *,
        connected: bool,
        now: datetime,
    ) -> PrinterSnapshot:
        """A new snapshot from a REST poll (``printer`` is ``None`` when OctoPrint
        answered 409: the printer is not connected to it)."""
        if printer is None:
            return self._merge(
                state=job.state,
                flags=PrinterFlags(closedOrError=True),
                error=job.error,
                tool0=self.tool0,
                bed=self.bed,
                job=job,
                connected=connected,
                now=now,
                source="poll",
            )
        return self._merge(
            state=printer.state,
            flags=printer.flags,
            error=printer.error,
            tool0=_merge_temperature(self.tool0, printer.tool0),
            bed=_merge_temperature(self.bed, printer.bed),
            job=job,
            connected=connected,
            now=now,
            source="poll",
        )

    def _merge(
        self,
        *,
        state: str,
        flags: PrinterFlags,
        error: str | None,
        tool0: Temperature | None,
        bed: Temperature | None,
        job: JobStatus,
        connected: bool,
        now: datetime,
        source: SnapshotSource,
    ) -> PrinterSnapshot:
        return PrinterSnapshot(
            state=state,
            flags=flags,
            error=error,
            tool0=tool0,
            bed=bed,
            file_name=job.file_name,
            file_path=job.file_path,
            filament_mm=job.filament_mm,
            progress_pct=job.progress_pct,
            print_time_s=job.print_time_s,
            print_time_left_s=job.print_time_left_s,
            connected=connected,
            last_update=now,
            source=source,
        )


def _latest_temperatures(
    samples: Sequence[Mapping[str, Any]],
    tool0: Temperature | None,
    bed: Temperature | None,
) -> tuple[Temperature | None, Temperature | None]:
    """Apply a ``temps`` delta list (oldest first) to the previous readings.

    A heater missing from a sample, or a value reported as ``null`` (the virtual
    printer's bed before its first reading), keeps the previous value.
    """
    for sample in samples:
        tool0 = _merge_temperature(tool0, _temperature(sample.get("tool0")))
        bed = _merge_temperature(bed, _temperature(sample.get("bed")))
    return tool0, bed


def _merge_temperature(old: Temperature | None, new: Temperature | None) -> Temperature | None:
    if new is None or old is None:
        return new or old
    return Temperature(
        actual=new.actual if new.actual is not None else old.actual,
        target=new.target if new.target is not None else old.target,
    )


def _temperature(raw: object) -> Temperature | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return Temperature.model_validate(raw)
    except ValidationError:
        _LOGGER.debug("ignoring malformed temperature sample %r", raw)
        return None


# --------------------------------------------------------------------------- events


class JobEventKind(enum.StrEnum):
    """What happened. The first ones are OctoPrint's own event names (push API);
    the ``Link*`` and ``JobLost`` kinds are the follower's own observations."""

    PRINT_STARTED = "PrintStarted"
    PRINT_DONE = "PrintDone"
    PRINT_FAILED = "PrintFailed"
    PRINT_CANCELLED = "PrintCancelled"
    PRINT_PAUSED = "PrintPaused"
    PRINT_RESUMED = "PrintResumed"
    ERROR = "Error"
    #: the printer's serial link to OctoPrint came up / went down
    PRINTER_CONNECTED = "Connected"
    PRINTER_DISCONNECTED = "Disconnected"
    #: the follower's own push connection to OctoPrint came up / went down
    LINK_UP = "LinkUp"
    LINK_DOWN = "LinkDown"
    #: after the link came back, the job seen before the outage was gone without a
    #: PrintDone/Failed/Cancelled (OctoPrint restarted mid-print, or it ended unseen)
    JOB_LOST = "JobLost"


#: OctoPrint event types the follower subscribes to and turns into :class:`JobEvent`.
OCTOPRINT_EVENT_TYPES: tuple[str, ...] = tuple(
    k.value
    for k in JobEventKind
    if k not in (JobEventKind.LINK_UP, JobEventKind.LINK_DOWN, JobEventKind.JOB_LOST)
)


class _WireEventPayload(_Frozen):
    name: str | None = None
    path: str | None = None
    origin: str | None = None
    size: int | None = None
    time: float | None = None
    reason: str | None = None
    error: str | None = None
    port: str | None = None
    user: str | None = None


class JobEvent(_Frozen):
    """One discrete event about a printer's job or link.

    Attributes:
        kind: what happened.
        at: wall time (UTC) the follower received it.
        monotonic_s: ``time.monotonic()`` when received; durations for metering
            come from this clock (DESIGN §3), never from wall time.
        file_name, file_path, origin, size: the job's file, when OctoPrint says.
        print_time_s: for PrintDone/Failed/Cancelled, OctoPrint's job duration
            (wall time minus pauses).
        reason: PrintFailed's ``reason`` (``"error"`` or ``"cancelled"``; OctoPrint
            sends PrintCancelled then PrintFailed(reason=cancelled) on a cancel),
            Error's reason, or the follower's explanation for Link*/JobLost.
        error: the error text (Error, PrintFailed with reason ``error``).
        user: OctoPrint's user who started the job (its job events carry it): a
            person's login, kept out of ``repr`` and so out of logs; for the
            staff-only job record.
    """

    kind: JobEventKind
    at: datetime
    monotonic_s: float
    file_name: str | None = None
    file_path: str | None = None
    origin: str | None = None
    size: int | None = None
    print_time_s: float | None = None
    reason: str | None = None
    error: str | None = None
    user: str | None = Field(default=None, repr=False)

    @property
    def ends_job(self) -> bool:
        """Whether this event means the job is over (done, failed, cancelled, lost)."""
        return self.kind in (
            JobEventKind.PRINT_DONE,
            JobEventKind.PRINT_FAILED,
            JobEventKind.PRINT_CANCELLED,
            JobEventKind.JOB_LOST,
        )

    @classmethod
    def from_push(cls, payload: object, *, at: datetime, monotonic_s: float) -> JobEvent | None:
        """Parse a push ``event`` payload ``{"type", "payload"}``; ``None`` for event
        types the driver does not follow.

        Raises:
            DeviceProtocolError: the payload does not have the documented shape.
        """
        if not isinstance(payload, Mapping) or not isinstance(payload.get("type"), str):
            raise DeviceProtocolError(f"push event without a type: {payload!r}")
        try:
            kind = JobEventKind(payload["type"])
        except ValueError:
            return None
        if kind.value not in OCTOPRINT_EVENT_TYPES:
            return None
        body = payload.get("payload") or {}
        wire = parse_model(_WireEventPayload, body, f"push event {kind.value}")
        return cls(
            kind=kind,
            at=at,
            monotonic_s=monotonic_s,
            file_name=wire.name,
            file_path=wire.path,
            origin=wire.origin,
            size=wire.size,
            print_time_s=wire.time,
            reason=wire.reason,
            error=wire.error,
            user=wire.user[:64] if wire.user else None,
        )
