"""Shared helpers for the hub service tests: a seeded store, a fake edge, a clock.

Not a test module: imported by ``tests/hub/test_mqtt_*.py``, ``test_service*.py``
and ``test_ledger.py``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.orm import Session, sessionmaker

from hub.db.engine import make_engine, make_sessionmaker, transaction
from hub.db.migrate import upgrade
from hub.db.models import (
    Badge,
    Machine,
    MachineKind,
    MachineTraining,
    Member,
    MemberTraining,
    Quota,
    Role,
    Slot,
    Training,
    Zone,
)
from hub.settings import HubSettings
from protocol.ids import badge_hash
from protocol.messages import OfflineRule

SECRET = "test-site-secret-0123456789abcdef"
#: Wednesday 11 March 2026, 15:00 in Paris (14:00 UTC): inside every seeded slot.
NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)

_counter = itertools.count(1)


def unique_site(prefix: str = "t") -> str:
    """A site id no other test uses (tests share one broker)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def settings_for(db_url: str, broker: Any | None = None, **overrides: Any) -> HubSettings:
    values: dict[str, Any] = {
        "site": unique_site(),
        "demo": True,
        "database_url": db_url,
        "site_secret": SECRET,
        "gap_replay_after_s": 0.5,
        "ack_interval_s": 0.05,
    }
    if broker is not None:
        values.update(mqtt_host=broker.host, mqtt_port=broker.port)
    values.update(overrides)
    return HubSettings(**values)


def migrated(db_url: str) -> sessionmaker[Session]:
    """Bring the database to the latest schema and return a session factory."""
    upgrade(db_url)
    return make_sessionmaker(make_engine(db_url))


def bh(uid: str) -> str:
    """Badge hash of a test UID under the test secret."""
    return badge_hash(SECRET.encode(), uid)


@dataclass(frozen=True)
class Seed:
    """Ids of the seeded reference data."""

    alice: int  # 21, trained on the laser
    bob: int  # 12, consent given, gaming
    sam: int  # animator
    badge_alice: str
    badge_bob: str
    badge_sam: str
    badge_revoked: str  # an old badge of Alice, revoked
    edge_fab: str = "pi-fab"
    edge_game: str = "pi-game"


def seed(factory: sessionmaker[Session]) -> Seed:
    """A small site: a fablab zone (laser, printer), a gaming zone (one PC), three people.

    Slots: the fablab is open every day 08:00-22:00 to everyone; the gaming room on
    Wednesdays 14:00-18:00 for 9-15 year olds, with a 60-minute daily cap.
    """
    with transaction(factory) as s:
        s.add_all(
            [
                Zone(id="fablab", name="FabLab"),
                Zone(id="gaming", name="Salle de jeux", capacity=4),
                Training(id="laser", name="Découpe laser", validity_days=365),
            ]
        )
        s.flush()
        s.add_all(
            [
                Machine(
                    id="laser-1",
                    name="Laser",
                    kind=MachineKind.LASER,
                    zone_id="fablab",
                    edge_id="pi-fab",
                    offline_rule=OfflineRule.STAFF_ONLY,
                ),
                Machine(
                    id="printer-1",
                    name="Prusa",
                    kind=MachineKind.PRINTER,
                    zone_id="fablab",
                    edge_id="pi-fab",
                ),
                Machine(
                    id="pc-1",
                    name="PC 1",
                    kind=MachineKind.GAMING_PC,
                    zone_id="gaming",
                    edge_id="pi-game",
                ),
            ]
        )
        s.flush()
        s.add(MachineTraining(machine_id="laser-1", training_id="laser"))
        alice = Member(display_name="Alice Martin", birth_year=2005, birth_month=1)
        bob = Member(
            display_name="Bob Diallo", birth_year=2013, birth_month=6, consent_at=date(2025, 9, 1)
        )
        sam = Member(
            display_name="Sam Animateur", birth_year=1990, birth_month=5, role=Role.ANIMATOR
        )
        s.add_all([alice, bob, sam])
        s.flush()
        s.add(MemberTraining(member_id=alice.id, training_id="laser", granted_on=date(2026, 1, 5)))
        s.add_all(
            [
                Badge(hash=bh("04A1"), member_id=alice.id),
                Badge(hash=bh("04B2"), member_id=bob.id),
                Badge(hash=bh("04C3"), member_id=sam.id),
                Badge(hash=bh("04D4"), member_id=alice.id, revoked_at=NOW - timedelta(days=30)),
            ]
        )
        for weekday in range(7):
            s.add(Slot(zone_id="fablab", weekday=weekday, start=dtime(8), end=dtime(22)))
        s.add(
            Slot(
                zone_id="gaming",
                weekday=2,
                start=dtime(14),
                end=dtime(18),
                age_groups=["9-15"],
                label="Gaming 9/15",
            )
        )
        s.add(Quota(zone_id="gaming", age_group="9-15", daily_min=60))
        ids = (alice.id, bob.id, sam.id)
    return Seed(
        alice=ids[0],
        bob=ids[1],
        sam=ids[2],
        badge_alice=bh("04A1"),
        badge_bob=bh("04B2"),
        badge_sam=bh("04C3"),
        badge_revoked=bh("04D4"),
    )


