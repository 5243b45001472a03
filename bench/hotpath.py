"""Hot-path benchmark (issue 15): today's hub, this hub and an echo responder, same run.

Usage (from the repository root)::

    .venv/bin/python bench/hotpath.py                         # 3 rounds, the issue's scenario
    .venv/bin/python bench/hotpath.py --rounds 1 --duration 4 --saturate-seconds 3  # quick look
    .venv/bin/python bench/hotpath.py --baseline main --json out.json

Each round runs ``bench/decisions.py`` (one run each: private Mosquitto, seeded SQLite,
200 edges at 1 badge/s, 2,000 telemetry msg/s, then the saturated phase) three times,
interleaved so that a noisy neighbour hits all three alike:

* **today**: the hub of ``--baseline`` (a git revision; by default where this branch
  left ``main``), extracted with ``git archive`` into a temporary directory and started
  from there with this virtualenv (``bench/_hub_proc.py``, no web server; settings it
  does not know yet, such as newer flood limits, are dropped from its configuration);
* **new**: the hub of this checkout (copied at start, so editing during a run changes
  nothing), started the same way;
* **echo**: ``bench/_echo_proc.py``, a trivial responder (reads ``req/access``, answers
  a template refusal on ``cmd/access`` at the contract's QoS): the floor that the
  broker, the generator and one Python MQTT client give.

It prints the medians per variant and the issue's ratios: CPU per decision (saturated,
hub process and its children) new/today (goal ≤ 1/3), steady p99 new/echo (goal ≤ 1.2),
saturated decisions/s new/today (goal ≥ 3), peak RSS new/today (goal ≤ 1).
Extra arguments after ``--`` go to every ``decisions.py`` run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Today's decision path: where this branch left main (9daa0b7 when issue 15 started).
BASELINE = "merge-base"
VARIANTS = ("today", "new", "echo")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    p.add_argument("--baseline", default=BASELINE, help="git revision of today's hub")
    p.add_argument("--variants", default=",".join(VARIANTS), help="subset, comma-separated")
    p.add_argument("--edges", type=int, default=200)
    p.add_argument("--tele", type=float, default=2000.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--saturate-seconds", type=float, default=6.0)
    p.add_argument("--json", type=Path, help="write every run's figures here")
    p.add_argument("--profile", type=Path, help="py-spy the 'new' hub of round 1 into this dir")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    return p.parse_args(argv), extra


def resolve(rev: str) -> str:
    """``merge-base`` (this branch's fork point from main) or any git revision, as a hash."""
    if rev == "merge-base":
        argv = ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"]
    else:
        argv = ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def extract(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (its Python packages and bench/) in ``into``."""
    archive = into / "baseline.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev], stdout=out, check=True)
    dest = into / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


#: What a hub needs of a tree (the snapshot of this checkout copies only these).
TREE = ("protocol", "hub", "fabrique", "edge", "devices", "dashboards", "bench")


def snapshot(into: Path) -> Path:
    """A copy of this checkout's packages, so that editing during a run changes nothing."""
    dest = into / "new"
    for name in TREE:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def hub_cmd(variant: str, baseline: Path, new: Path) -> str:
    py = shlex.quote(sys.executable)
    src = baseline if variant == "today" else new
    if variant == "today":  # an older hub refuses settings it does not know yet
        me = shlex.quote(str(Path(__file__).resolve()))
        return f"env PYTHONPATH={shlex.quote(str(src))} {py} {me} --hub-from {src} {{config}}"
    script = src / "bench/_echo_proc.py" if variant == "echo" else src / "bench/_hub_proc.py"
    return f"env PYTHONPATH={shlex.quote(str(src))} {py} {shlex.quote(str(script))} {{config}}"


def hub_from(src: Path, config: Path) -> None:
    """Run ``src``'s hub launcher on ``config`` without the settings ``src`` lacks."""
    import os
    import tomllib

    sys.path.insert(0, str(src))
    from hub.settings import HubSettings

    values = tomllib.loads(config.read_text())
    known = set(HubSettings.model_fields)
    dropped = sorted(k for k in values if k not in known)
    lines = [ln for ln in config.read_text().splitlines() if ln.split("=", 1)[0].strip() in known]
    kept = config.with_name("hub-today.toml")
    kept.write_text("\n".join(lines) + "\n")
    if dropped:
        print(f"hotpath: settings unknown to today's hub, dropped: {dropped}", flush=True)
    launcher = str(src / "bench/_hub_proc.py")
    os.execv(sys.executable, [sys.executable, launcher, str(kept)])  # noqa: S606


def run_one(
    variant: str,
    cmd: str,
    args: argparse.Namespace,
    extra: list[str],
    out: Path,
    profile: Path | None,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(ROOT / "bench/decisions.py"),
        "--runs",
        "1",
        "--edges",
        str(args.edges),
        "--tele",
        f"{args.tele:g}",
        "--duration",
        f"{args.duration:g}",
        "--saturate-seconds",
        f"{args.saturate_seconds:g}",
        "--hub-cmd",
        cmd,
        "--json",
        str(out),
        "--wait-other",
        "120",
        *extra,
    ]
    if profile is not None:
        argv += ["--profile", str(profile)]
    print(f"--- {variant}: {' '.join(argv[2:])}", flush=True)
    proc = subprocess.run(argv, cwd=ROOT, text=True, capture_output=True)
    keep = ("run 1", "priming", "hub profile", "  ")
    tail = [ln for ln in proc.stdout.splitlines() if ln.startswith(keep)]
    print("\n".join(tail), flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"decisions.py failed for {variant} (rc {proc.returncode})")
    report = json.loads(out.read_text())
    run = report["runs"][0]
    return {"steady": run["steady"], "saturate": run.get("saturate", {})}


def med(runs: list[dict[str, Any]], phase: str, key: str) -> float:
    vals = [r[phase][key] for r in runs if key in r.get(phase, {})]
    return statistics.median(vals) if vals else float("nan")


def peak(runs: list[dict[str, Any]]) -> float:
    """Median peak RSS (MB) of the hub process and its children, the larger phase."""
    return max(med(runs, "steady", "hub_peak_rss_mb"), med(runs, "saturate", "hub_peak_rss_mb"))


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--hub-from"]:
        hub_from(Path(raw[1]), Path(raw[2]))
    args, extra = parse_args(argv)
    args.baseline = resolve(args.baseline)
    variants = [v for v in args.variants.split(",") if v]
    tmp = Path(tempfile.mkdtemp(prefix="fabrique-hotpath-"))
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        baseline = extract(args.baseline, tmp) if "today" in variants else ROOT
        new = snapshot(tmp)
        for r in range(args.rounds):
            for v in variants:
                spy = args.profile is not None and r == 0 and v != "echo"
                prof = args.profile / v if spy and args.profile is not None else None
                results[v].append(
                    run_one(v, hub_cmd(v, baseline, new), args, extra, tmp / f"{v}-{r}.json", prof)
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    hdr = (
        f"{'variant':<7} {'p50 ms':>7} {'p99 ms':>7} {'t/o':>4} {'steady hub%':>11} "
        f"{'sat dec/s':>9} {'sat p99':>8} {'µs/dec':>7} {'peak MB':>8}"
    )
    for v in variants:
        rs = results[v]
        rows.append(
            f"{v:<7} {med(rs, 'steady', 'p50_ms'):>7.2f} {med(rs, 'steady', 'p99_ms'):>7.2f} "
            f"{med(rs, 'steady', 'timeouts'):>4.0f} {med(rs, 'steady', 'hub_cpu_pct'):>11.0f} "
            f"{med(rs, 'saturate', 'decisions_per_s'):>9.0f} {med(rs, 'saturate', 'p99_ms'):>8.2f} "
            f"{med(rs, 'saturate', 'hub_cpu_us_per_decision'):>7.0f} "
            f"{peak(rs):>8.0f}"
        )
    print(f"\nhot path, medians of {args.rounds} round(s); today = {args.baseline}")
    print(hdr)
    print("\n".join(rows))
    goals = []
    if "today" in results and "new" in results:
        t, n = results["today"], results["new"]
        goals.append(
            (
                "CPU per decision new/today",
                med(n, "saturate", "hub_cpu_us_per_decision")
                / med(t, "saturate", "hub_cpu_us_per_decision"),
                "<=",
                1 / 3,
            )
        )
        goals.append(
            (
                "saturated decisions/s new/today",
                med(n, "saturate", "decisions_per_s") / med(t, "saturate", "decisions_per_s"),
                ">=",
                3.0,
            )
        )
        goals.append(("peak RSS new/today", peak(n) / peak(t), "<=", 1.0))
        goals.append(
            (
                "steady p99 today/echo",
                med(t, "steady", "p99_ms") / med(results.get("echo", t), "steady", "p99_ms"),
                "info",
                0.0,
            )
        )
    if "new" in results and "echo" in results:
        goals.append(
            (
                "steady p99 new/echo",
                med(results["new"], "steady", "p99_ms") / med(results["echo"], "steady", "p99_ms"),
                "<=",
                1.2,
            )
        )
    for name, value, op, target in goals:
        if op == "info":
            print(f"ratio {name}: {value:.2f}")
            continue
        ok = value <= target if op == "<=" else value >= target
        print(f"ratio {name}: {value:.2f} (goal {op} {target:.2f}) -> {'PASS' if ok else 'MISS'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "ratios": goals}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
