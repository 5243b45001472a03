"""Telemetry benchmark: points/s through the hub's telemetry path, and what it costs
badge decisions.

Usage (from the repository root)::

    .venv/bin/python bench/telemetry_write.py [--points 200000] [--edges 100]
        [--tele 10000] [--duration 15] [--skip-decisions]

1. **throughput**: a real VictoriaMetrics (InfluxDB v2 write API) on a free port; the
   hub's :class:`hub.telemetry.feed.TelemetryFeed` is fed raw printer telemetry
   payloads and access facts as fast as the hub's threads would hand them over, and
   writes them through :class:`hub.telemetry.writer.InfluxWriter` (the real
   ``influxdb-client``); the figure is points confirmed written per second.
2. **decision cost**: ``bench/decisions.py`` twice with printers as machines and
   ``--tele`` printer telemetry messages/s, once with telemetry off, once with the
   hub writing to VictoriaMetrics (each message a point, each decision a point);
   compares the decisions' p99 round trip (goal: not more than 10 % higher).

Goal: ≥ 10,000 points/s, decision p99 +10 % at most.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_vm(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"-storageDataPath={tmp}", f"-httpListenAddr=127.0.0.1:{port}",
         "-retentionPeriod=100y", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()  # noqa: S310 - loopback
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("victoria-metrics did not start")


def throughput(url: str, n: int) -> dict[str, float]:
    from hub.live import LiveState
    from hub.metrics import Metrics
    from hub.policy.model import Directory, MachineView, OfflineRule
    from hub.telemetry.feed import TelemetryFeed
    from hub.telemetry.writer import InfluxTarget, InfluxWriter

    machines = {
        f"m-{i:03d}": MachineView(
            id=f"m-{i:03d}", name="", kind="printer", zone_id="z", edge_id=f"e-{i:03d}",
            min_age=None, offline_rule=OfflineRule.ALLOW, maintenance=False,
            required_trainings=frozenset(),
        )
        for i in range(100)
    }  # fmt: skip
    directory = Directory(
        members={}, badges={}, machines=machines, zones={}, slots=(), exceptions=(), quotas={}
    )
    metrics = Metrics()
    writer = InfluxWriter(InfluxTarget(url, "", "bench", "bench"), capacity=n, metrics=metrics)
    feed = TelemetryFeed(
        "bench", writer, cast(Any, None), LiveState(), lambda: directory,
        tz=datetime.now().astimezone().tzinfo, metrics=metrics, capacity=n, minute_s=3600.0,
    )  # type: ignore[arg-type]  # fmt: skip
    base = time.time()
    payloads = []
    for i in range(n // 2):
        ts = datetime.fromtimestamp(base - n + i, UTC).isoformat()
        payloads.append(
            json.dumps({"v": 1, "machine": f"m-{i % 100:03d}", "ts": ts, "values": {
                "state": "Printing", "nozzle_c": 200 + i % 10, "bed_c": 60.0,
                "progress": i % 100, "time_left_s": 600}}).encode()
        )  # fmt: skip
    writer.start()
    feed.start()
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        feed.telemetry(f"e-{i % 100:03d}", f"m-{i % 100:03d}", payload)
        feed.access(
            datetime.fromtimestamp(base - n + i, UTC), granted=i % 3 > 0, reason="granted",
            age_group="16-25", zone="z", machine=f"m-{i % 100:03d}",
        )  # fmt: skip
    handed = time.perf_counter() - started
    assert feed.flush(300)
    assert writer.wait_idle(300)
    elapsed = time.perf_counter() - started
    feed.stop()
    writer.stop()
    written = metrics.get("telemetry_lines")
    return {
        "points": written,
        "dropped": metrics.get("telemetry_dropped"),
        "seconds": round(elapsed, 2),
        "points_per_s": round(written / elapsed),
        "hand_over_us_per_fact": round(handed / (2 * len(payloads)) * 1e6, 2),
    }


def decisions(args: argparse.Namespace, url: str | None, out: Path) -> dict[str, Any]:
    env = {**os.environ, "FABRIQUE_BENCH_MACHINE_KIND": "printer"}
    env.pop("FABRIQUE_BENCH_INFLUX_URL", None)
    if url:
        env["FABRIQUE_BENCH_INFLUX_URL"] = url
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "decisions.py"), "--edges", str(args.edges),
         "--tele", str(args.tele), "--duration", str(args.duration), "--saturate-seconds", "0",
         "--json", str(out)],
        env=env, check=True, cwd=ROOT,
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def in_process(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Decision latency inside one hub process, telemetry off and on, alternated.

    The hub is the real :class:`hub.service.Hub` on a seeded SQLite store and a real
    Mosquitto; ``on_access_request`` is timed from the call to its return (decision,
    answer published, log row and telemetry fact queued) at ``--decision-rate``/s, while
    a thread hands ``--tele`` printer telemetry messages/s to ``on_telemetry``.
    """
    import threading

    from _setup import SITE, machine_id, seed_database, start_mosquitto

    from hub.db.engine import make_engine, make_sessionmaker
    from hub.service import Hub
    from hub.settings import HubSettings
    from protocol.messages import AccessRequest

    os.environ["FABRIQUE_BENCH_MACHINE_KIND"] = "printer"
    secret = "bench-site-secret-0123456789abcdef"  # noqa: S105 - demo mode, loopback
    broker, port = start_mosquitto(tmp)
    db_url = f"sqlite:///{tmp / 'inproc.db'}"
    pop = seed_database(db_url, edges=args.edges, members=600, site_secret=secret.encode())
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    results: dict[str, list[float]] = {"off": [], "on": []}
    now = datetime.now(UTC)
    try:
        for mode in ("off", "on", "off", "on"):
            settings = HubSettings(
                demo=True, site=SITE, database_url=db_url, site_secret=secret,
                mqtt_port=port, influx_url=url if mode == "on" else None,
                influx_bucket="bench",
            )  # fmt: skip
            hub = Hub(settings, factory, snapshot_workers=0)
            hub.start()
            hub.mqtt.wait_connected(10)
            stop = threading.Event()

            def telemetry(hub: Hub = hub, stop: threading.Event = stop) -> None:
                i = 0
                period = 1.0 / args.tele
                next_at = time.perf_counter()
                while not stop.is_set():
                    m = i % len(pop.machines)
                    ts = datetime.now(UTC).isoformat()
                    payload = json.dumps({
                        "v": 1, "machine": pop.machines[m], "ts": ts, "values": {
                            "state": "Printing", "nozzle_c": 200 + i % 10, "bed_c": 60.0,
                            "progress": i % 100}}).encode()  # fmt: skip
                    hub.on_telemetry(pop.edges[m], pop.machines[m], payload)
                    i += 1
                    next_at += period
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)

            feeder = threading.Thread(target=telemetry, daemon=True)
            feeder.start()
            samples = []
            period = 1.0 / args.decision_rate
            deadline = time.perf_counter() + args.duration
            i = 0
            while time.perf_counter() < deadline:
                m = i % len(pop.machines)
                req = AccessRequest(
                    req_id=f"r{mode}{i}", edge=pop.edges[m], machine=machine_id(m),
                    badge=pop.known_badges[i % len(pop.known_badges)], ts=now,
                )  # fmt: skip
                t0 = time.perf_counter()
                hub.on_access_request(pop.edges[m], req, t0)
                samples.append(time.perf_counter() - t0)
                i += 1
                time.sleep(max(0.0, period - (time.perf_counter() - t0)))
            stop.set()
            feeder.join(5)
            written = hub.metrics.get("telemetry_lines")
            hub.stop()
            results[mode] += samples
            print(
                f"  in-process {mode}: {len(samples)} decisions, telemetry lines written {written}"
            )
    finally:
        engine.dispose()
        broker.stop()
    return results