# --------------------------------------------------------------------------- journal events


@dataclass
class Journal:
    """Builds an edge's journal events with consecutive sequence numbers."""

    edge: str
    seq: int = 0
    epoch: int = 1

    def event(self, type_: str, body: dict[str, Any], ts: datetime | None = None) -> dict[str, Any]:
        self.seq += 1
        return {
            "v": 1,
            "edge": self.edge,
            "seq": self.seq,
            "event_id": f"{self.edge}-{self.epoch}-{self.seq}-{uuid.uuid4().hex[:8]}",
            "epoch": self.epoch,
            "ts": (ts or NOW).isoformat(),
            "type": type_,
            "body": body,
        }

    def session(
        self,
        session_id: str,
        machine: str,
        badge: str,
        started: datetime,
        duration_s: float,
        *,
        offline: bool = False,
        reason: str = "badge_out",
        run_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """A whole session: start, one tick per full minute, end (with ``run_s`` if given)."""
        events = [
            self.event(
                "session_started",
                {
                    "session_id": session_id,
                    "machine": machine,
                    "badge": badge,
                    "offline": offline,
                    "started_at": started.isoformat(),
                    "ends_at": (started + timedelta(hours=2)).isoformat(),
                },
                started,
            )
        ]
        for minute in range(1, int(duration_s // 60) + 1):
            events.append(
                self.event(
                    "usage_tick",
                    {
                        "session_id": session_id,
                        "machine": machine,
                        "minute": minute,
                        "elapsed_s": minute * 60.0,
                    },
                    started + timedelta(minutes=minute),
                )
            )
        ended = started + timedelta(seconds=duration_s)
        end: dict[str, Any] = {
            "session_id": session_id,
            "machine": machine,
            "reason": reason,
            "duration_s": duration_s,
            "ended_at": ended.isoformat(),
        }
        if run_s is not None:
            end["run_s"] = run_s
        events.append(self.event("session_ended", end, ended))
        return events

    def job(
        self,
        session_id: str | None,
        machine: str,
        ended: datetime,
        duration_s: float,
        *,
        name: str = "piece.gcode",
        result: str = "done",
        filament_mm: float | None = None,
    ) -> dict[str, Any]:
        """A ``job_ended`` event (a print that ended at ``ended``)."""
        return self.event(
            "job_ended",
            {
                "session_id": session_id,
                "machine": machine,
                "job": name,
                "result": result,
                "duration_s": duration_s,
                "filament_mm": filament_mm,
                "ended_at": ended.isoformat(),
            },
            ended,
        )


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


# --------------------------------------------------------------------------- a fake edge


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Probe:
    """A paho client standing in for an edge (or an observer) in tests."""

    host: str
    port: int
    subscriptions: list[str]
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{next(_counter)}-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        if self.subscriptions:
            client.subscribe([(t, 1) for t in self.subscriptions])
        else:
            self._subscribed.set()

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def start(self) -> Probe:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "probe could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
        """The first message (already received or to come) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no matching message within {timeout}s; got "
                        f"{[(m.topic, m.payload[:80]) for m in self.messages]}"
                    )
                self._cond.wait(remaining)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what}")
        time.sleep(0.01)
