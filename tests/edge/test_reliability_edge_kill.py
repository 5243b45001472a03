"""Reliability 3: the edge agent is killed (``kill -9``) mid-session and restarted.

``fabrique edge run`` runs as its own process with a keyboard-style reader on its
standard input (the test types the badge UID) and the demo's time-lapse (60 simulated
seconds per real second, so a minute tick comes every real second). The real hub
runs in this process. After a few minute ticks the agent is killed without any
chance to clean up; restarted on the same journal, it closes the open session as
``edge_restart`` with the duration of its last tick **before touching the actuator**,
and the hub records it once: at most one minute lost, nothing counted twice. A new
session then works, and a clean stop ends it exactly.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fabrique.demo.runner import to_toml
from protocol.messages import Availability, EndReason
from protocol.signing import demo_edge_key
from tests.conftest import Broker
from tests.edge.conftest import (
    SECRET,
    HubRunner,
    ShiftedClock,
    Site,
    member_uid,
    next_afternoon,
    spawn_module,
    wait_until,
)

pytestmark = pytest.mark.broker

SCALE = 60.0


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_edge_killed_mid_session_loses_at_most_a_minute(
    mosquitto: Broker,
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    procs: list[Any],
    tmp_path: Path,
) -> None:
    site, hub = hub_runner_factory({"pi-a": 1}, clock=ShiftedClock(next_afternoon()))
    journal = tmp_path / "edge" / "journal.db"
    config = tmp_path / "edge.toml"
    config.write_text(
        to_toml(
            {
                "site": site.site,
                "edge_id": "pi-a",
                "site_secret": SECRET,
                "edge_key": demo_edge_key(SECRET.encode(), "pi-a").hex(),
                "demo": True,
                "time_scale": SCALE,
                "drain_timeout_s": 5.0,
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "reconnect_max_s": 1},
                "journal": {"path": str(journal)},
                "machines": [
                    {
                        "id": "m-01",
                        "reader": {"kind": "reader.stdin", "options": {"debounce_s": 0}},
                        "actuator": {"kind": "actuator.sim", "options": {}},
                    }
                ],
            }
        )
    )
    live = hub.hub
    assert live is not None

    def start_edge() -> Any:
        import subprocess

        proc = spawn_module(
            "fabrique",
            ["edge", "run", "--config", str(config), "--log-level", "debug"],
            tmp_path / "edge.log",
            stdin=subprocess.PIPE,
        )
        procs.append(proc)
        wait_until(lambda: live.edges_online().get("pi-a"), 30, "edge online")
        return proc

    def tap(proc: Any, uid: str) -> None:
        proc.stdin.write(f"{uid}\n".encode())
        proc.stdin.flush()

    def state() -> Any:
        return live.machine_states().get("m-01")

    first = start_edge()
    tap(first, member_uid(1))
    tapped = time.monotonic()
    session_id = wait_until(
        lambda: next(iter(hub.sessions()), None), 10, "session started on the hub"
    )
    wait_until(lambda: (hub.sessions()[session_id].last_minute or 0) >= 3, 15, "three ticks")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed = time.monotonic()
    truth = (killed - tapped) * SCALE  # an upper bound: the session started after the tap
    wait_until(lambda: live.edges_online().get("pi-a") is False, 10, "last will")
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        last_tick = db.execute(
            "SELECT MAX(json_extract(payload, '$.body.elapsed_s')) FROM journal "
            "WHERE type = 'usage_tick'"
        ).fetchone()[0]

    second = start_edge()
    row = wait_until(
        lambda: (r := hub.sessions()[session_id]).ended_at is not None and r, 15, "closed"
    )
    assert row.end_reason == EndReason.EDGE_RESTART
    assert row.used_s == last_tick  # the last journaled minute, exactly
    assert truth - 60.0 - 0.5 * SCALE <= row.used_s <= truth
    # Machine off at restart (and free again), before anyone badges.
    wait_until(lambda: (s := state()) and s.availability is Availability.FREE, 10, "free")

    # A new session on the restarted agent, ended exactly by a clean stop.
    tap(second, member_uid(1))
    new_id = wait_until(
        lambda: next((i for i in hub.sessions() if i != session_id), None), 10, "new session"
    )
    wait_until(lambda: (hub.sessions()[new_id].last_minute or 0) >= 1, 10, "a tick")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    rows = hub.sessions()
    assert set(rows) == {session_id, new_id}
    assert rows[new_id].end_reason == EndReason.EDGE_RESTART
    assert (rows[new_id].used_s or 0) >= 60.0
    with sqlite3.connect(journal) as db:
        ends = db.execute(
            "SELECT session_id, COUNT(*) FROM journal WHERE type = 'session_ended' "
            "GROUP BY session_id"
        ).fetchall()
        pending = db.execute("SELECT COUNT(*) FROM journal WHERE acked = 0").fetchone()[0]
    assert sorted(ends) == sorted([(session_id, 1), (new_id, 1)])  # nothing twice
    assert pending == 0
    assert "Traceback" not in (tmp_path / "edge.log").read_text()
