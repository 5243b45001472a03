"""Edge agent settings: one typed object, read from ``edge.toml`` at start and passed down.

An edge process (one Raspberry Pi, or the gaming PC itself) serves one or more
machines. Everything it needs is validated here before anything opens, so a typo
in a pin number or a Shelly address stops the agent at start with a clear message
rather than at the first badge:

* the broker (address, credentials, TLS) and the identity of the edge (site, edge id);
* the site secret, which hashes badge UIDs, and the edge's own key (``edge_key_file``,
  provisioned by the hub), which verifies the hub's snapshots and commands;
* the journal (path, retention, resend and window) and the offline rules;
* the feedback (console log, GPIO LED and buzzer per machine);
* every machine: its kind (a row of :mod:`edge.kinds`: ``generic``, ``laser``,
  ``printer``, ``gaming_pc``), its badge reader, its actuator or session lock, and
  its optional driver (GRBL, OctoPrint), each a :class:`devices.registry.DeviceSpec`
  validated against the device registry; which devices a kind needs and accepts is
  its row's.

Values come from keyword overrides, then ``FABRIQUE_EDGE_*`` environment variables
(nested keys with ``__``: ``FABRIQUE_EDGE_MQTT__PASSWORD``), then the TOML file.
Secrets are best kept out of the file (environment, systemd ``LoadCredential``).
Outside ``demo`` mode, placeholder secrets are refused. See ``docs/edge.md`` for
every key and ``examples/edge.toml`` for a complete file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from devices.registry import DeviceSpec, Role
from edge.kinds import get_kind
from protocol.ids import Ident
from protocol.kinds import MachineKind
from protocol.messages import BreakRule
from protocol.secretrules import secret_problem
from protocol.signing import EdgeKeyError, demo_edge_key, key_from_text

__all__ = [
    "EdgeSettings",
    "FeedbackSettings",
    "GpioFeedbackSettings",
    "JournalSettings",
    "MachineKind",
    "MachineSettings",
    "MqttSettings",
    "OfflineSettings",
    "load_edge_settings",
]


GpioPin = (
    Annotated[int, Field(ge=0, le=27)]
    | Annotated[str, StringConstraints(pattern=r"^(GPIO|BCM|BOARD|WPI|J8:)\d{1,2}$")]
)


class _Part(BaseModel):
    """A section of the settings: frozen, unknown keys rejected (typos fail early)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Part):
    """The broker and how this edge logs in (``[mqtt]``)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="broker address")
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default=None, description="per-edge user (the ACL key)")
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = Field(default=None, description="CA of the broker's certificate")
    keepalive_s: int = Field(default=30, ge=5, le=600)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = Field(default=None, max_length=128)
    reconnect_min_s: int = Field(default=1, ge=1, le=60)
    reconnect_max_s: int = Field(default=10, ge=1, le=600)

    @model_validator(mode="after")
    def _backoff(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s doit être ≥ reconnect_min_s")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file est donné mais tls vaut false")
        return self


class JournalSettings(_Part):
    """The durable outbox (``[journal]``)."""

    path: Path = Field(description="SQLite file, on the data partition (created if missing)")
    retention_days: float = Field(
        default=30.0, gt=0, le=3650, description="acknowledged events kept this long (audit)"
    )
    resend_s: float = Field(
        default=10.0, gt=0, le=600, description="no acknowledgement for this long: resend"
    )
    window: int = Field(default=200, ge=1, le=10_000, description="events in flight at most")
    alarm_events: int = Field(
        default=10_000, ge=10, description="log an alarm above 80 % of this many pending events"
    )


class OfflineSettings(_Part):
    """How the edge decides alone when the hub does not answer (``[offline]``)."""

    decision_timeout_s: float = Field(
        default=0.5, ge=0.05, le=10, description="wait this long for the hub, then decide alone"
    )
    verdict_timeout_s: float = Field(default=5.0, gt=0, le=60)
    staff_grant_min: int = Field(
        default=120, ge=1, le=24 * 60, description="longest offline grant to staff"
    )
    policy_cache: Path | None = Field(
        default=None,
        description="last verified policy snapshot (default: policy.json beside the journal)",
    )


class FeedbackSettings(_Part):
    """Edge-wide feedback (``[feedback]``); LEDs and buzzers are per machine."""

    console: bool = Field(default=True, description="log every feedback event (no message)")
    log_messages: bool = Field(
        default=False,
        description="also log the messages shown to members (they carry first names): "
        "only for a local screen, never where logs are kept or readable by players",
    )
    history: int = Field(default=50, ge=0, le=10_000, description="events kept for the kiosk")


class GpioFeedbackSettings(_Part):
    """LED and buzzer at one machine's reader (``[machines.feedback]``)."""

    green_pin: GpioPin | None = None
    red_pin: GpioPin | None = None
    buzzer_pin: GpioPin | None = None
    active_high: bool = True

    @model_validator(mode="after")
    def _some_pin(self) -> GpioFeedbackSettings:
        pins = [p for p in (self.green_pin, self.red_pin, self.buzzer_pin) if p is not None]
        if not pins:
            raise ValueError("indiquez au moins une broche : green_pin, red_pin ou buzzer_pin")
        if len({str(p) for p in pins}) != len(pins):
            raise ValueError("les broches de signalisation doivent être différentes")
        return self


