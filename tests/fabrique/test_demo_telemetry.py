"""A whole demo run writes to InfluxDB (VictoriaMetrics behind a recording proxy), and
not one line written carries a name, a member id, a badge hash, a birth date or a
file name; every line follows the schema."""

from __future__ import annotations

import gzip
import re
import sqlite3
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fabrique.demo import data
from protocol.telemetry_schema import MEASUREMENTS
from tests.fabrique._demo import run_demo_and_check
from tests.tsdb import VictoriaMetrics

LINE = re.compile(r"^([a-z_]+)((?:,[a-z_]+=[^, ]+)*) (\S+) (\d+)$")


class Recorder:
    """Records every line-protocol body and forwards it to the real server."""

    def __init__(self, upstream: str) -> None:
        self.lines: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                recorder.lines += [line for line in body.decode().split("\n") if line]
                req = urllib.request.Request(upstream + self.path, data=body, method="POST")
                with urllib.request.urlopen(req, timeout=30) as r:
                    status = r.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_demo_with_embedded_broker_simulated_printers_and_pseudonymous_points(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    """The embedded-broker demo end to end (as the Mosquitto one), writing telemetry:
    one run serves both checks (a demo run is the suite's longest kind of test)."""
    recorder = Recorder(victoria.url)
    influx = {"FABRIQUE_INFLUX_URL": recorder.url, "FABRIQUE_INFLUX_BUCKET": "demo"}
    try:
        stdout = run_demo_and_check(tmp_path, "embedded", octoprint=None, extra_env=influx)
    finally:
        recorder.close()
    assert f"Télémétrie : InfluxDB {recorder.url}" in stdout

    db = sqlite3.connect(tmp_path / ".fabrique-demo" / "hub.db")
    badges = [row[0] for row in db.execute("SELECT hash FROM badge")]
    files = [row[0] for row in db.execute("SELECT job FROM machine_job") if row[0]]
    member_ids = {str(row[0]) for row in db.execute("SELECT id FROM member")}
    db.close()
    assert badges
    forbidden = [*badges, *files]
    for person in data.PEOPLE:
        forbidden += [person.uid, *person.name.split()]
    forbidden = [w.lower() for w in forbidden if len(w) >= 3]

    lines = recorder.lines
    seen: set[str] = set()
    for line in lines:
        match = LINE.match(line)
        assert match, f"not schema line protocol: {line}"
        name, tags, fields, _ts = match.groups()
        schema = MEASUREMENTS[name]
        seen.add(name)
        for pair in filter(None, tags.split(",")):
            key, value = pair.split("=", 1)
            assert key in schema.tags, line
            if key not in ("machine", "zone", "edge", "site"):
                assert value not in member_ids or key in ("weekday", "hour"), line
        for pair in fields.split(","):
            key, value = pair.split("=", 1)
            assert key in schema.fields, line
            float(value)  # numeric
        low = line.lower()
        for word in forbidden:
            assert word not in low, f"{word!r} reached InfluxDB: {line}"
    assert {"access", "session", "edge", "printer"} <= seen, seen  # occupancy: each minute
    stored = {row["metric"]["__name__"] for row in victoria.export()}  # type: ignore[index]
    # The demo's sessions run in an accelerated clock, hours ahead, which VictoriaMetrics
    # keeps out of its search window; what the hub stamps with its own clock is there.
    assert {"access_n", "edge_online", "printer_nozzle_c"} <= stored
