"""The one table of device kinds: name → validated config model + factory.

The edge's settings name a kind and give its options, e.g.::

    reader:   {kind: reader.rdm6300, port: /dev/serial/by-id/usb-…, debounce_s: 1.0}
    actuator: {kind: actuator.shelly, host: 192.168.1.40, latch_on_fault: true}

Options are validated against the kind's frozen pydantic model before anything
opens (ESPHome's per-kind schema; Zigbee2MQTT's definitions as data), and the
factory builds an unopened device from the validated config plus the runtime
seams in :class:`DeviceContext` (the MQTT publisher, a GPIO pin factory), which
are wiring, not configuration.

Every reader config shares ``debounce_s`` (0 disables the :class:`Debouncer`) and
every actuator config shares ``latch_on_fault`` (wrap in :class:`LatchedActuator`:
set it for lasers), the way ESPHome platforms extend their kind's base schema.

Adding a kind is a module with the driver and one row in :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

# Drivers with heavy dependencies (gpiozero, httpx, websockets) are imported by their
# factory, when a device of that kind is built: an edge serving a laser and a PC never
# loads the OctoPrint client (the edge's memory budget is 50 MB on a Pi).
from devices.actuators.base import Actuator
from devices.actuators.latch import LatchedActuator
from devices.actuators.simulated import SimulatedActuator
from devices.actuators.tasmota import TASMOTA_TOPIC_PATTERN, Publish, TasmotaPlug
from devices.errors import DeviceConfigError
from devices.pc import (
    LINUX_NOTIFY_CMD,
    WINDOWS_NOTIFY_CMD,
    CommandSessionLock,
    LoginctlSessionLock,
    SessionLock,
    SimulatedSessionLock,
    WindowsSessionLock,
    auto_session_lock,
)
from devices.pc.loginctl import SESSION_ID_PATTERN
from devices.readers import (
    BadgeReader,
    DebouncedReader,
    Debouncer,
    EvdevReader,
    LineReader,
    Rdm6300Reader,
    SimulatedReader,
    StdinReader,
)

if TYPE_CHECKING:
    import httpx

    from devices.grbl import GrblLaser
    from devices.octoprint import OctoPrintFollower

__all__ = [
    "KINDS",
    "ActuatorConfig",
    "AutoLockConfig",
    "CommandLockConfig",
    "DeviceConfig",
    "DeviceContext",
    "DeviceKind",
    "DeviceSpec",
    "EvdevReaderConfig",
    "GpioRelayConfig",
    "GrblLaserConfig",
    "LineReaderConfig",
    "LoginctlLockConfig",
    "OctoPrintConfig",
    "Rdm6300Config",
    "ReaderConfig",
    "Role",
    "SessionLockConfig",
    "ShellyConfig",
    "SimulatedActuatorConfig",
    "SimulatedGrblConfig",
    "SimulatedLockConfig",
    "SimulatedPrinterConfig",
    "SimulatedReaderConfig",
    "StdinReaderConfig",
    "TasmotaConfig",
    "WindowsLockConfig",
    "build_actuator",
    "build_laser",
    "build_printer",
    "build_reader",
    "build_session_lock",
    "get_kind",
    "parse_config",
]

#: What a kind produces; later kinds (OctoPrint, GRBL, PC lock) add roles.
Role = Literal["reader", "actuator", "laser", "pc", "printer"]

# --------------------------------------------------------------------------- configs


class DeviceConfig(BaseModel):
    """Base of every kind's options: frozen, unknown keys rejected (typos fail early)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReaderConfig(DeviceConfig):
    """Options shared by every badge reader."""

    debounce_s: float = Field(
        default=1.0, ge=0, le=60, description="same badge within this window counts once"
    )


class ActuatorConfig(DeviceConfig):
    """Options shared by every actuator."""

    latch_on_fault: bool = Field(
        default=False, description="stay off after a fault until re-armed (lasers)"
    )


def _secret_source(
    value: SecretStr | None, file: Path | None, what: str, *, required: bool
) -> None:
    """Check that a secret is given at most once (and at least once if ``required``),
    and that its file, when it comes from one, can be read."""
    if value is not None and file is not None:
        raise ValueError(f"give {what} or {what}_file, not both")
    if required and value is None and file is None:
        raise ValueError(f"{what} (or {what}_file) is required")
    if file is not None and not file.is_file():
        raise ValueError(f"{what}_file {file} is not a readable file")