_ROLE_OF_SECTION: dict[str, Role] = {
    "reader": "reader",
    "actuator": "actuator",
    "pc": "pc",
    "laser": "laser",
    "printer": "printer",
}


class MachineSettings(_Part):
    """One machine served by this edge (``[[machines]]``)."""

    id: Ident
    kind: str = Field(
        default=MachineKind.GENERIC.value, description="a row of the table of kinds (edge.kinds)"
    )
    reader: DeviceSpec = Field(description="badge reader at this machine")
    actuator: DeviceSpec | None = Field(default=None, description="relay or smart plug")
    pc: DeviceSpec | None = Field(default=None, description="gaming PC session lock")
    laser: DeviceSpec | None = Field(default=None, description="GRBL controller of a laser")
    printer: DeviceSpec | None = Field(default=None, description="OctoPrint of a 3D printer")
    feedback: GpioFeedbackSettings | None = None
    warn_before_min: tuple[Annotated[int, Field(ge=1, le=240)], ...] = (10, 2)
    link_grace_s: float = Field(
        default=30.0, ge=0, le=3600, description="laser: cut after the hub is lost this long"
    )
    busy_above_w: float | None = Field(
        default=None, gt=0, description="generic: power above this means busy (needs a meter)"
    )
    idle_timeout_min: float | None = Field(
        default=None, gt=0, le=24 * 60, description="generic: end a session idle this long"
    )
    cooldown_below_c: float = Field(
        default=50.0,
        gt=0,
        le=300,
        description="printer: power is never cut while the nozzle is at or above this",
    )
    cooldown_max_min: float = Field(
        default=10.0,
        ge=0,
        le=120,
        description="printer: cut anyway after waiting this long to cool (0: never wait)",
    )
    unreachable_hold_max_min: float = Field(
        default=30.0,
        ge=0,
        le=24 * 60,
        description=(
            "printer: hold the power this long at most while OctoPrint is unreachable "
            "or reports an error (it may still print from its buffer), then cut"
        ),
    )
    offline_break: BreakRule | None = Field(
        default=None, description="break rule of members' offline grants (gaming)"
    )
    tick_s: float = Field(default=60.0, ge=0.1, le=60.0, description="usage tick (tests only)")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        get_kind(kind)  # raises ValueError naming the known kinds
        return kind

    @model_validator(mode="after")
    def _devices_fit_the_kind(self) -> MachineSettings:
        given = {
            name
            for name in ("actuator", "pc", "laser", "printer")
            if getattr(self, name) is not None
        }
        kind = get_kind(self.kind)
        for needed in kind.needs:
            if needed not in given:
                raise ValueError(f"une machine {self.kind} demande un appareil [machines.{needed}]")
        allowed = set(kind.needs) | set(kind.accepts)
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"une machine {self.kind} ne prend pas d'appareil {', '.join(extra)}")
        for name, role in _ROLE_OF_SECTION.items():
            spec: DeviceSpec | None = getattr(self, name)
            if spec is not None and spec.role != role:
                raise ValueError(f"{name} : le type {spec.kind} est un {spec.role}, pas un {role}")
        if self.idle_timeout_min is not None and self.busy_above_w is None:
            raise ValueError("idle_timeout_min demande busy_above_w (repos : sous cette puissance)")
        return self


