"""Memory and idle CPU of one edge process serving three machines with a session open.

Starts a private Mosquitto, a seeded store and the hub (its own process), then
``fabrique edge run --config edge.toml`` as its own process with three machines:
the first reads badges from its standard input (the script types one UID, which
opens a session through the hub), the two others have simulated readers. Once the
session is open and the process has settled, the script measures the edge
process's resident memory (RSS, and USS: the memory only it uses) and its CPU use
over ``--idle`` seconds, as a percentage of one core.

Goals (issue): RSS ≤ 50 MB, idle CPU ≤ 1 % of a core::

    .venv/bin/python bench/edge_footprint.py
    .venv/bin/python bench/edge_footprint.py --idle 60 --strict
    .venv/bin/python bench/edge_footprint.py --drivers   # machine 2 a laser, 3 a printer

``--drivers`` makes the second machine a laser (the real GRBL driver polling a
simulated GRBL 1.1 over a pty, in the same process) and the third a printer (a
simulated printer behind the real follower code): the difference with a run
without it is the drivers' memory and idle CPU.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._edge_setup import (
    edge_values,
    machine_id,
    member_uid,
    rig,
    wait,
)
from bench._setup import _die_with_parent, wait_hub_online
from fabrique.demo.runner import to_toml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a goal is missed")
    parser.add_argument(
        "--drivers", action="store_true", help="a laser (GRBL) and a printer among the machines"
    )
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="fabrique-edge-footprint-") as tmp,
        rig(Path(tmp), machines=3, members=2) as r,
    ):
        assert r.hub is not None
        wait_hub_online(r.port, r.hub)
        machines = [
            {"id": machine_id(0), "reader": {"kind": "reader.stdin", "options": {}}},
            {"id": machine_id(1)},
            {"id": machine_id(2)},
        ]
        if args.drivers:
            machines[1] |= {
                "kind": "laser",
                "laser": {"kind": "laser.simulated", "options": {}},
            }
            machines[2] |= {
                "kind": "printer",
                "printer": {"kind": "printer.simulated", "options": {}},
            }
        config = r.workdir / "edge.toml"
        config.write_text(to_toml(edge_values(r, machines)))
        with (r.workdir / "edge.log").open("ab") as log:
            # Its own process with a pipe as the first machine's badge reader.
            popen = subprocess.Popen(
                [sys.executable, "-m", "fabrique", "edge", "run", "-c", str(config)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            db = r.workdir / "hub.db"

            def sessions() -> int:
                with sqlite3.connect(db) as conn:
                    return int(
                        conn.execute(
                            "SELECT COUNT(*) FROM usage_session WHERE ended_at IS NULL"
                        ).fetchone()[0]
                    )

            def edge_online() -> bool:
                with sqlite3.connect(db) as conn:
                    row = conn.execute(
                        "SELECT online FROM edge_cursor WHERE edge_id = 'e-000'"
                    ).fetchone()
                return bool(row and row[0])

            wait(edge_online, 30, "the edge online")
            assert popen.stdin is not None
            popen.stdin.write(f"{member_uid(0)}\n".encode())
            popen.stdin.flush()
            wait(lambda: sessions() == 1, 10, "an open session")
            time.sleep(args.settle)
            proc = psutil.Process(popen.pid)
            threads = proc.num_threads()
            info = proc.memory_full_info()
            cpu0, t0 = proc.cpu_times(), time.monotonic()
            time.sleep(args.idle)
            cpu1, t1 = proc.cpu_times(), time.monotonic()
            peak_rss = max(info.rss, proc.memory_info().rss)
            used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            cpu_pct = 100.0 * used / (t1 - t0)
            still_open = sessions()
        finally:
            popen.terminate()
            popen.wait(30)

    rss_mb, uss_mb = peak_rss / 2**20, info.uss / 2**20
    ok_mem, ok_cpu = rss_mb <= 50.0, cpu_pct <= 1.0
    what = "a laser (GRBL) and a printer among them, " if args.drivers else ""
    print(f"edge process, 3 machines, {what}1 open session")
    print(f"  RSS {rss_mb:.1f} MB (USS {uss_mb:.1f} MB), {threads} threads")
    print(f"  idle CPU {cpu_pct:.2f} % of a core over {args.idle:g} s")
    print(f"goal RSS ≤ 50 MB: {'met' if ok_mem else 'MISSED'}")
    print(f"goal idle CPU ≤ 1 %: {'met' if ok_cpu else 'MISSED'}")
    if still_open != 1:
        print(f"warning: {still_open} open sessions at the end of the measure")
    if args.json:
        args.json.write_text(
            json.dumps({"rss_mb": rss_mb, "uss_mb": uss_mb, "cpu_pct": cpu_pct, "threads": threads})
        )
    return 3 if args.strict and not (ok_mem and ok_cpu) else 0


if __name__ == "__main__":
    sys.exit(main())