def _secret(value: SecretStr | None, file: Path | None, what: str) -> str | None:
    """The secret's text: the value, or the first line of its file (systemd credentials,
    a root-only file), read when the device is built.

    Raises:
        DeviceConfigError: the file cannot be read or is empty.
    """
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DeviceConfigError(f"{what}_file {file}: {err}") from err
    text = lines[0].strip() if lines else ""
    if not text:
        raise DeviceConfigError(f"{what}_file {file} is empty")
    return text


SerialPort = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Baudrate = Annotated[int, Field(gt=0, le=4_000_000)]


class Rdm6300Config(ReaderConfig):
    """``reader.rdm6300``: 125 kHz RDM6300 module on a serial port."""

    port: SerialPort
    baudrate: Baudrate = 9600


class LineReaderConfig(ReaderConfig):
    """``reader.line``: serial reader printing one UID per line."""

    port: SerialPort
    baudrate: Baudrate = 9600


class StdinReaderConfig(ReaderConfig):
    """``reader.stdin``: UIDs typed on standard input (development)."""


class EvdevReaderConfig(ReaderConfig):
    """``reader.evdev``: keyboard-wedge reader on ``/dev/input`` (needs ``evdev``)."""

    device: Annotated[str, StringConstraints(pattern=r"^/dev/input/\S+$")]
    grab: bool = True


class SimulatedReaderConfig(ReaderConfig):
    """``reader.sim``: badges pushed by code (demo, tests)."""


GpioPin = (
    Annotated[int, Field(ge=0, le=27)]
    | Annotated[str, StringConstraints(pattern=r"^(GPIO|BCM|BOARD|WPI|J8:)\d{1,2}$")]
)


class GpioRelayConfig(ActuatorConfig):
    """``actuator.gpio``: relay on a Raspberry Pi pin (BCM number or gpiozero name)."""

    pin: GpioPin
    active_high: bool = True


