"""OctoPrint event → hub state latency: a print starts or is cancelled, how soon the hub knows.

Everything runs on 127.0.0.1 and is started and stopped by the script:

1. a private Mosquitto, a seeded SQLite store and the hub as its own process
   (``fabrique hub run``), as in ``bench/edge_latency.py``;
2. a real OctoPrint 1.11 with its Virtual Printer (installed into its cached venv if
   needed, as the tests do), or the one given with ``--octoprint URL --api-key KEY``;
3. one edge agent (:class:`edge.agent.Agent`) in this process, one ``printer``
   machine followed through OctoPrint's push API (throttle 1), a simulated reader
   and plug;
4. an MQTT observer subscribed to the machine's retained ``state/{machine}``: it
   receives what the hub receives, from the same broker, at the same moment.

Each run: a member badges in (session active), then

* **start**: ``POST /api/job start`` of a short dwell print → the hub sees
  ``detail.job = true`` (OctoPrint's ``PrintStarted`` → ``job_started``);
* **cancel**: ``POST /api/job cancel`` → the hub sees the printer **free** (a
  printer's session ends with its job; OctoPrint's ``PrintCancelled``, then the push
  snapshot that shows no job any more releases the power, the cold printer needs no
  cool-down, ``session_ended`` is journaled, the state published).

Times come from one clock (``time.perf_counter``) on every thread: the REST call
is issued (t0); the follower receives OctoPrint's event (and, for a cancel, the
first snapshot without a job); the agent publishes the state; the observer gets
it. The shares are OctoPrint (REST call → event → snapshot), the edge (→ publish)
and the broker (→ observer ≈ hub).

Goal (issue "machines"): OctoPrint event → hub state ≤ 1 s::

    .venv/bin/python bench/printer_state_latency.py                 # 12 runs
    .venv/bin/python bench/printer_state_latency.py --runs 30 --json out.json --strict
    .venv/bin/python bench/printer_state_latency.py --runs 2 --octoprint http://127.0.0.1:5000 \\
        --api-key KEY                                               # smoke, reuse an OctoPrint
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._edge_setup import EDGE, SITE, edge_values, machine_id, member_uid, rig, wait
from bench._setup import wait_hub_online

GOAL_MS = 1000.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Marks:
    """What each thread saw, stamped with ``time.perf_counter()``."""

    events: list[tuple[float, str]] = field(default_factory=list)
    idle_snapshots: list[float] = field(default_factory=list)
    published: list[tuple[float, bool, str]] = field(default_factory=list)  # job, availability
    observed: list[tuple[float, bool, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, seq: list[Any], after: float, match: Callable[[Any], bool]) -> float | None:
        with self.lock:
            for item in seq:
                at = item if isinstance(item, float) else item[0]
                if at >= after and match(item):
                    return at
        return None


@contextmanager
def octoprint_server(
    url: str | None, api_key: str | None, workdir: Path
) -> Iterator[tuple[str, str]]:
    """The OctoPrint to use: the one given, or a fresh one with its Virtual Printer."""
    if url is not None:
        if api_key is None:
            raise SystemExit("--api-key is needed with --octoprint")
        yield url, api_key
        return
    from tests.conftest import free_port
    from tests.devices.octoprint.conftest import (
        OctoPrintServer,
        ensure_octoprint,
        octoprint_venv_dir,
    )

    server = OctoPrintServer(ensure_octoprint(octoprint_venv_dir()), workdir / "octo", free_port())
    server.prepare()
    server.start()
    try:
        yield server.url, server.key
    finally:
        server.stop()


def observer(port: int, topic: str, marks: Marks) -> Any:
    """A paho client recording every retained state of the machine as it arrives."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol.messages import MachineState, decode

    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        state = decode(MachineState, bytes(msg.payload))
        with marks.lock:
            marks.observed.append(
                (at, state.detail is not None and state.detail.job, state.availability.value)
            )

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-printer-observer")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        raise TimeoutError("the observer could not subscribe")
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="start + cancel cycles measured")
    parser.add_argument("--warmup", type=int, default=1, help="cycles run first, not measured")
    parser.add_argument("--octoprint", help="use this OctoPrint (URL) instead of starting one")
    parser.add_argument("--api-key", help="a user's API key of --octoprint")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--strict", action="store_true", help="exit 3 when the goal is missed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from devices.actuators import SimulatedActuator
    from devices.octoprint import JobEvent, OctoPrintClient, PrinterSnapshot
    from edge.agent import Agent
    from edge.link import EdgeLink, LinkHandler, LinkSettings
    from edge.settings import EdgeSettings
    from fabrique.demo.octoprint import dwell_gcode
    from protocol.messages import MachineState
    from protocol.topics import Topics

    marks = Marks()

    class TimedLink(EdgeLink):
        def publish_state(self, state: MachineState) -> bool:
            with marks.lock:
                marks.published.append(
                    (
                        time.perf_counter(),
                        state.detail is not None and state.detail.job,
                        state.availability.value,
                    )
                )
            return super().publish_state(state)

    def timed_link(s: LinkSettings, handler: LinkHandler, epochs: Callable[[], int]) -> EdgeLink:
        return TimedLink(s, handler, epoch_source=epochs)

    machine = machine_id(0)
    starts: list[dict[str, float]] = []
    cancels: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="fabrique-printer-bench-") as tmp,
        octoprint_server(args.octoprint, args.api_key, Path(tmp)) as (url, key),
        rig(Path(tmp), machines=1, members=2) as r,
    ):
        assert r.hub is not None
        wait_hub_online(r.port, r.hub)
        options = {"url": url, "api_key": key, "throttle": 1}
        printer = {
            "id": machine,
            "kind": "printer",
            "printer": {"kind": "printer.octoprint", "options": options},
        }
        settings = EdgeSettings(**edge_values(r, [printer], drain_timeout_s=2.0))
        agent = Agent(settings, link_factory=timed_link)
        watch = observer(r.port, Topics(SITE).state(EDGE, machine), marks)
        loop = asyncio.new_event_loop()
        client = OctoPrintClient(url, key)
        loop.run_until_complete(client.__aenter__())
        agent.start()
        try:
            unit = agent.unit(machine)
            from edge.kinds.printer import PrinterFollower

            assert isinstance(unit.follower, PrinterFollower)
            follower, actuator = unit.follower.printer, unit.actuator
            assert follower is not None
            assert isinstance(actuator, SimulatedActuator)

            def on_event(event: JobEvent) -> None:
                with marks.lock:
                    marks.events.append((time.perf_counter(), event.kind.value))

            def on_snapshot(snapshot: PrinterSnapshot) -> None:
                if not snapshot.job_active and snapshot.connected:
                    with marks.lock:
                        marks.idle_snapshots.append(time.perf_counter())

            follower.add_listener(on_event=on_event, on_snapshot=on_snapshot)
            wait(lambda: agent.hub_online and agent.policy_version, 30, "edge online")
            wait(
                lambda: follower.link_up and follower.snapshot.state == "Operational", 30, "printer"
            )
            loop.run_until_complete(
                client.upload("bench.gcode", dwell_gcode(30, heat=False), select=True)
            )

            def cycle() -> tuple[dict[str, float], dict[str, float]]:
                reader = unit.reader
                reader.present(member_uid(0))  # type: ignore[attr-defined]
                wait(lambda: agent.view(machine).session.state.value == "active", 10, "session")
                wait(
                    lambda: marks.first(marks.observed, 0, lambda o: o[2] == "in_use"), 10, "in use"
                )
                time.sleep(0.2)
                t0 = time.perf_counter()
                loop.run_until_complete(client.start())
                seen = wait(lambda: marks.first(marks.observed, t0, lambda o: o[1]), 10, "job seen")
                start = {
                    "total": seen - t0,
                    "octoprint": (
                        marks.first(marks.events, t0, lambda e: e[1] == "PrintStarted") or seen
                    )
                    - t0,
                    "published": (marks.first(marks.published, t0, lambda p: p[1]) or seen) - t0,
                }
                wait(lambda: follower.snapshot.state == "Printing", 10, "printing")
                time.sleep(0.5)
                t0 = time.perf_counter()
                loop.run_until_complete(client.cancel())
                free = wait(
                    lambda: marks.first(marks.observed, t0, lambda o: o[2] == "free"),
                    10,
                    "free seen",
                )
                cancel = {
                    "total": free - t0,
                    "octoprint": (
                        marks.first(marks.events, t0, lambda e: e[1] == "PrintCancelled") or free
                    )
                    - t0,
                    "idle_snapshot": (marks.first(marks.idle_snapshots, t0, lambda _: True) or free)
                    - t0,
                    "published": (
                        marks.first(marks.published, t0, lambda p: p[2] == "free") or free
                    )
                    - t0,
                }
                wait(lambda: follower.snapshot.state == "Operational", 10, "operational again")
                time.sleep(0.3)
                return start, cancel

            for _ in range(args.warmup):
                cycle()
            for _ in range(args.runs):
                s, c = cycle()
                starts.append(s)
                cancels.append(c)
        finally:
            agent.stop()
            watch.loop_stop()
            watch.disconnect()
            loop.run_until_complete(client.__aexit__(None, None, None))
            loop.close()

    def figures(values: list[float]) -> dict[str, float]:
        ms = [v * 1000 for v in values]
        return {"p50": statistics.median(ms), "p95": pct(ms, 0.95), "max": max(ms)}

    labels = {
        "octoprint": "REST call → OctoPrint's event",
        "idle_snapshot": "→ snapshot without a job",
        "published": "→ the edge publishes the state",
        "total": "→ the hub's subscription has it",
    }
    report: dict[str, Any] = {"runs": args.runs, "goal_ms": GOAL_MS}
    print(f"printer state latency (ms), {args.runs} runs: OctoPrint Virtual Printer → edge → hub")
    print("                                                p50      p95      max")
    for name, rows, steps in (
        ("start", starts, ("octoprint", "published", "total")),
        ("cancel", cancels, ("octoprint", "idle_snapshot", "published", "total")),
    ):
        # Shares per run: OctoPrint until the agent has what it acts on, the edge until
        # it publishes, the broker until the hub's subscription delivers.
        acted_on = steps[-3]
        shares = {
            "octoprint": [row[acted_on] for row in rows],
            "edge": [row["published"] - row[acted_on] for row in rows],
            "broker": [row["total"] - row["published"] for row in rows],
        }
        report[name] = {step: figures([row[step] for row in rows]) for step in steps}
        report[name]["shares_p50_ms"] = {k: statistics.median(v) * 1000 for k, v in shares.items()}
        title = "start → the hub sees job" if name == "start" else "cancel → the hub sees free"
        print(f"  {title}")
        for step in steps:
            f = report[name][step]
            print(f"    {labels[step]:<42} {f['p50']:>7.1f}  {f['p95']:>7.1f}  {f['max']:>7.1f}")
        share = report[name]["shares_p50_ms"]
        print(
            f"    shares (p50): OctoPrint {share['octoprint']:.1f} · edge {share['edge']:.1f} · "
            f"broker → hub {share['broker']:.1f}"
        )
    worst = max(report[n]["total"]["p95"] for n in ("start", "cancel"))
    ok = worst <= GOAL_MS
    report["goal_met"] = ok
    print(f"goal: p95 ≤ {GOAL_MS:.0f} ms: {'met' if ok else 'MISSED'} (worst p95 {worst:.1f} ms)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 3 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
