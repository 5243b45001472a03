"""Decision benchmark: simulated edges badging against the running hub over Mosquitto.

Usage (from the repository root)::

    .venv/bin/python bench/decisions.py [--edges 200] [--rate 1.0] [--tele 2000]
        [--duration 20] [--saturate-seconds 10] [--runs 1] [--json out.json]

What it does, all on 127.0.0.1 and all cleaned up on exit (also on Ctrl-C):

1. starts a private Mosquitto (TCP_NODELAY, no persistence, large queues) on a free port;
2. creates a temporary SQLite database, migrates it and seeds it with the ORM: one zone
   open all day (an ``opening`` exception for today and its neighbours), one machine per
   edge (``m-000`` on ``e-000``…), members of every age group (minors with consent);
3. starts the hub as its own OS process (``fabrique hub run --config`` or, before the
   CLI exists, ``bench/_hub_proc.py``) and waits for its retained ``hub/status`` online;
4. starts K load-generator processes, each owning edges/K MQTT connections (one per
   edge), which announce themselves (retained status and machine state) and send one
   validated priming request each;
5. **steady phase**: every edge badges about ``--rate`` times a second (jittered, a
   share of unknown badges so denials are measured too) while ``--tele`` telemetry
   messages/s flow; round trip = publish of the request to receipt of the matching
   decision on the edge's own ``cmd/access``;
6. **saturated phase**: ``--sat-conns`` edges keep ``--sat-window`` requests in flight
   each for ``--saturate-seconds``;
7. reports p50/p90/p99/max round trip, decisions/s, grants/denies/timeouts, the hub's
   CPU (% of one core) and RSS, the broker's and the load generator's CPU, per run and
   as medians over ``--runs`` runs; optionally as JSON.

Goals (2-core machine, 200 edges at 1/s + 2,000 telemetry msg/s): p99 ≤ 5 ms;
saturated ≥ 3,000 decisions/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loadgen import PHASE_MARGIN_S, TIMEOUT_S, worker_main
from _setup import (
    SITE,
    Population,
    Proc,
    hub_config,
    seed_database,
    start_hub,
    start_mosquitto,
    wait_hub_online,
)

from hub.settings import DEMO_SITE_SECRET

GOAL_P99_MS = 5.0
GOAL_SATURATED_PER_S = 3000.0
#: Longest the orchestrator waits for a worker to connect its edges.
READY_TIMEOUT_S = 60.0
#: CPU (% of one core) used outside the benchmark above which figures are flagged.
NOISY_OTHERS_PCT = 20.0
#: py-spy samples per second (--profile).
PROFILE_RATE = 250


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults are the issue's target scenario)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--edges", type=int, default=200, help="simulated edges (MQTT connections)")
    p.add_argument("--rate", type=float, default=1.0, help="badge requests per edge per second")
    p.add_argument("--tele", type=float, default=2000.0, help="telemetry messages/s in total")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds, steady phase")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    p.add_argument("--saturate-seconds", type=float, default=10.0, help="0 skips the phase")
    p.add_argument("--sat-conns", type=int, default=4, help="connections in the saturated phase")
    p.add_argument("--sat-window", type=int, default=32, help="requests in flight per connection")
    p.add_argument("--sat-tele", type=float, default=0.0, help="telemetry msg/s while saturating")
    p.add_argument(
        "--journal",
        type=float,
        default=None,
        metavar="HOLD_S",
        help="journal every grant like a real edge: session_started at once, session_ended "
        "HOLD_S seconds later (keep it below 1/rate). Off by default: each edge then "
        "re-badges its own regular member, so the hub's pending reservation of a granted "
        "machine does not turn later grants into machine_busy",
    )
    p.add_argument("--runs", type=int, default=1, help="repeat both phases; medians are reported")
    p.add_argument("--workers", type=int, default=2, help="load-generator processes")
    p.add_argument("--members", type=int, default=600, help="members (one badge each)")
    p.add_argument("--unknown-share", type=float, default=0.1, help="share of unknown badges")
    p.add_argument(
        "--broker-inflight",
        type=int,
        default=20,
        help="Mosquitto max_inflight_messages (20 is its default; 0 = unlimited)",
    )
    p.add_argument("--launcher", choices=("auto", "cli", "module"), default="auto")
    p.add_argument(
        "--hub-cmd",
        help="start the hub with this command instead ({config} = path of its TOML file)",
    )
    p.add_argument(
        "--hub-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra hub setting written to its TOML (repeatable)",
    )
    p.add_argument(
        "--wait-other",
        type=float,
        default=300.0,
        metavar="S",
        help="first wait up to S seconds for another running benchmark to finish",
    )
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    p.add_argument("--profile", type=Path, help="record the hub with py-spy into this directory")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, DB)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a goal is missed")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.edges < 1 or args.workers < 1 or args.runs < 1 or args.rate <= 0:
        p.error("--edges, --workers, --runs and --rate must be positive")
    if args.duration <= 0 or args.warmup < 0 or args.saturate_seconds < 0:
        p.error("--duration must be positive, --warmup and --saturate-seconds not negative")
    if args.journal is not None and not 0.0 <= args.journal < 1.0 / args.rate:
        p.error("--journal HOLD_S must be in [0, 1/rate)")
    if not 0.0 <= args.unknown_share < 1.0:
        p.error("--unknown-share must be in [0, 1)")
    args.workers = min(args.workers, args.edges)
    args.sat_conns = max(1, min(args.sat_conns, args.edges))
    return args


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100.0 * len(sorted_values) + 0.4999)))
    return sorted_values[rank - 1]


@dataclass
class CpuProbe:
    """CPU seconds and RSS of a set of processes, sampled by pid (children included)."""

    name: str
    pids: list[int]
    rss_peak: int = 0

    def _procs(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self.pids:
            try:
                p = psutil.Process(pid)
                out.append(p)
                out.extend(p.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def rss(self) -> int:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        self.rss_peak = max(self.rss_peak, total)
        return total


def machine_busy_seconds() -> float:
    """CPU seconds the machine's processes (and other VMs: steal) used so far, all cores.

    Interrupt time is left out: most of it is the loopback traffic of the benchmark
    itself, which the per-process figures cannot see.
    """
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "steal", 0.0))


def other_benchmarks() -> list[int]:
    """Pids of processes of *another* running benchmark (their work dirs differ from ours)."""
    me = os.getpid()
    found: list[int] = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "fabrique-bench-" in cmd and p.info["pid"] != me:
            found.append(p.info["pid"])
    return found


def wait_for_machine(max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until no other benchmark runs; return the wait."""
    t0 = time.monotonic()
    announced = False
    while (others := other_benchmarks()) and time.monotonic() - t0 < max_wait_s:
        if not announced:
            print(
                f"another benchmark is running (pids {others[:4]}…): waiting up to "
                f"{max_wait_s:.0f} s for it to finish (--wait-other 0 to skip)",
                flush=True,
            )
            announced = True
        time.sleep(2.0)
    return time.monotonic() - t0


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the workers' counters and pool their samples."""
    out: dict[str, Any] = {"rtts_ms": [], "codes": {}}
    for r in results:
        for k, v in r.items():
            if k in ("rtts_ms", "lags_ms"):
                out.setdefault(k, []).extend(v)
            elif k == "codes":
                for code, n in v.items():
                    out["codes"][code] = out["codes"].get(code, 0) + n
            elif isinstance(v, int | float) and k not in ("worker", "phase_s"):
                out[k] = out.get(k, 0) + v
    return out