class ShellyConfig(ActuatorConfig):
    """``actuator.shelly``: Shelly Gen2+ switch over HTTP RPC."""

    host: Annotated[
        str, StringConstraints(pattern=r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]{1,253})(:\d{1,5})?$")
    ]
    switch_id: int = Field(default=0, ge=0, le=15)
    timeout_s: float = Field(default=2.0, gt=0, le=30)
    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None, description="file holding the password (instead of password)"
    )
    auto_off_s: float | None = Field(default=None, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_password(self) -> ShellyConfig:
        _secret_source(self.password, self.password_file, "password", required=False)
        return self


class TasmotaConfig(ActuatorConfig):
    """``actuator.tasmota``: Tasmota plug over the edge's MQTT link."""

    topic: Annotated[str, StringConstraints(pattern=TASMOTA_TOPIC_PATTERN)]
    relay: int = Field(default=1, ge=1, le=32)


class SimulatedActuatorConfig(ActuatorConfig):
    """``actuator.sim``: an in-memory switch (demo, tests)."""

    load_w: float | None = Field(default=0.0, ge=0)


class GrblLaserConfig(DeviceConfig):
    """``laser.grbl``: GRBL 1.1 laser controller on a serial port, followed by ``?`` polls."""

    port: SerialPort
    baudrate: Baudrate = 115200
    poll_interval_s: float = Field(
        default=0.2, ge=0.05, le=5, description="status poll period; run-time meter resolution"
    )
    silence_polls: int = Field(
        default=10, ge=2, le=100, description="unanswered polls before the link counts as lost"
    )
    banner_timeout_s: float = Field(default=3.0, gt=0, le=30)
    reconnect_max_s: float = Field(default=5.0, gt=0, le=300)


class SimulatedGrblConfig(DeviceConfig):
    """``laser.simulated``: the real GRBL driver on a pty served by a simulated GRBL 1.1."""

    poll_interval_s: float = Field(
        default=0.2, ge=0.05, le=5, description="status poll period; run-time meter resolution"
    )
    speed: float = Field(default=1.0, gt=0, le=1000, description="simulated seconds per second")


Argv = Annotated[
    tuple[Annotated[str, StringConstraints(min_length=1, max_length=4096)], ...],
    Field(min_length=1, max_length=64),
]


class SessionLockConfig(DeviceConfig):
    """Options shared by every gaming-PC session lock."""

    timeout_s: float = Field(default=5.0, gt=0, le=60, description="longest run of one command")


class CommandLockConfig(SessionLockConfig):
    """``pc.command``: lock/unlock/notify by argv templates (no shell)."""

    lock_cmd: Argv
    unlock_cmd: Argv
    notify_cmd: Argv | None = Field(default=None, description="may use {title} and {message}")
    status_cmd: Argv | None = Field(default=None, description="prints yes/no: locked?")


class LoginctlLockConfig(SessionLockConfig):
    """``pc.loginctl``: Linux desktop session through systemd-logind and notify-send."""

    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = None
    notify_cmd: Argv | None = LINUX_NOTIFY_CMD


class WindowsLockConfig(SessionLockConfig):
    """``pc.windows``: ``LockWorkStation``; notifications (and unlock) by command."""

    notify_cmd: Argv | None = WINDOWS_NOTIFY_CMD
    unlock_cmd: Argv | None = None


class AutoLockConfig(SessionLockConfig):
    """``pc.auto``: ``pc.loginctl`` on Linux, ``pc.windows`` on Windows (chosen at build)."""

    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = Field(
        default=None, description="Linux only: logind session (default: auto, the user's own)"
    )
    notify_cmd: Argv | None = Field(
        default=None, description="{title}/{message} template; default: notify-send or msg"
    )
    unlock_cmd: Argv | None = Field(default=None, description="Windows only: unlock helper")


class SimulatedLockConfig(SessionLockConfig):
    """``pc.sim``: a session lock in memory (demo, tests)."""


class OctoPrintConfig(DeviceConfig):
    """``printer.octoprint``: a 3D printer followed through its OctoPrint (1.11)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")] = Field(
        description="OctoPrint's root URL, e.g. http://127.0.0.1:5000"
    )
    api_key: Annotated[SecretStr, Field(min_length=8)] | None = Field(
        default=None, description="a user's API key (never the deprecated global key)"
    )
    api_key_file: Path | None = Field(
        default=None, description="file holding the API key (instead of api_key)"
    )
    throttle: int = Field(default=1, ge=1, le=20, description="one push per throttle × 0.5 s")
    poll_interval_s: float = Field(default=10.0, ge=1, le=300, description="REST safety poll")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="each HTTP request")

    @model_validator(mode="after")
    def _one_key(self) -> OctoPrintConfig:
        _secret_source(self.api_key, self.api_key_file, "api_key", required=True)
        return self


class SimulatedPrinterConfig(DeviceConfig):
    """``printer.simulated``: a printer that behaves like one followed through OctoPrint."""

    speed: float = Field(default=1.0, gt=0, le=1000, description="simulated seconds per second")
    throttle: int = Field(default=1, ge=1, le=20, description="one snapshot per throttle × 0.5 s")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class DeviceContext:
    """Runtime seams some factories need; wiring provided by the edge, not configuration.

    Attributes:
        mqtt_publish: sends one MQTT message through the edge's link (Tasmota).
        gpio_pin_factory: a gpiozero pin factory (``MockFactory`` in tests/demo).
        http_transport: an httpx transport for HTTP devices (tests).
        state_dir: where a machine's follower keeps what must survive a restart
            (a laser waiting for its re-arm); the edge's journal directory.
    """

    mqtt_publish: Publish | None = None
    gpio_pin_factory: object | None = None
    http_transport: httpx.BaseTransport | None = None
    state_dir: Path | None = None


ConfigT = TypeVar("ConfigT", bound=DeviceConfig)


@dataclass(frozen=True)
class DeviceKind(Generic[ConfigT]):
    """One row of the table: a kind's name, role, config model and factory."""

    name: str
    role: Role
    config_model: type[ConfigT]
    factory: Callable[[ConfigT, DeviceContext], object]
    summary: str

    def parse(self, options: Mapping[str, Any]) -> ConfigT:
        """Validate ``options`` against this kind's model.

        Raises:
            DeviceConfigError: the options are invalid (message lists every problem).
        """
        try:
            return self.config_model.model_validate(dict(options))
        except ValidationError as err:
            raise DeviceConfigError(f"invalid options for {self.name}: {err}") from err

    def build(self, config: ConfigT, ctx: DeviceContext) -> object:
        """Build the unopened device for a validated ``config``."""
        return self.factory(config, ctx)


def _debounced(config: ReaderConfig, reader: BadgeReader) -> BadgeReader:
    if config.debounce_s == 0:
        return reader
    return DebouncedReader(reader, Debouncer(config.debounce_s))


def _latched(config: ActuatorConfig, actuator: Actuator) -> Actuator:
    return LatchedActuator(actuator) if config.latch_on_fault else actuator


def _rdm6300(config: Rdm6300Config, ctx: DeviceContext) -> BadgeReader:
    return _debounced(config, Rdm6300Reader(config.port, config.baudrate))


def _line(config: LineReaderConfig, ctx: DeviceContext) -> BadgeReader:
    return _debounced(config, LineReader(config.port, config.baudrate))


def _stdin(config: StdinReaderConfig, ctx: DeviceContext) -> BadgeReader:
    return _debounced(config, StdinReader())


def _evdev(config: EvdevReaderConfig, ctx: DeviceContext) -> BadgeReader:
    return _debounced(config, EvdevReader(config.device, grab=config.grab))


def _sim_reader(config: SimulatedReaderConfig, ctx: DeviceContext) -> BadgeReader:
    return _debounced(config, SimulatedReader())


def _gpio(config: GpioRelayConfig, ctx: DeviceContext) -> Actuator:
    from devices.actuators.gpio import GpioRelay

    relay = GpioRelay(config.pin, config.active_high, pin_factory=ctx.gpio_pin_factory)
    return _latched(config, relay)


def _shelly(config: ShellyConfig, ctx: DeviceContext) -> Actuator:
    from devices.actuators.shelly import ShellyPlug

    plug = ShellyPlug(
        config.host,
        config.switch_id,
        config.timeout_s,
        password=_secret(config.password, config.password_file, "password"),
        auto_off_s=config.auto_off_s,
        transport=ctx.http_transport,
    )
    return _latched(config, plug)


def _tasmota(config: TasmotaConfig, ctx: DeviceContext) -> Actuator:
    if ctx.mqtt_publish is None:
        raise DeviceConfigError("actuator.tasmota needs the edge's MQTT publisher")
    return _latched(config, TasmotaPlug(config.topic, ctx.mqtt_publish, relay=config.relay))


def _sim_actuator(config: SimulatedActuatorConfig, ctx: DeviceContext) -> Actuator:
    return _latched(config, SimulatedActuator(load_w=config.load_w))


def _grbl(config: GrblLaserConfig, ctx: DeviceContext) -> GrblLaser:
    from devices.grbl import GrblLaser

    return GrblLaser(
        config.port,
        config.baudrate,
        config.poll_interval_s,
        silence_polls=config.silence_polls,
        banner_timeout_s=config.banner_timeout_s,
        reconnect_max_s=config.reconnect_max_s,
    )


def _sim_grbl(config: SimulatedGrblConfig, ctx: DeviceContext) -> GrblLaser:
    from devices.grbl.simulated import SimulatedGrblLaser

    return SimulatedGrblLaser(config.poll_interval_s, speed=config.speed)


def _command_lock(config: CommandLockConfig, ctx: DeviceContext) -> SessionLock:
    return CommandSessionLock(
        config.lock_cmd,
        config.unlock_cmd,
        config.notify_cmd,
        status_cmd=config.status_cmd,
        timeout_s=config.timeout_s,
    )


def _loginctl_lock(config: LoginctlLockConfig, ctx: DeviceContext) -> SessionLock:
    return LoginctlSessionLock(
        config.session_id, notify_cmd=config.notify_cmd, timeout_s=config.timeout_s
    )


def _windows_lock(config: WindowsLockConfig, ctx: DeviceContext) -> SessionLock:
    return WindowsSessionLock(config.notify_cmd, config.unlock_cmd, timeout_s=config.timeout_s)


def _auto_lock(config: AutoLockConfig, ctx: DeviceContext) -> SessionLock:
    return auto_session_lock(
        session_id=config.session_id,
        notify_cmd=config.notify_cmd,
        unlock_cmd=config.unlock_cmd,
        timeout_s=config.timeout_s,
    )


def _sim_lock(config: SimulatedLockConfig, ctx: DeviceContext) -> SessionLock:
    return SimulatedSessionLock()


def _octoprint(config: OctoPrintConfig, ctx: DeviceContext) -> OctoPrintFollower:
    from devices.octoprint import OctoPrintClient, OctoPrintFollower

    api_key = _secret(config.api_key, config.api_key_file, "api_key")
    if api_key is None or len(api_key) < 8:
        raise DeviceConfigError("api_key_file: an OctoPrint API key has at least 8 characters")
    client = OctoPrintClient(config.url, api_key, timeout=config.timeout_s)
    return OctoPrintFollower(
        client, throttle=config.throttle, poll_interval_s=config.poll_interval_s
    )


def _sim_printer(config: SimulatedPrinterConfig, ctx: DeviceContext) -> OctoPrintFollower:
    from devices.octoprint.simulated import SimulatedPrinter

    return SimulatedPrinter(speed=config.speed, throttle=config.throttle)


#: Every device kind fabrique knows. A new kind is a driver module and a row here.
KINDS: Final[Mapping[str, DeviceKind[Any]]] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            DeviceKind("reader.rdm6300", "reader", Rdm6300Config, _rdm6300, "RDM6300 125 kHz"),
            DeviceKind("reader.line", "reader", LineReaderConfig, _line, "serial, UID per line"),
            DeviceKind("reader.stdin", "reader", StdinReaderConfig, _stdin, "typed on stdin"),
            DeviceKind("reader.evdev", "reader", EvdevReaderConfig, _evdev, "keyboard wedge"),
            DeviceKind("reader.sim", "reader", SimulatedReaderConfig, _sim_reader, "simulated"),
            DeviceKind("actuator.gpio", "actuator", GpioRelayConfig, _gpio, "relay on a GPIO"),
            DeviceKind("actuator.shelly", "actuator", ShellyConfig, _shelly, "Shelly Gen2+"),
            DeviceKind("actuator.tasmota", "actuator", TasmotaConfig, _tasmota, "Tasmota MQTT"),
            DeviceKind(
                "actuator.sim", "actuator", SimulatedActuatorConfig, _sim_actuator, "simulated"
            ),
            DeviceKind("laser.grbl", "laser", GrblLaserConfig, _grbl, "GRBL 1.1 laser, serial"),
            DeviceKind(
                "laser.simulated", "laser", SimulatedGrblConfig, _sim_grbl, "simulated GRBL"
            ),
            DeviceKind("pc.loginctl", "pc", LoginctlLockConfig, _loginctl_lock, "Linux logind"),
            DeviceKind("pc.command", "pc", CommandLockConfig, _command_lock, "lock by commands"),
            DeviceKind("pc.windows", "pc", WindowsLockConfig, _windows_lock, "LockWorkStation"),
            DeviceKind("pc.auto", "pc", AutoLockConfig, _auto_lock, "this OS's own lock"),
            DeviceKind("pc.sim", "pc", SimulatedLockConfig, _sim_lock, "simulated"),
            DeviceKind("printer.octoprint", "printer", OctoPrintConfig, _octoprint, "OctoPrint"),
            DeviceKind(
                "printer.simulated", "printer", SimulatedPrinterConfig, _sim_printer, "simulated"
            ),
        )
    }
)