def rows_inserted(url: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()  # noqa: S310
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vm_rows_inserted_total") and 'type="influx"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def find_p99(data: Any) -> float | None:
    """The steady phase's p99 (ms) wherever decisions.py put it in its JSON."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "p99_ms" and isinstance(value, int | float):
                return float(value)
        for key in ("steady", "median", "medians", "runs"):
            if key in data:
                found = find_p99(data[key])
                if found is not None:
                    return found
        for value in data.values():
            found = find_p99(value)
            if found is not None:
                return found
    if isinstance(data, list):
        for value in data:
            found = find_p99(value)
            if found is not None:
                return found
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--edges", type=int, default=100)
    p.add_argument("--tele", type=float, default=2_000.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--skip-decisions", action="store_true")
    p.add_argument("--decision-rate", type=float, default=500.0, help="in-process decisions/s")
    p.add_argument("--in-process", action="store_true", help="only the in-process comparison")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fabrique-tele-bench-") as tmp:
        vm, url = start_vm(Path(tmp) / "vm")
        try:
            result = throughput(url, args.points)
            print(
                f"throughput: {result['points']:,} points in {result['seconds']} s = "
                f"{result['points_per_s']:,} points/s written (dropped {result['dropped']}); "
                f"hand-over {result['hand_over_us_per_fact']} µs per fact"
            )
            if args.in_process:
                got = in_process(url, Path(tmp), args)
                p99 = {k: sorted(v)[int(len(v) * 0.99)] * 1000 for k, v in got.items()}
                p50 = {k: sorted(v)[len(v) // 2] * 1000 for k, v in got.items()}
                print(
                    f"in-process decision p50 off {p50['off']:.3f} ms, on {p50['on']:.3f} ms; "
                    f"p99 off {p99['off']:.3f} ms, on {p99['on']:.3f} ms "
                    f"({(p99['on'] / p99['off'] - 1) * 100:+.1f} %), tele {args.tele:g} msg/s"
                )
            elif not args.skip_decisions:
                off = find_p99(decisions(args, None, Path(tmp) / "off.json"))
                before = rows_inserted(url)
                t0 = time.monotonic()
                on = find_p99(decisions(args, url, Path(tmp) / "on.json"))
                rate = (rows_inserted(url) - before) / (time.monotonic() - t0)
                print(
                    f"decisions p99: telemetry off {off} ms, on {on} ms "
                    f"({(on / off - 1) * 100:+.1f} %)"
                    if off and on
                    else f"p99: {off} / {on}"
                )
                print(
                    f"VictoriaMetrics rows inserted during the 'on' run: {rate:,.0f}/s "
                    "(one row per field, over the run including set-up)"
                )
        finally:
            vm.terminate()
            vm.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