def summarise(
    merged: dict[str, Any], seconds: float, cpu: dict[str, float], rss: dict[str, float]
) -> dict[str, Any]:
    """The reported figures of one phase of one run."""
    rtts = sorted(merged.pop("rtts_ms"))
    lags = sorted(merged.pop("lags_ms", []))
    s: dict[str, Any] = {
        "decisions": merged.get("answered_measured", 0),
        "decisions_per_s": merged.get("answered_measured", 0) / seconds,
        "p50_ms": percentile(rtts, 50),
        "p90_ms": percentile(rtts, 90),
        "p99_ms": percentile(rtts, 99),
        "max_ms": rtts[-1] if rtts else 0.0,
        "mean_ms": statistics.fmean(rtts) if rtts else 0.0,
        "gen_lag_p99_ms": percentile(lags, 99),
        "granted": merged.get("granted", 0),
        "denied": merged.get("denied", 0),
        "timeouts": merged.get("timeouts", 0),
        "timeouts_total": merged.get("timeouts_total", 0),
        "late": merged.get("late", 0),
        "misrouted": merged.get("misrouted", 0),
        "invalid": merged.get("invalid", 0),
        "unexpected": merged.get("unexpected", 0),
        "sent": merged.get("sent", 0),
        "tele_sent": merged.get("tele_sent", 0),
        "tele_behind": merged.get("tele_behind", 0),
        "journal_sent": merged.get("journal_sent", 0),
        "codes": merged.get("codes", {}),
        "seconds": seconds,
    }
    for name, v in cpu.items():
        s[f"{name}_cpu_pct"] = v
    # Hub CPU time per answered decision: a figure that survives a noisy machine better
    # than latency does (1e6 / it = decisions/s the hub could do with one core to itself).
    s["hub_cpu_us_per_decision"] = (
        cpu.get("hub", 0.0) / 100.0 * 1e6 / s["decisions_per_s"] if s["decisions_per_s"] else 0.0
    )
    for name, v in rss.items():
        s[f"{name}_rss_mb"] = v
    return s


