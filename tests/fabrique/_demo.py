"""Run ``fabrique demo`` as a real subprocess and check what it left behind.

Shared by the Mosquitto and the embedded-broker tests (one file each, to keep each
file around a minute). ``octoprint`` is the ``octoprint`` executable the demo is
given (``$FABRIQUE_DEMO_OCTOPRINT``) to serve printer-1 with a real OctoPrint, or
``None`` for a demo whose printers are both simulated.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import free_port

DURATION_S = 45
SPEED = 60
API_LINE = re.compile(
    r"Plancher en direct : (http://127\.0\.0\.1:\d+)/plancher.*\n"
    r"\s+admin\s+identifiant admin\s+mot de passe (\S+)"
)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def demo_env(octoprint: Path | None) -> dict[str, str]:
    """The demo's environment: with the given OctoPrint, or none at all."""
    return {**os.environ, "FABRIQUE_DEMO_OCTOPRINT": str(octoprint) if octoprint else "none"}


def run_demo_and_check(
    tmp_path: Path, broker: str, octoprint: Path | None, extra_env: dict[str, str] | None = None
) -> str:
    """Start the demo, use its API while it runs, then check the store after it exits;
    its standard output."""
    port = free_port()
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "fabrique", "demo",
                "--duration", str(DURATION_S), "--speed", str(SPEED), "--port", str(port),
                "--broker", broker, "--seed", "4",
            ],
            cwd=tmp_path, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            env={**demo_env(octoprint), **(extra_env or {})},
        )  # fmt: skip
    children: set[int] = set()
    try:
        match = _wait_for(
            lambda: API_LINE.search(out_path.read_text(encoding="utf-8")), 40, "the API line"
        )
        base, password = match.group(1), match.group(2)
        assert base == f"http://127.0.0.1:{port}"
        children = demo_children(proc, broker, octoprint)

        # The printed credentials work and the live floor sees the simulated edges.
        with httpx.Client(base_url=base, timeout=10) as api:
            login = api.post("/api/auth/login", json={"username": "admin", "password": password})
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}

            def edges_online() -> bool:
                machines = api.get("/api/live/machines", headers=headers).json()
                assert len(machines) == 7
                return all(m["edge_online"] for m in machines)

            _wait_for(edges_online, 60, "every simulated edge online")
            # The goal is 20 s on a fresh demo (about 10 s measured on a quiet machine);
            # the bound leaves room for a loaded CI machine running two test workers.
            seen: set[str] = set()
            try:
                _wait_for(lambda: _floor_moves(api, headers, seen), FLOOR_MOVES_S, "the floor")
            except AssertionError:
                raise AssertionError(
                    f"not seen within {FLOOR_MOVES_S} s: {FLOOR_MOVES - seen}"
                ) from None
        rc = proc.wait(DURATION_S + 40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stdout = out_path.read_text(encoding="utf-8")
    stderr = err_path.read_text(encoding="utf-8")
    assert rc == 0, stdout + stderr
    assert "Traceback" not in stderr
    assert "Démo arrêtée." in stdout
    assert re.search(r"── 6 bornes en ligne · \d+ sessions? ouvertes? · \d+ décisions?", stdout)
    _check_narration(stdout, octoprint is not None)

    # No process outlived the demo.
    alive = [pid for pid in children if psutil.pid_exists(pid)]
    alive = [p for p in alive if psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left behind: {alive}"

    _check_store(tmp_path / ".fabrique-demo")
    return stdout


FLOOR_MOVES_S = 35
FLOOR_MOVES = {"printer heating", "laser in session", "game in session", "kiosk refusal"}


def _floor_moves(api: httpx.Client, headers: dict[str, str], seen: set[str]) -> bool:
    """What a fresh demo shows at once (each seen at least once): a printer heating or
    printing, the laser in a session, a game counting down, a refusal on a kiosk."""
    machines = api.get("/api/live/machines", headers=headers).json()
    for m in machines:
        if m["kind"] == "printer" and (m["telemetry"].get("nozzle_target_c") or 0) > 0:
            seen.add("printer heating")
        if m["kind"] == "laser" and m["session"] is not None:
            seen.add("laser in session")
        if m["kind"] == "gaming_pc" and m["session"] is not None:
            seen.add("game in session")
        if "kiosk refusal" not in seen:
            screen = api.get(f"/kiosk/{m['id']}").text  # unpaired: no names
            if 'data-state="refuse"' in screen:
                seen.add("kiosk refusal")
    return seen >= FLOOR_MOVES


def demo_children(proc: subprocess.Popen[bytes], broker: str, octoprint: Path | None) -> set[int]:
    """The demo's child processes once its edges run (they start after the API line):
    the edges, Mosquitto when it is the broker, OctoPrint when one is given."""

    def started() -> set[int]:
        found = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        return found if _runs_edges(found) else set()

    children: set[int] = _wait_for(started, 40, "the simulated edges running")
    if broker == "mosquitto":
        assert any("mosquitto" in psutil.Process(p).name() for p in children), children
    assert (octoprint is not None) == _runs_octoprint(children)
    return children


def _runs_edges(pids: set[int]) -> bool:
    for pid in pids:
        try:
            cmdline = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:
            continue
        if "edge" in cmdline and "run" in cmdline:
            return True
    return False


def _runs_octoprint(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if any("octoprint" in part for part in psutil.Process(pid).cmdline()):
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def _check_narration(stdout: str, real_octoprint: bool) -> None:
    """What the visitors did, as the demo told it."""
    first = "OctoPrint réel (imprimante virtuelle)" if real_octoprint else "imprimante simulée"
    assert f"printer-1 : {first}" in stdout, stdout[:3000]
    assert "printer-2 : imprimante simulée" in stdout
    assert "laser-1 : pilote GRBL réel" in stdout
    # Both printers printed to the end; the power was never cut during a print.
    for printer in ("printer-1", "printer-2"):
        done = rf"{printer} +Impression « [^»]+ » (?:de |d')\w+ terminée"
        assert re.search(done, stdout), f"no print finished on {printer}:\n{stdout}"
        assert re.search(rf"{printer} +\w+ lance l'impression", stdout)
    assert "ATTENTION" not in stdout, stdout
    # Somebody badged out mid-print and the agent kept the printer on.
    assert "s'en va, son impression continue." in stdout, stdout
    assert "le travail en cours continue, la machine s'éteindra à la fin" in stdout
    assert re.search(r"imprimantes : printer-1 [^,]+, printer-2 .*impression \d+ %", stdout)
    # The laser cut, and each session's beam time was told.
    assert re.search(r"laser-1 +\w+ lance une découpe", stdout), stdout
    beams = re.findall(r"laser-1 +\w+ : (\d+) min (\d+) s de découpe laser", stdout)
    assert any(int(m) * 60 + int(s) > 0 for m, s in beams), stdout
    # Gaming PCs were unlocked for their players and locked again after them.
    assert re.search(r"pc-0\d +PC déverrouillé\.", stdout), stdout
    assert re.search(r"pc-0\d +Session du PC verrouillée\.", stdout), stdout


def _check_store(workdir: Path) -> None:
    db = sqlite3.connect(workdir / "hub.db")
    try:

        def q(sql: str) -> list[Any]:
            return db.execute(sql).fetchall()

        decisions = q("SELECT granted, code FROM access_log")
        assert len(decisions) >= 3, decisions
        assert any(granted for granted, _code in decisions)
        sessions = q("SELECT id, ended_at, end_reason, used_s, last_minute FROM usage_session")
        assert sessions, "sessions were opened"
        # Stopping ends every session and drains the journals before the hub stops.
        assert all(ended is not None and reason for _id, ended, reason, _u, _m in sessions), (
            sessions
        )
        assert sum(used for *_rest, used, _m in sessions) > 60
        assert any(minute >= 1 for *_rest, minute in sessions), "usage ticks were applied"
        types = dict(q("SELECT type, COUNT(*) FROM edge_event GROUP BY type"))
        assert types.get("session_started", 0) == len(sessions)
        assert types.get("session_ended", 0) == len(sessions)
        assert types.get("usage_tick", 0) >= 1
        # The edges' clocks run ×speed: their used time is not "beyond the wall span".
        alerts = q(
            "SELECT kind, detail FROM alert WHERE kind IN ('usage_clamped', 'journal_poison')"
        )
        assert not alerts, alerts
        # Prints reached the hub as jobs done, attributed to sessions, on both printers.
        jobs = [json.loads(b) for (b,) in q("SELECT body FROM edge_event WHERE type='job_ended'")]
        done = {j["machine"] for j in jobs if j["result"] == "done" and j["session_id"]}
        assert done == {"printer-1", "printer-2"}, jobs
        # Laser sessions carry the beam time the GRBL driver metered.
        ended = [
            json.loads(b) for (b,) in q("SELECT body FROM edge_event WHERE type='session_ended'")
        ]
        beams = [e["run_s"] for e in ended if e["machine"] == "laser-1"]
        assert any(run for run in beams if run is not None), ended
        # Every journal was applied without gaps and acknowledged.
        for edge, through, seen in q(
            "SELECT edge_id, contiguous_through, max_seen FROM edge_cursor"
        ):
            assert through == seen, (edge, through, seen)
    finally:
        db.close()
    # The edges' journals: every event acknowledged by the hub, no session left open.
    journals = sorted((workdir / "edges").glob("*.db"))
    assert len(journals) == 6, journals
    for path in journals:
        journal = sqlite3.connect(path)
        try:
            pending = journal.execute("SELECT COUNT(*) FROM journal WHERE acked = 0").fetchone()
            assert pending == (0,), path
            open_sessions = journal.execute(
                "SELECT COUNT(*) FROM journal s WHERE s.type = 'session_started' AND NOT EXISTS "
                "(SELECT 1 FROM journal e WHERE e.type = 'session_ended' "
                "AND e.session_id = s.session_id)"
            ).fetchone()
            assert open_sessions == (0,), path
        finally:
            journal.close()


def start_demo(
    tmp_path: Path, broker: str, octoprint: Path | None
) -> tuple[subprocess.Popen[bytes], Path, set[int]]:
    """Start ``fabrique demo`` without a duration; return it once its API line is out."""
    out_path = tmp_path / "stdout.txt"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fabrique", "demo", "--port", str(free_port()),
             "--broker", broker, "--quiet"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=demo_env(octoprint),
        )  # fmt: skip
    try:
        _wait_for(lambda: API_LINE.search(out_path.read_text(encoding="utf-8")), 40, "the API")
        children = demo_children(proc, broker, octoprint)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, out_path, children


def gone(pids: set[int]) -> bool:
    """True when none of ``pids`` is a live (non-zombie) process any more."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True