class EdgeSettings(BaseSettings):
    """Everything one edge process needs, validated at start."""

    model_config = SettingsConfigDict(
        env_prefix="FABRIQUE_EDGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    site: Ident = Field(description="this site's id (the topic root)")
    edge_id: Ident = Field(description="this edge's id (its MQTT user and topics)")
    site_secret: SecretStr = Field(description="keys badge hashes; the hub's value")
    edge_key_file: Path | None = Field(
        default=None,
        description="this edge's own key (0600, from `fabrique hub edge-key EDGE`): "
        "verifies the hub's snapshots and commands",
    )
    edge_key: SecretStr | None = Field(
        default=None, description="the same key inline (64 hex characters), or in the environment"
    )
    demo: bool = Field(default=False, description="accept placeholder secrets (demo only)")
    mqtt: MqttSettings = MqttSettings()
    journal: JournalSettings
    offline: OfflineSettings = OfflineSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    machines: tuple[MachineSettings, ...] = Field(min_length=1, max_length=64)
    tele_interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    drain_timeout_s: float = Field(
        default=5.0, ge=0, le=120, description="on stop, wait this long for acknowledgements"
    )
    gpio_mock: bool = Field(
        default=False, description="use gpiozero's mock pins (demo, tests, no hardware)"
    )
    #: Simulated seconds per real second (demo only; 1 in production).
    time_scale: float = Field(default=1.0, gt=0, le=1000)

    @field_validator("machines")
    @classmethod
    def _unique(cls, machines: tuple[MachineSettings, ...]) -> tuple[MachineSettings, ...]:
        ids = [m.id for m in machines]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"identifiants de machine en double : {', '.join(dupes)}")
        return machines

    @model_validator(mode="after")
    def _checks(self) -> EdgeSettings:
        secret = self.site_secret.get_secret_value()
        if len(secret) < 16:
            raise ValueError("site_secret doit faire au moins 16 caractères")
        if not self.demo:
            problem = secret_problem("site_secret", secret, "FABRIQUE_EDGE_SITE_SECRET")
            if problem:  # the same secret as the hub's: same rules (protocol.secretrules)
                raise ValueError(problem)
        if self.edge_key is not None:
            try:
                key_from_text(self.edge_key.get_secret_value())
            except EdgeKeyError as err:
                raise ValueError(f"edge_key : {err}") from err
        if not self.demo and self.edge_key is None and self.edge_key_file is None:
            raise ValueError(
                "edge_key_file manquant : la clé propre de cette borne, donnée par "
                f"`fabrique hub edge-key {self.edge_id}` sur le hub"
            )
        if self.time_scale != 1.0 and not self.demo:
            raise ValueError("time_scale est réservé à la démo (demo = true)")
        return self

    @property
    def secret_bytes(self) -> bytes:
        """The site secret as bytes (HMAC key)."""
        return self.site_secret.get_secret_value().encode()

    def key_bytes(self) -> bytes:
        """This edge's own key: ``edge_key``, else ``edge_key_file``, else (demo only) the
        key derived from the site secret (:func:`protocol.signing.demo_edge_key`).

        Raises:
            OSError: the key file cannot be read.
            EdgeKeyError: it holds no valid key.
        """
        if self.edge_key is not None:
            return key_from_text(self.edge_key.get_secret_value())
        if self.edge_key_file is not None:
            return key_from_text(self.edge_key_file.read_text(encoding="ascii"))
        return demo_edge_key(self.secret_bytes, self.edge_id)

    @property
    def policy_cache_path(self) -> Path:
        """Where the last verified policy snapshot is kept across restarts."""
        return self.offline.policy_cache or self.journal.path.with_name("policy.json")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_edge_settings(path: Path, **overrides: Any) -> EdgeSettings:
    """Build the settings from ``overrides``, ``FABRIQUE_EDGE_*`` variables and ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        tomllib.TOMLDecodeError: the file is not valid TOML.
        pydantic.ValidationError: the values do not describe a valid edge.
    """
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} not found")
    cls = type(
        "EdgeSettings",
        (EdgeSettings,),
        {"model_config": SettingsConfigDict(**{**EdgeSettings.model_config, "toml_file": path})},
    )
    # Relative journal and cache paths are relative to the file, not to the cwd.
    base = path.resolve().parent
    settings: EdgeSettings = cls(**{k: v for k, v in overrides.items() if v is not None})
    journal = settings.journal
    if not journal.path.is_absolute():
        journal = journal.model_copy(update={"path": base / journal.path})
    if settings.edge_key_file is not None and not settings.edge_key_file.is_absolute():
        settings = settings.model_copy(update={"edge_key_file": base / settings.edge_key_file})
    offline = settings.offline
    if offline.policy_cache is not None and not offline.policy_cache.is_absolute():
        offline = offline.model_copy(update={"policy_cache": base / offline.policy_cache})
    return settings.model_copy(update={"journal": journal, "offline": offline})


def env_secret() -> str | None:
    """The site secret from ``$FABRIQUE_SITE_SECRET`` (shared with the hub's variable)."""
    return os.environ.get("FABRIQUE_SITE_SECRET") or None