# --------------------------------------------------------------------------- orchestration


class Bench:
    """Owns every process of one benchmark invocation; ``close()`` stops them all."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.stack = ExitStack()
        self.broker: Proc | None = None
        self.hub: Proc | None = None
        self.port = 0
        self.workers: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.population: Population | None = None
        self.sat_map: dict[int, list[int]] = {}

    # -- setup

    def setup(self) -> dict[str, Any]:
        """Broker, database, hub, workers; returns facts for the report."""
        a = self.args
        t = time.monotonic()
        self.broker, self.port = start_mosquitto(self.workdir, inflight=a.broker_inflight)
        self.stack.callback(self.broker.stop)
        db_url = f"sqlite:///{self.workdir / 'hub.db'}"
        self.population = seed_database(
            db_url, edges=a.edges, members=a.members, site_secret=DEMO_SITE_SECRET.encode()
        )
        # This measures the hub's capacity, not one real edge: its saturated phase puts
        # hundreds of requests a second through a few edges, far above the per-edge
        # flood limits (hub.throttle), which bench/flood.py measures with their defaults.
        extra = {
            "throttle_requests_per_s": "1000000.0",
            "throttle_requests_burst": "1000000.0",
            "throttle_telemetry_per_s": "1000000.0",
            "throttle_telemetry_burst": "1000000.0",
            "throttle_events_per_s": "1000000.0",
            "throttle_events_burst": "1000000.0",
            # Nor the reader cool-down after many unknown badges (10 % of the requests
            # here are unknown badges by design): it would refuse whole machines.
            "enumeration_limit": "1000000000",
        }
        extra.update(kv.split("=", 1) for kv in a.hub_setting)
        config = hub_config(self.workdir, db_url=db_url, mqtt_port=self.port, extra=extra)
        self.hub = start_hub(self.workdir, config, a.launcher, command=a.hub_cmd)
        self.stack.callback(self.hub.stop)
        hub_ready_s = wait_hub_online(self.port, self.hub)
        self._start_workers()
        return {
            "broker_port": self.port,
            "broker_pid": self.broker.pid,
            "loadgen_pids": [p.pid for p, _ in self.workers],
            "hub_pid": self.hub.pid,
            "hub_command": self.hub.name,
            "hub_ready_s": hub_ready_s,
            "setup_s": time.monotonic() - t,
            "workdir": str(self.workdir),
        }

    def _start_workers(self) -> None:
        a = self.args
        pop = self.population
        assert pop is not None
        ctx = mp.get_context("spawn")
        k = a.workers
        chunks = [list(range(w, a.edges, k)) for w in range(k)]  # edge i -> worker i % k
        # Saturating connection j is edge j: worker j % k, local index j // k.
        self.sat_map = {w: [j // k for j in range(a.sat_conns) if j % k == w] for w in range(k)}
        for w, idxs in enumerate(chunks):
            cfg = {
                "site": SITE,
                "port": self.port,
                "edges": [pop.edges[i] for i in idxs],
                "machines": [pop.machines[i] for i in idxs],
                "known_badges": list(pop.known_badges),
                "owner_badges": [pop.known_badges[i % len(pop.known_badges)] for i in idxs],
                "unknown_share": a.unknown_share,
                "window": a.sat_window,
                "seed": a.seed,
            }
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(child, w, cfg), name=f"loadgen-{w}", daemon=True
            )
            proc.start()
            child.close()
            self.workers.append((proc, parent))
        self.stack.callback(self._stop_workers)
        for worker, conn in self.workers:
            kind, info = self._recv(conn, READY_TIMEOUT_S, worker)
            if kind != "ready":
                raise RuntimeError(f"load generator {worker.name} failed: {info}")

    def _recv(self, conn: Connection, timeout: float, proc: mp.process.BaseProcess) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.poll(0.1):
                msg = conn.recv()
                if msg[0] == "error":
                    raise RuntimeError(f"load generator {proc.name} failed:\n{msg[1]}")
                return msg
            if not proc.is_alive():
                raise RuntimeError(f"load generator {proc.name} died (exit {proc.exitcode})")
            self._check_hub()
        raise TimeoutError(f"load generator {proc.name} did not answer in {timeout:.0f}s")

    def _stop_workers(self) -> None:
        for _proc, conn in self.workers:
            with suppress(OSError, ValueError):
                conn.send(("stop", {}))
        for proc, conn in self.workers:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join(3)
            conn.close()

    def _check_hub(self) -> None:
        if self.hub is not None and not self.hub.alive():
            raise RuntimeError(f"the hub exited during the benchmark:\n{self.hub.log_tail()}")

    def close(self) -> None:
        self.stack.close()

    # -- phases

    def prime(self) -> dict[str, Any]:
        """One fully validated request per edge: warms the hub and checks the setup."""
        for _, conn in self.workers:
            conn.send(("prime", {"timeout": 15.0, "journal": self.args.journal}))
        results = [self._recv(c, 30.0, p)[1] for p, c in self.workers]
        merged = merge(results)
        merged.pop("rtts_ms")
        merged.pop("lags_ms", None)
        return merged

    def settle(self, limit_s: float = 30.0, idle_pct: float = 15.0) -> float:
        """Wait (at most ``limit_s``) until the hub's CPU stays under ``idle_pct`` for
        a second: start-up work (statuses, snapshots) must not leak into the figures."""
        assert self.hub is not None
        probe = CpuProbe("hub", [self.hub.pid])
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            c0, w0 = probe.cpu_seconds(), time.monotonic()
            time.sleep(1.0)
            self._check_hub()
            busy = 100.0 * (probe.cpu_seconds() - c0) / (time.monotonic() - w0)
            if busy < idle_pct:
                break
        return time.monotonic() - t0

    def phase(self, name: str, run: int) -> dict[str, Any]:
        """Run the ``steady`` or ``saturate`` phase once and return its figures."""
        a = self.args
        assert self.hub is not None
        assert self.broker is not None
        steady = name == "steady"
        duration = a.duration if steady else a.saturate_seconds
        settled = self.settle()
        t0 = time.monotonic() + 0.3
        measure_from = t0 + a.warmup
        send_until = measure_from + duration
        for w, (_, conn) in enumerate(self.workers):
            params: dict[str, Any] = {"t0": t0, "warmup": a.warmup, "duration": duration}
            if steady:
                params.update(
                    rate=a.rate,
                    tele=a.tele / len(self.workers),
                    journal=a.journal,
                )
            else:
                params.update(conns=self.sat_map.get(w, []), window=a.sat_window)
            conn.send((name, params))
        probes = {
            "hub": CpuProbe("hub", [self.hub.pid]),
            "broker": CpuProbe("broker", [self.broker.pid]),
            "loadgen": CpuProbe("loadgen", [p.pid for p, _ in self.workers if p.pid]),
        }
        self._sleep_until(measure_from, probes)
        spy = self._start_profile(name, duration) if a.profile is not None and run == 0 else None
        try:
            c0 = {k: p.cpu_seconds() for k, p in probes.items()}
            m0 = machine_busy_seconds()
            w0 = time.monotonic()
            self._sleep_until(send_until, probes)
            c1 = {k: p.cpu_seconds() for k, p in probes.items()}
            m1 = machine_busy_seconds()
            wall = time.monotonic() - w0
            rss_end = probes["hub"].rss()
            results = [
                self._recv(c, send_until - time.monotonic() + PHASE_MARGIN_S + 10, p)[1]
                for p, c in self.workers
            ]
            if spy is not None:
                spy.wait(duration + 15)
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
                spy.wait(5)
        cpu = {k: 100.0 * (c1[k] - c0[k]) / wall for k in probes}
        cpu["machine"] = 100.0 * (m1 - m0) / wall
        cpu["others"] = max(0.0, cpu["machine"] - sum(cpu[k] for k in probes))
        rss = {
            "hub": rss_end / 2**20,
            "hub_peak": probes["hub"].rss_peak / 2**20,
            "broker": probes["broker"].rss_peak / 2**20,
        }
        figures = summarise(merge(results), duration, cpu, rss)
        figures["settle_s"] = settled
        return figures

    def _start_profile(self, name: str, seconds: float) -> subprocess.Popen[bytes]:
        """py-spy on the hub for the measured part of a phase (``--profile``)."""
        from _profile import start_record

        assert self.hub is not None
        assert self.args.profile is not None
        self.args.profile.mkdir(parents=True, exist_ok=True)
        out = self.args.profile / f"hub-{name}.txt"
        return start_record(self.hub.pid, out, seconds, rate=PROFILE_RATE)

    def _sleep_until(self, t: float, probes: dict[str, CpuProbe]) -> None:
        """Sleep until monotonic ``t``, sampling RSS and watching the hub (bounded)."""
        while (left := t - time.monotonic()) > 0:
            self._check_hub()
            for p in probes.values():
                p.rss()
            time.sleep(min(0.25, left))


# --------------------------------------------------------------------------- report


def fmt_phase(s: dict[str, Any]) -> str:
    """One table row of a phase."""
    return (
        f"{s['decisions']:>8d} {s['decisions_per_s']:>9.0f} "
        f"{s['p50_ms']:>7.2f} {s['p90_ms']:>7.2f} {s['p99_ms']:>7.2f} {s['max_ms']:>8.2f} "
        f"{s['granted']:>7d} {s['denied']:>6d} {s['timeouts']:>5d} "
        f"{s['hub_cpu_pct']:>6.0f} {s['hub_peak_rss_mb']:>6.0f} "
        f"{s['broker_cpu_pct']:>6.0f} {s['loadgen_cpu_pct']:>6.0f} {s['others_cpu_pct']:>6.0f}"
    )


HEADER = (
    f"{'':<10} {'decisions':>8} {'per s':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
    f"{'max ms':>8} {'grants':>7} {'denies':>6} {'t/o':>5} "
    f"{'hub%':>6} {'hubMB':>6} {'mqtt%':>6} {'gen%':>6} {'other%':>6}"
)

NUMERIC = (
    "decisions",
    "decisions_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "gen_lag_p99_ms",
    "granted",
    "denied",
    "timeouts",
    "timeouts_total",
    "late",
    "misrouted",
    "invalid",
    "unexpected",
    "tele_sent",
    "tele_behind",
    "journal_sent",
    "hub_cpu_pct",
    "hub_rss_mb",
    "hub_peak_rss_mb",
    "broker_cpu_pct",
    "broker_rss_mb",
    "loadgen_cpu_pct",
    "machine_cpu_pct",
    "others_cpu_pct",
    "hub_cpu_us_per_decision",
)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure medians over runs (counts stay numbers; codes are summed)."""
    out: dict[str, Any] = {}
    for key in NUMERIC:
        values = [r[key] for r in runs if key in r]
        if values:
            m = statistics.median(values)
            out[key] = int(m) if all(isinstance(v, int) for v in values) else m
    codes: dict[str, int] = {}
    for r in runs:
        for c, n in r.get("codes", {}).items():
            codes[c] = codes.get(c, 0) + n
    out["codes"] = codes
    return out


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    a = report["config"]
    journal = "off" if a["journal"] is None else f"on, hold {a['journal']:g} s"
    lines = [
        "",
        f"fabrique decision benchmark — {report['environment']['cpus']} CPUs, "
        f"hub via {report['setup']['hub_command']} (pid {report['setup']['hub_pid']}), "
        f"broker max_inflight {a['broker_inflight']}",
        f"steady: {a['edges']} edges × {a['rate']:g}/s, telemetry {a['tele']:g} msg/s, "
        f"journal {journal}, "
        f"{a['duration']:g} s measured after {a['warmup']:g} s warm-up; "
        f"saturated: {a['sat_conns']} conns × window {a['sat_window']}, "
        f"{a['saturate_seconds']:g} s; runs: {a['runs']}",
    ]
    pr = report["prime"]
    lines.append(
        f"priming: {pr.get('granted', 0)} granted, {pr.get('denied', 0)} denied, "
        f"{pr.get('timeouts', 0)} unanswered, {pr.get('invalid', 0)} invalid; codes {pr['codes']}"
    )
    lines += ["", HEADER]
    for i, run in enumerate(report["runs"]):
        lines.append(f"{'steady ' + str(i + 1):<10} " + fmt_phase(run["steady"]))
        if "saturate" in run:
            lines.append(f"{'satur. ' + str(i + 1):<10} " + fmt_phase(run["saturate"]))
    med = report["median"]
    if len(report["runs"]) > 1:
        lines.append(f"{'steady med':<10} " + fmt_phase(med["steady"]))
        if "saturate" in med:
            lines.append(f"{'satur. med':<10} " + fmt_phase(med["saturate"]))
    st = med["steady"]
    lines += [
        "",
        f"steady: telemetry sent {st['tele_sent']} ({st['tele_sent'] / max(1e-9, a['duration'] + a['warmup']):.0f}/s"  # noqa: E501
        f", {st['tele_behind']} behind), journal events sent {st['journal_sent']}, "
        f"codes {st['codes']}",
        f"        late {st['late']}, misrouted {st['misrouted']}, invalid {st['invalid']}, "
        f"unexpected outcome {st['unexpected']}, timeouts incl. warm-up {st['timeouts_total']}",
        f"        mean RTT {st['mean_ms']:.2f} ms; generator send lag p99 "
        f"{st['gen_lag_p99_ms']:.2f} ms (how late the generator itself was)",
        f"        hub RSS {st['hub_rss_mb']:.0f} MB at end (peak {st['hub_peak_rss_mb']:.0f} MB)"
        f", broker RSS {st['broker_rss_mb']:.0f} MB",
        f"        machine CPU {st['machine_cpu_pct']:.0f}% of {100 * (os.cpu_count() or 1)}%, "
        f"of which {st['others_cpu_pct']:.0f}% by processes outside the benchmark",
    ]
    if "saturate" in med:
        sa = med["saturate"]
        per = sa["hub_cpu_us_per_decision"]
        lines += [
            f"saturated: codes {sa['codes']}, timeouts incl. warm-up {sa['timeouts_total']}",
            f"        hub CPU per decision {per:.0f} µs "
            f"(≈ {1e6 / per if per else 0:.0f} decisions/s if the hub had a core to itself); "
            f"machine CPU {sa['machine_cpu_pct']:.0f}%, outside the benchmark "
            f"{sa['others_cpu_pct']:.0f}%",
        ]
    noisy = max(med["steady"]["others_cpu_pct"], med.get("saturate", {}).get("others_cpu_pct", 0.0))
    if noisy > NOISY_OTHERS_PCT:
        lines.append(
            f"\nWARNING: other processes used up to {noisy:.0f}% CPU during the measurement: "
            "latency and throughput are not representative; run again on a quiet machine."
        )
    lines.append("")
    for goal in report["goals"]:
        lines.append(
            f"goal {goal['name']}: {goal['value']:.2f} {goal['unit']} "
            f"(target {goal['op']} {goal['target']:g}) -> {'PASS' if goal['ok'] else 'MISS'}"
        )
    lines.append(
        "columns: hub% = hub CPU (% of one core), hubMB = hub peak RSS, mqtt% = broker CPU, "
        "gen% = load generator CPU, other% = CPU of everything else on the machine; "
        "t/o = timeouts (no answer in 2 s)"
    )
    return "\n".join(lines)