def get_kind(name: str) -> DeviceKind[Any]:
    """The table row for ``name``.

    Raises:
        DeviceConfigError: no such kind (the message lists the known ones).
    """
    try:
        return KINDS[name]
    except KeyError:
        raise DeviceConfigError(
            f"unknown device kind {name!r}; known kinds: {', '.join(sorted(KINDS))}"
        ) from None


def parse_config(name: str, options: Mapping[str, Any]) -> DeviceConfig:
    """Validate ``options`` for kind ``name`` without building anything.

    Raises:
        DeviceConfigError: unknown kind or invalid options.
    """
    config: DeviceConfig = get_kind(name).parse(options)
    return config


BuiltT = TypeVar("BuiltT")


def _build(
    name: str,
    role: Role,
    options: Mapping[str, Any],
    ctx: DeviceContext | None,
    expected: type[BuiltT],
    what: str,
) -> BuiltT:
    """Validate ``options`` for kind ``name`` of ``role`` and build it, checked to be
    an ``expected`` (a wrong row in KINDS is a configuration error, not a crash)."""
    kind = get_kind(name)
    if kind.role != role:
        raise DeviceConfigError(f"kind {name} has role {kind.role!r}, not {role!r}")
    built = kind.build(kind.parse(options), ctx or DeviceContext())
    if not isinstance(built, expected):
        raise DeviceConfigError(f"{name} did not build {what}")
    return built


