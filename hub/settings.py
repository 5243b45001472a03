"""Hub settings: one typed object built at start-up and passed down.

Values come from ``FABRIQUE_*`` environment variables, then from the TOML file named
by ``FABRIQUE_CONFIG`` (or passed to :func:`load_settings`), then from defaults.
Outside demo mode, placeholder secrets are refused at start-up.
"""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hub.policy.model import DEFAULT_AGE_BANDS
from protocol.ids import ID_PATTERN
from protocol.secretrules import secret_problem

DEMO_SITE_SECRET = "demo-site-secret-not-for-production"  # noqa: S105 - refused outside demo mode
DEMO_SESSION_SECRET = "demo-session-secret-not-for-production"  # noqa: S105 - refused outside demo mode


#: Who may read the API's documentation (``/docs``) and schema (``/openapi.json``).
ApiDocs = Literal["public", "admin", "off"]


class GamingQuota(BaseModel):
    """A recommended gaming-room quota for one age group (minutes).

    ``break_after_min`` minutes of continuous play force a break of ``break_min``
    minutes; ``daily_min`` caps a day's play. None: no such limit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_min: int | None = Field(default=None, ge=1, le=24 * 60)
    break_after_min: int | None = Field(default=None, ge=1, le=24 * 60)
    break_min: int | None = Field(default=None, ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _break_pair(self) -> GamingQuota:
        if (self.break_after_min is None) != (self.break_min is None):
            raise ValueError("une pause forcée demande break_after_min et break_min ensemble")
        return self


#: Healthy-gaming defaults (DESIGN §4; research notes 1.4: the French game-box warning
#: asks for 10-15 minute breaks every hour, parents' guidance caps 11-15 year olds at
#: 90-120 minutes a day). Applied only on request, to a zone's groups without a quota.
DEFAULT_GAMING_QUOTAS: dict[str, GamingQuota] = {
    "9-15": GamingQuota(daily_min=90, break_after_min=50, break_min=10),
    "16-25": GamingQuota(daily_min=180, break_after_min=120, break_min=10),
}


class HubSettings(BaseSettings):
    """Everything the hub process needs, validated at start."""

    model_config = SettingsConfigDict(env_prefix="FABRIQUE_", extra="forbid")

    site: str = Field(default="demo", pattern=ID_PATTERN, description="this site's id")
    site_name: str = "La Fabrique"
    demo: bool = Field(default=False, description="allow placeholder secrets (demo only)")
    timezone: str = "Europe/Paris"

    database_url: str = "sqlite:///fabrique.db"

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_client_id: str | None = None
    mqtt_keepalive_s: int = 30
    #: Telemetry (``tele/+``, most of the traffic) and journal events (``evt``) on a
    #: second, persistent MQTT connection, client id ``{mqtt_client_id}-tele``, so that a
    #: burst of either never queues in front of a badge request on the decision connection
    #: (issues 15 and 12). The broker's ACL must let the hub's user connect twice.
    mqtt_telemetry_connection: bool = True

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: ``/docs`` and ``/openapi.json``: ``public``, ``admin`` (logged-in admins only) or
    #: ``off``. None (the default): public in demo mode, admin otherwise, since the schema
    #: maps every route and parameter for an attacker (OWASP API8). See :attr:`docs_access`.
    api_docs: ApiDocs | None = None

    #: Keys badge UIDs; shared with this site's edges (and gaming PCs), so it signs
    #: nothing: each edge has its own key (``edge_keys_dir``).
    site_secret: SecretStr = SecretStr(DEMO_SITE_SECRET)
    #: Signs nothing shared: only used to derive API token hashes.
    session_secret: SecretStr = SecretStr(DEMO_SESSION_SECRET)

    #: One ``{edge}.key`` file (0600) per edge: the key that signs its snapshots and
    #: commands (``fabrique hub edge-key EDGE``; see :mod:`hub.edgekeys`).
    edge_keys_dir: Path = Path("/var/lib/fabrique/edge-keys")
    decision_ttl_s: float = Field(default=10.0, gt=0, description="not_after of decisions")
    command_ttl_s: float = Field(default=30.0, gt=0, description="not_after of commands")
    command_outcome_wait_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="how long an API call waits for the edge's answer to a command",
    )
    gap_replay_after_s: float = Field(default=5.0, gt=0)
    ack_interval_s: float = Field(default=0.2, gt=0)
    #: Longest wait between two replay requests for a gap that does not close (the
    #: wait doubles from ``gap_replay_after_s`` after each unanswered request).
    gap_replay_max_s: float = Field(default=300.0, gt=0)
    #: Unanswered replay requests after which a gap raises a ``journal_gap`` alert.
    gap_alert_after: int = Field(default=5, ge=1)
    #: Journal events further ahead of an edge's acknowledged seq are quarantined
    #: (a real edge is never a million events ahead; seq 2**63-1 is a poison).
    journal_window: int = Field(default=1_000_000, ge=1000, le=2**62)
    #: Journal events dated further than this after the hub's clock are quarantined.
    event_future_s: float = Field(default=86_400.0, gt=0, le=31 * 86_400)
    #: Used time may exceed a session's wall span by this much (edge clock estimates).
    usage_clock_allowance_s: float = Field(default=60.0, ge=0, le=3600)
    #: Longest a session can be on any machine (grants end with their slot or the
    #: staff maximum; extensions add at most a day): used time beyond it is clamped.
    session_max_h: float = Field(default=24.0, gt=0, le=7 * 24)
    #: Demo only: the edges' simulated clocks run this many times faster than the wall
    #: clock (``fabrique demo --speed``), so used time spans that many times a session's
    #: wall span. Must stay 1 outside demo mode (a real edge's seconds are seconds).
    demo_time_scale: float = Field(default=1.0, ge=1.0, le=1000.0)
    snapshot_days: int = Field(default=7, ge=1, le=31)
    snapshot_validity_h: float = Field(default=36.0, gt=0)
    access_log_retention_days: int = Field(default=92, ge=1)
    identified_retention_days: int = Field(
        default=92,
        ge=1,
        le=3660,
        description="days identified history (sessions, jobs, journal events, access log) "
        "is kept before it is pseudonymised (CNIL: 3 months)",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="how often the retention job runs"
    )
    staff_presence_h: float = Field(default=4.0, gt=0)
    attempt_limit: int = Field(default=8, ge=1, description="denials per window before throttling")
    attempt_window_s: float = Field(default=60.0, gt=0)
    token_ttl_h: float = Field(default=12.0, gt=0)
    #: Longest wait imposed after repeated failed logins (doubling delays, no lockout).
    login_max_delay_s: float = Field(default=60.0, gt=0, le=3600)
    #: Addresses or networks of reverse proxies whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: How long audit events (logins, staff actions) are kept (CNIL: 6 to 12 months).
    audit_retention_days: int = Field(default=365, ge=1, le=3660)

    #: Flood control (hub.throttle): per-edge token buckets on what each edge sends,
    #: sustained messages/s and burst. Generous for a real edge (a few machines, human
    #: badge taps, a journal replayed one 200-event window at a time).
    throttle_requests_per_s: float = Field(default=50.0, gt=0)
    throttle_requests_burst: float = Field(default=200.0, ge=1)
    #: Each event costs the ledger milliseconds, and a busy ledger slows paho's thread
    #: (bench/flood.py): one journal window (200 events) at once, 50/s sustained.
    throttle_events_per_s: float = Field(default=50.0, gt=0)
    throttle_events_burst: float = Field(default=200.0, ge=1)
    throttle_states_per_s: float = Field(default=20.0, gt=0)
    throttle_states_burst: float = Field(default=200.0, ge=1)
    throttle_telemetry_per_s: float = Field(default=50.0, gt=0)
    throttle_telemetry_burst: float = Field(default=200.0, ge=1)
    throttle_status_per_s: float = Field(default=1.0, gt=0)
    throttle_status_burst: float = Field(default=20.0, ge=1)
    #: Edge ids with buckets of their own; more share one overflow bucket.
    throttle_max_edges: int = Field(default=1024, ge=1, le=100_000)
    #: At most one ``edge_throttled`` alert write per edge this often (seconds).
    throttle_alert_interval_s: float = Field(default=300.0, gt=0)
    #: Badge enumeration: this many unknown badges on one reader within the window put
    #: it in a cool-down (every badge refused ``too_many_attempts``) and raise an alert.
    enumeration_limit: int = Field(default=10, ge=1)
    enumeration_window_s: float = Field(default=30.0, gt=0)
    enumeration_cooldown_s: float = Field(default=60.0, gt=0)
    #: Badges whose recent denials are remembered at most (the oldest are forgotten).
    denials_max: int = Field(default=10_000, ge=100)
    #: Python's GIL switch interval in the hub process (seconds; Python's default is
    #: 0.005). While the ledger worker applies a run of events, paho's network thread
    #: waits up to one interval for the GIL after each socket read: at the default,
    #: a flood of journal events delays every edge's badge answers by hundreds of ms.
    gil_switch_interval_s: float = Field(default=0.001, gt=0, le=0.1)
    #: Prometheus metrics (hub.exposition) on http://127.0.0.1:PORT/metrics, loopback
    #: only (scrape locally, or through an SSH tunnel or an authenticating proxy);
    #: None: not served; 0: any free port (tests).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    #: Recommended gaming quotas per age group (TOML table ``[gaming_defaults."9-15"]``);
    #: a table given in the file replaces the defaults as a whole.
    gaming_defaults: dict[str, GamingQuota] = Field(
        default_factory=lambda: dict(DEFAULT_GAMING_QUOTAS)
    )
    #: Filament used to estimate a print's weight from its length (PLA by default).
    filament_diameter_mm: float = Field(default=1.75, gt=0, le=10)
    filament_density_g_cm3: float = Field(default=1.24, gt=0, le=25)

    #: Pseudonymous time series (hub.telemetry): off unless ``influx_url`` is set.
    #: InfluxDB 2.x/3.x: ``influx_token``, ``influx_org``, ``influx_bucket``. InfluxDB 1.8+
    #: (v2 write API compatibility): ``influx_db`` (``database`` or ``database/rp``) and
    #: ``influx_token`` = ``user:password`` (or empty without authentication).
    influx_url: str | None = None
    influx_token: SecretStr | None = None
    influx_org: str = "fabrique"
    influx_bucket: str = "fabrique"
    influx_db: str | None = None
    influx_buffer: int = Field(default=100_000, ge=100, description="lines waiting, at most")
    influx_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"fuseau horaire inconnu {value!r} (ex. Europe/Paris)") from err
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as err:
                raise ValueError(
                    f"trusted_proxies : {item!r} n'est ni une adresse ni un réseau "
                    "(ex. 192.168.1.10 ou 10.0.0.0/24)"
                ) from err
        return value

    @field_validator("influx_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("influx_url must be an http:// or https:// URL")
        return value.rstrip("/") if value else None

    @field_validator("gaming_defaults")
    @classmethod
    def _known_age_groups(cls, value: dict[str, GamingQuota]) -> dict[str, GamingQuota]:
        # Age bands are not a setting (yet): a group must name one of the policy's bands,
        # or a typo would silently never apply.
        known = [band.name for band in DEFAULT_AGE_BANDS]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"tranche(s) d'âge inconnue(s) {unknown} ; attendu parmi {known}")
        return value

    @model_validator(mode="after")
    def _no_placeholders(self) -> HubSettings:
        if self.demo:
            return self
        if self.demo_time_scale != 1.0:
            raise ValueError("demo_time_scale ne vaut que pour la démo (demo = true) : retirez-le")
        for name in ("site_secret", "session_secret"):
            problem = secret_problem(
                name, getattr(self, name).get_secret_value(), f"FABRIQUE_{name.upper()}"
            )
            if problem:
                raise ValueError(problem)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def docs_access(self) -> ApiDocs:
        """Who may read the API documentation, once the demo-mode default is applied."""
        if self.api_docs is not None:
            return self.api_docs
        return "public" if self.demo else "admin"

    @property
    def influx_target(self) -> tuple[str, str, str, str] | None:
        """(url, token, org, bucket) to write time series to, or None when off."""
        if not self.influx_url:
            return None
        token = self.influx_token.get_secret_value() if self.influx_token else ""
        if self.influx_db:
            return self.influx_url, token, "-", self.influx_db
        return self.influx_url, token, self.influx_org, self.influx_bucket

    @property
    def site_secret_bytes(self) -> bytes:
        return self.site_secret.get_secret_value().encode()

    def filament_grams(self, length_mm: float) -> float:
        """Estimated weight of ``length_mm`` of filament (a cylinder of the set diameter)."""
        radius_cm = self.filament_diameter_mm / 20
        return math.pi * radius_cm**2 * (length_mm / 10) * self.filament_density_g_cm3

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


def load_settings(config: Path | None = None, **overrides: Any) -> HubSettings:
    """Build the settings from overrides, the environment and a TOML file.

    The file is ``config`` if given, else ``$FABRIQUE_CONFIG`` if set.
    """
    path = config or (
        Path(os.environ["FABRIQUE_CONFIG"]) if os.environ.get("FABRIQUE_CONFIG") else None
    )
    if path is None:
        return HubSettings(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} not found")
    cls = type(
        "HubSettings",
        (HubSettings,),
        {"model_config": SettingsConfigDict(**{**HubSettings.model_config, "toml_file": path})},
    )
    settings: HubSettings = cls(**overrides)
    return settings