def goals(median: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, evaluated on the medians."""
    out = [
        {
            "name": "steady p99",
            "value": median["steady"]["p99_ms"],
            "unit": "ms",
            "op": "<=",
            "target": GOAL_P99_MS,
            "ok": median["steady"]["p99_ms"] <= GOAL_P99_MS,
        },
        {
            "name": "steady timeouts",
            "value": float(median["steady"]["timeouts"]),
            "unit": "",
            "op": "==",
            "target": 0,
            "ok": median["steady"]["timeouts"] == 0,
        },
    ]
    if "saturate" in median:
        out.append(
            {
                "name": "saturated throughput",
                "value": median["saturate"]["decisions_per_s"],
                "unit": "decisions/s",
                "op": ">=",
                "target": GOAL_SATURATED_PER_S,
                "ok": median["saturate"]["decisions_per_s"] >= GOAL_SATURATED_PER_S,
            }
        )
    return out


def profile_report(directory: Path, seconds: dict[str, float], rate: int) -> str:
    """Hot spots of the recorded profiles (inclusive and self %, GIL share per thread)."""
    from _profile import per_thread, top_self
    from _profile import summarise as summarise_profile

    lines: list[str] = []
    for name in ("steady", "saturate"):
        raw = directory / f"hub-{name}.txt"
        total, rows = summarise_profile(raw)
        if not total:
            continue
        possible = max(1.0, seconds.get(name, 0.0) * rate)
        lines += [
            "",
            f"hub profile, {name} phase (py-spy --gil, {total} samples = GIL held "
            f"{100.0 * total / possible:.0f}% of the time)",
            "  GIL share by thread: "
            + ", ".join(f"{t} {100.0 * n / total:.0f}%" for t, n in per_thread(raw)),
            "  inclusive% self%  function",
        ]
        lines += [f"  {inc:5.1f} {own:5.1f}  {fn}" for fn, inc, own in rows]
        lines.append("  top self time:")
        lines += [f"  {own:5.1f}  {fn}" for fn, own in top_self(raw)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success (1 on error, 3 with ``--strict`` on a missed goal)."""
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both unwind through the clean-up below (SIGINT is explicitly
    # re-armed: a shell starting us in the background may have set it to "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    waited = wait_for_machine(args.wait_other) if args.wait_other > 0 else 0.0
    workdir = Path(tempfile.mkdtemp(prefix="fabrique-bench-"))
    bench = Bench(args, workdir)
    try:
        setup = bench.setup()
        setup["waited_for_other_s"] = waited
        print(
            f"hub pid {setup['hub_pid']} online after {setup['hub_ready_s']:.1f} s; "
            f"{args.edges} edges connected; work dir {workdir}",
            flush=True,
        )
        prime = bench.prime()
        if prime.get("timeouts") or prime.get("invalid") or not prime.get("granted"):
            print(f"warning: priming looks wrong: {prime}", file=sys.stderr, flush=True)
        runs: list[dict[str, Any]] = []
        for run in range(args.runs):
            result = {"steady": bench.phase("steady", run)}
            print(f"run {run + 1}: steady  " + fmt_phase(result["steady"]), flush=True)
            if args.saturate_seconds > 0:
                result["saturate"] = bench.phase("saturate", run)
                print(f"run {run + 1}: satur.  " + fmt_phase(result["saturate"]), flush=True)
            runs.append(result)
        median = {"steady": median_of([r["steady"] for r in runs])}
        if args.saturate_seconds > 0:
            median["saturate"] = median_of([r["saturate"] for r in runs])
        report: dict[str, Any] = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "environment": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "machine": platform.machine(),
                "timeout_s": TIMEOUT_S,
            },
            "setup": setup,
            "prime": prime,
            "runs": runs,
            "median": median,
            "goals": goals(median),
        }
        print(render(report), flush=True)
        if args.profile is not None:
            seconds = {"steady": args.duration, "saturate": args.saturate_seconds}
            print(profile_report(args.profile, seconds, PROFILE_RATE), flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, sort_keys=True))
        missed = not all(g["ok"] for g in report["goals"])
        return 3 if args.strict and missed else 0
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        if bench.hub is not None:
            print(f"--- hub log tail ---\n{bench.hub.log_tail()}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # do not interrupt the clean-up
        try:
            bench.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
