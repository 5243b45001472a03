"""Badge-in to actuator-on latency of the edge agent, online and offline.

Everything runs on 127.0.0.1 and is started and stopped by the script:

1. a private Mosquitto (``set_tcp_nodelay true``), a seeded SQLite store and the hub
   as its own process (``fabrique hub run``), as in ``bench/decisions.py``;
2. one edge agent (:class:`edge.agent.Agent`) in this process, one machine with a
   simulated reader and a simulated actuator whose ``on()`` is timestamped;
3. **online**: ``--runs`` times, a badge is tapped (:meth:`SimulatedReader.present`)
   and the time until the actuator's ``on()`` is measured: reader thread → agent
   thread → ``req/access`` → broker → hub decision → ``cmd/access`` → agent →
   journal (``session_started``, fsync) → actuator. The badge-out follows;
4. **offline, hub silent**: the hub process is frozen (``SIGSTOP``: its connection
   stays open, so its status stays online and no last will fires) and
   ``--offline-runs`` badges are tapped: the agent waits ``decision_timeout_s``
   (0.5 s), decides from the signed snapshot, journals and switches on.

Taps are ``--pause`` seconds apart (0.5 s by default: a person needs longer to tap
again); with ``--pause 0`` the next badge arrives while the hub is still applying the
previous session's journal events, which measures the hub under its own load.

Goals (issue): online p99 ≤ 10 ms; offline p99 ≤ timeout + 5 ms. ``--strict`` exits
with status 3 when one is missed::

    .venv/bin/python bench/edge_latency.py
    .venv/bin/python bench/edge_latency.py --runs 500 --offline-runs 40 --strict
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._edge_setup import (
    edge_values,
    machine_id,
    member_uid,
    quantiles,
    rig,
    wait,
)
from bench._setup import wait_hub_online


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="online badge-ins")
    parser.add_argument("--offline-runs", type=int, default=20, help="badge-ins, hub silent")
    parser.add_argument("--timeout", type=float, default=0.5, help="decision timeout (s)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.5,
        help="seconds between a badge-out and the next badge-in (people are not that fast; "
        "0 measures back-to-back taps while the hub still applies the last session)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a goal is missed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from devices.actuators import SimulatedActuator
    from devices.readers import SimulatedReader
    from edge.agent import Agent
    from edge.settings import EdgeSettings

    with (
        tempfile.TemporaryDirectory(prefix="fabrique-edge-bench-") as tmp,
        rig(Path(tmp), machines=1, members=4) as r,
    ):
        assert r.hub is not None
        wait_hub_online(r.port, r.hub)
        machine = machine_id(0)
        settings = EdgeSettings(
            **edge_values(
                r,
                [{"id": machine}],
                offline={"decision_timeout_s": args.timeout},
                drain_timeout_s=2.0,
            )
        )
        agent = Agent(settings)
        agent.start()
        try:
            wait(lambda: agent.hub_online and agent.policy_version, 30, "edge online")
            unit = agent.unit(machine)
            reader, actuator = unit.reader, unit.actuator
            assert isinstance(reader, SimulatedReader)
            assert isinstance(actuator, SimulatedActuator)
            switched = threading.Event()
            on_at: list[float] = []
            original_on = actuator.on

            def timed_on() -> None:
                original_on()
                on_at.append(time.perf_counter())
                switched.set()

            actuator.on = timed_on  # type: ignore[method-assign]

            def one(uid: str, expect_offline: bool) -> float:
                switched.clear()
                t0 = time.perf_counter()
                reader.present(uid)
                if not switched.wait(5):
                    raise TimeoutError("the machine did not switch on")
                latency = on_at[-1] - t0
                view = wait(
                    lambda: (v := agent.view(machine).session).state.value == "active" and v,
                    5,
                    "active",
                )
                if view.offline != expect_offline:
                    raise RuntimeError(f"expected offline={expect_offline}, got {view}")
                reader.present(uid)  # badge-out
                wait(lambda: agent.view(machine).session.state.value == "idle", 5, "idle")
                time.sleep(args.pause)
                return latency

            for _ in range(10):  # warm-up
                one(member_uid(0), False)
            online = [one(member_uid(0), False) for _ in range(args.runs)]

            r.hub.popen.send_signal(signal.SIGSTOP)  # the hub is silent, its status online
            try:
                offline = [one(member_uid(0), True) for _ in range(args.offline_runs)]
            finally:
                r.hub.popen.send_signal(signal.SIGCONT)
        finally:
            agent.stop()

    on_q, off_q = quantiles(online), quantiles(offline)
    goal_on, goal_off = 10.0, args.timeout * 1000 + 5.0
    print(f"edge badge → actuator on (ms), {args.pause:g} s between taps")
    print("                                    n    p50    p90    p99    max")
    for name, q in (("online (hub decides)", on_q), ("offline (hub silent)", off_q)):
        print(
            f"  {name:<30} {q['n']:>4} {q['p50']:>6.2f} {q['p90']:>6.2f} "
            f"{q['p99']:>6.2f} {q['max']:>6.2f}"
        )
    ok_on, ok_off = on_q["p99"] <= goal_on, off_q["p99"] <= goal_off
    print(f"goal online p99 ≤ {goal_on:.0f} ms: {'met' if ok_on else 'MISSED'}")
    print(f"goal offline p99 ≤ {goal_off:.0f} ms: {'met' if ok_off else 'MISSED'}")
    report: dict[str, Any] = {
        "online": on_q,
        "offline": off_q,
        "timeout_s": args.timeout,
        "pause_s": args.pause,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 3 if args.strict and not (ok_on and ok_off) else 0


if __name__ == "__main__":
    sys.exit(main())