def build_reader(
    name: str, options: Mapping[str, Any], ctx: DeviceContext | None = None
) -> BadgeReader:
    """Validate ``options`` and build an unopened badge reader of kind ``name``.

    Raises:
        DeviceConfigError: unknown kind, not a reader, invalid options.
    """
    return _build(name, "reader", options, ctx, BadgeReader, "a badge reader")  # type: ignore[type-abstract]


def build_actuator(
    name: str, options: Mapping[str, Any], ctx: DeviceContext | None = None
) -> Actuator:
    """Validate ``options`` and build an unopened actuator of kind ``name``.

    Raises:
        DeviceConfigError: unknown kind, not an actuator, invalid options, or a
            seam the kind needs is missing from ``ctx``.
    """
    return _build(name, "actuator", options, ctx, Actuator, "an actuator")  # type: ignore[type-abstract]


def build_laser(
    name: str, options: Mapping[str, Any], ctx: DeviceContext | None = None
) -> GrblLaser:
    """Validate ``options`` and build an unopened laser controller of kind ``name``.

    Raises:
        DeviceConfigError: unknown kind, not a laser, invalid options.
    """
    from devices.grbl import GrblLaser

    return _build(name, "laser", options, ctx, GrblLaser, "a laser controller")


def build_session_lock(
    name: str, options: Mapping[str, Any], ctx: DeviceContext | None = None
) -> SessionLock:
    """Validate ``options`` and build a gaming-PC session lock of kind ``name``.

    Raises:
        DeviceConfigError: unknown kind, not a session lock, invalid options.
    """
    return _build(name, "pc", options, ctx, SessionLock, "a session lock")  # type: ignore[type-abstract]


