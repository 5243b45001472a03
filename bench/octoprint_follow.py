"""OctoPrint follower benchmark: event latency, and what following N printers costs.

Usage (from the repository root)::

    .venv/bin/python bench/octoprint_follow.py [--printers 20] [--instances 2]
        [--throttle 1] [--window 30] [--prints 5] [--shared-http] [--skip-latency]
        [--json out.json]

What it does, all on 127.0.0.1 and cleaned up on exit (also on Ctrl-C):

1. installs OctoPrint 1.11 into its cached venv if needed (as the tests do) and starts
   ``--instances`` real OctoPrint servers with the Virtual Printer;
2. **latency**: one follower (throttle 1) on instance 0 runs ``--prints`` short prints
   (G4 dwells) with a pause/resume in each, and measures, on this machine's monotonic
   clock, from issuing the REST command to (a) the matching :class:`JobEvent` and
   (b) the first snapshot showing the new state; and the push delivery delay of
   ``current`` messages (OctoPrint's ``serverTime`` → receipt, same machine clock);
3. **cost**: ``--printers`` followers spread over the instances (each its own push
   socket, passive login and REST safety poll, exactly as one edge per printer would),
   while every instance prints; over ``--window`` seconds it measures this process's
   CPU (% of one core) and RSS growth per follower, and the message rate.

Goals (issue "machines"): OctoPrint event → hub state ≤ 1 s (the driver's share is
what is measured here); an edge follows ≥ 20 printers at ≤ 10 % of one core.

Several followers on one OctoPrint cost the edge what as many OctoPrints would: each
has its own socket and message stream (same 2 Hz ``current`` rate, same sizes), so a
few instances stand in for twenty printers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.octoprint import (
    JobEvent,
    JobEventKind,
    OctoPrintClient,
    OctoPrintFollower,
    PrinterSnapshot,
)
from devices.octoprint import push as push_module
from tests.conftest import free_port
from tests.devices.octoprint.conftest import (
    OctoPrintServer,
    dwell_gcode,
    ensure_octoprint,
    octoprint_venv_dir,
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p90_ms": round(pct(values, 0.9) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


async def until_snapshot(
    follower: OctoPrintFollower, predicate: Callable[[PrinterSnapshot], bool]
) -> float:
    await follower.wait_for(predicate, 30)
    return time.monotonic()


async def until_event(events: Any, kind: JobEventKind) -> JobEvent:
    event: JobEvent = await events.wait_for(lambda e: e.kind is kind, 30)
    return event


async def measure_latency(server: OctoPrintServer, prints: int) -> dict[str, Any]:
    """Command → JobEvent and command → snapshot, for start, pause, resume and done."""
    lat: dict[str, list[float]] = {
        f"{what}_{via}": []
        for what in ("start", "pause", "resume")
        for via in ("event", "snapshot")
    }
    lat["done_event_to_snapshot"] = []
    push_delay: list[float] = []
    original = push_module._decode

    def tap(raw: str | bytes) -> dict[str, Any]:
        message = original(raw)
        current = message.get("current")
        if isinstance(current, dict) and isinstance(current.get("serverTime"), float):
            push_delay.append(max(0.0, time.time() - current["serverTime"]))
        return message

    push_module._decode = tap  # type: ignore[assignment]
    client = OctoPrintClient(server.url, server.api_key)
    try:
        async with OctoPrintFollower(client) as follower, follower.subscribe() as events:
            await follower.wait_for(lambda s: s.connected and s.flags.ready, 30)
            for i in range(prints):
                t0 = time.monotonic()
                await client.upload(f"lat{i}.gcode", dwell_gcode(2.0, heat=False), print_=True)
                ev = await until_event(events, JobEventKind.PRINT_STARTED)
                lat["start_event"].append(ev.monotonic_s - t0)
                lat["start_snapshot"].append(
                    await until_snapshot(follower, lambda s: s.flags.printing) - t0
                )
                for command, kind, predicate in (
                    (client.pause, JobEventKind.PRINT_PAUSED, lambda s: s.flags.paused),
                    (
                        client.resume,
                        JobEventKind.PRINT_RESUMED,
                        lambda s: s.flags.printing and not s.flags.paused,
                    ),
                ):
                    t0 = time.monotonic()
                    await command()
                    name = "pause" if kind is JobEventKind.PRINT_PAUSED else "resume"
                    ev = await until_event(events, kind)
                    lat[f"{name}_event"].append(ev.monotonic_s - t0)
                    lat[f"{name}_snapshot"].append(await until_snapshot(follower, predicate) - t0)
                done = await until_event(events, JobEventKind.PRINT_DONE)
                seen = await until_snapshot(follower, lambda s: not s.job_active)
                lat["done_event_to_snapshot"].append(max(0.0, seen - done.monotonic_s))
                await follower.wait_for(lambda s: s.flags.ready, 30)
    finally:
        push_module._decode = original  # type: ignore[assignment]
    result = {k: summary(v) for k, v in lat.items()}
    # measured from *issuing* the REST command, so each includes its round trip
    result["push_current_delivery"] = summary(push_delay)
    return result


async def measure_cost(
    servers: list[OctoPrintServer],
    printers: int,
    throttle: int,
    window: float,
    shared_http: bool,
) -> dict[str, Any]:
    """CPU and memory of this process while following ``printers`` printers."""
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient()) if shared_http else None
        followers = [
            OctoPrintFollower(
                OctoPrintClient(
                    servers[i % len(servers)].url, servers[i % len(servers)].api_key, http=http
                ),
                throttle=throttle,
            )
            for i in range(printers)
        ]
        for follower in followers:
            await stack.enter_async_context(follower)
        deadline = time.monotonic() + 60
        while not all(f.link_up for f in followers):
            if time.monotonic() > deadline:
                raise RuntimeError("not every follower came up in 60 s")
            await asyncio.sleep(0.1)
        for n, server in enumerate(servers):  # every instance prints during the window
            async with OctoPrintClient(server.url, server.api_key) as client:
                await client.upload(f"cost{n}.gcode", dwell_gcode(window + 30), print_=True)
        await asyncio.sleep(2)  # let the first history/current bursts pass
        gc.collect()
        messages0 = sum(f.messages for f in followers)
        cpu0, wall0 = proc.cpu_times(), time.monotonic()
        await asyncio.sleep(window)
        cpu1, wall1 = proc.cpu_times(), time.monotonic()
        messages1 = sum(f.messages for f in followers)
        rss1 = proc.memory_info().rss
        active = sum(f.job_active for f in followers)
        for server in servers:
            async with OctoPrintClient(server.url, server.api_key) as client:
                await client.cancel()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    elapsed = wall1 - wall0
    return {
        "printers": printers,
        "instances": len(servers),
        "shared_http_client": shared_http,
        "throttle": throttle,
        "window_s": round(elapsed, 1),
        "followers_seeing_a_job": active,
        "cpu_pct_of_one_core": round(100 * cpu_s / elapsed, 2),
        "cpu_pct_per_printer": round(100 * cpu_s / elapsed / printers, 3),
        "messages_per_s": round((messages1 - messages0) / elapsed, 1),
        "rss_growth_mib": round((rss1 - rss0) / 2**20, 1),
        "rss_per_printer_kib": round((rss1 - rss0) / printers / 1024, 1),
        "rss_total_mib": round(rss1 / 2**20, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--printers", type=int, default=20)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--throttle", type=int, default=1)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--prints", type=int, default=5)
    parser.add_argument(
        "--shared-http", action="store_true", help="one httpx client for all followers"
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    started = time.monotonic()
    exe = ensure_octoprint(octoprint_venv_dir())
    install_s = time.monotonic() - started
    servers: list[OctoPrintServer] = []
    base = Path(tempfile.mkdtemp(prefix="octo-bench-"))
    try:
        for i in range(args.instances):
            server = OctoPrintServer(exe, base / f"octo{i}", free_port())
            server.prepare()
            server.start()
            servers.append(server)
        octoprint_rss = [
            psutil.Process(s.process.pid).memory_info().rss for s in servers if s.process
        ]
        report: dict[str, Any] = {
            "machine": f"{platform.python_version()} on {os.cpu_count()} CPUs",
            "install_check_s": round(install_s, 1),
            "octoprint_start_s": [round(s.timings["last_start_s"], 1) for s in servers],
            "octoprint_rss_mib": [round(r / 2**20) for r in octoprint_rss],
        }
        if not args.skip_latency:
            report["latency"] = await measure_latency(servers[0], args.prints)
            servers[0].make_idle()
        report["cost"] = await measure_cost(
            servers, args.printers, args.throttle, args.window, args.shared_http
        )
    finally:
        for server in servers:
            server.stop()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