def build_printer(
    name: str, options: Mapping[str, Any], ctx: DeviceContext | None = None
) -> OctoPrintFollower:
    """Validate ``options`` and build an unstarted printer follower of kind ``name``.

    Raises:
        DeviceConfigError: unknown kind, not a printer, invalid options.
    """
    from devices.octoprint import OctoPrintFollower

    return _build(name, "printer", options, ctx, OctoPrintFollower, "a printer follower")


class DeviceSpec(BaseModel):
    """A device as written in the edge's settings: a kind plus its options.

    Validating a ``DeviceSpec`` validates the options against the kind, so a bad
    reader or plug configuration stops the agent at startup with a clear message.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_options(self) -> DeviceSpec:
        try:
            parse_config(self.kind, self.options)
        except DeviceConfigError as err:
            raise ValueError(str(err)) from err
        return self

    @property
    def role(self) -> Role:
        """Whether this spec builds a reader or an actuator."""
        return get_kind(self.kind).role

    def build_reader(self, ctx: DeviceContext | None = None) -> BadgeReader:
        """Build the reader this spec describes."""
        return build_reader(self.kind, self.options, ctx)

    def build_actuator(self, ctx: DeviceContext | None = None) -> Actuator:
        """Build the actuator this spec describes."""
        return build_actuator(self.kind, self.options, ctx)

    def build_laser(self, ctx: DeviceContext | None = None) -> GrblLaser:
        """Build the laser controller this spec describes."""
        return build_laser(self.kind, self.options, ctx)

    def build_session_lock(self, ctx: DeviceContext | None = None) -> SessionLock:
        """Build the gaming-PC session lock this spec describes."""
        return build_session_lock(self.kind, self.options, ctx)
