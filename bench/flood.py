"""Flood benchmark: one edge floods the hub; are the other edges still answered?

Usage (from the repository root)::

    .venv/bin/python bench/flood.py [--edges 20] [--rate 5] [--floods requests,events,...]
        [--qos 1] [--tail 4] [--json out.json]

What it does, all on 127.0.0.1 and all cleaned up on exit (reusing ``bench/_setup.py``,
like ``bench/decisions.py``):

1. a private Mosquitto, a seeded SQLite site (one machine per edge, ``e-000`` is the
   flooding edge, the others are honest), the hub as its own OS process with its
   default settings (the flood limits are what is measured);
2. a **prober** process badges on every honest edge ``--rate`` times a second for the
   whole run and records each round trip (request publish to its decision);
3. an idle phase gives the hub's idle RSS and the honest edges' baseline latency;
4. then each flood in turn, from a **flooder** process, as the issue describes it:

   * ``requests``: 10,000 access requests in 1 s from ``e-000`` (unknown badges);
   * ``events``: 10,000 journal events in 1 s (session started / ended pairs);
   * ``telemetry``: telemetry for 2,000 made-up machine ids, 60 KB each;
   * ``states``: 10,000 retained-less states for made-up machines;

   each measured from its first message to ``--tail`` seconds after its last;
5. prints, per phase: the honest edges' p50/p99/max round trip and timeouts, the
   hub's peak RSS above idle and its RSS at the end of the phase, the hub's CPU, and
   the hub's own counters (throttled messages) read from its log-free metrics.

Goals (issue 12): during each flood, honest p99 < 20 ms and hub RSS < 50 MB above idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (
    SITE,
    free_port,
    hub_config,
    seed_database,
    start_hub,
    start_mosquitto,
    unknown_badge,
    wait_hub_online,
)

from hub.settings import DEMO_SITE_SECRET

GOAL_P99_MS = 20.0
GOAL_RSS_MB = 50.0
FLOODS = ("requests", "events", "telemetry", "states")
#: A request not answered within this many seconds counts as a timeout.
TIMEOUT_S = 2.0


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


# --------------------------------------------------------------------------- prober


def _nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
    """Like the edge and the hub: no Nagle delay on small request packets."""
    import socket

    with suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def prober_main(
    conn: Connection, port: int, edges: list[str], badges: list[str], rate: float
) -> None:
    """Honest edges: each badges ``rate``/s on its own machine; round trips recorded."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol.topics import Topics

    topics = Topics(SITE)
    sent: dict[str, float] = {}
    samples: list[tuple[float, float]] = []  # (sent at, round trip s); inf = timeout
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic()
        try:
            req_id = json.loads(msg.payload)["req_id"]
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            t0 = sent.pop(req_id, None)
            if t0 is not None:
                samples.append((t0, now - t0))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-prober-{os.getpid()}")
    client.on_message = on_message
    client.on_socket_open = _nodelay
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(f"{topics.root}/edge/+/cmd/access", qos=1)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    subscribed.wait(10)
    conn.send("ready")
    period = 1.0 / (rate * len(edges))
    n = 0
    next_t = time.monotonic()
    while not conn.poll(0):
        now = time.monotonic()
        if now < next_t:
            time.sleep(min(next_t - now, 0.005))
            continue
        i = n % len(edges)
        edge, machine = edges[i], "m-" + edges[i][2:]
        req_id = secrets.token_hex(16)
        ts = datetime.now(UTC).isoformat()
        payload = (
            f'{{"v":1,"req_id":"{req_id}","edge":"{edge}","machine":"{machine}",'
            f'"badge":"{badges[n % len(badges)]}","ts":"{ts}"}}'
        )
        with lock:
            sent[req_id] = time.monotonic()
            for rid, t0 in [(r, t) for r, t in sent.items() if now - t > TIMEOUT_S]:
                del sent[rid]
                samples.append((t0, float("inf")))
        client.publish(topics.req_access(edge), payload.encode(), qos=1)
        n += 1
        next_t += period
    conn.recv()
    time.sleep(TIMEOUT_S)
    with lock:
        samples.extend((t0, float("inf")) for t0 in sent.values())
    client.disconnect()
    client.loop_stop()
    conn.send(samples)


# --------------------------------------------------------------------------- flooder


def flood_payloads(
    kind: str, edge: str, machine: str, scale: float = 1.0
) -> list[tuple[str, bytes]]:
    """The (topic, payload) of one flood, built before it starts (``scale``: its size
    relative to the issue's, for the smoke test)."""

    def n(count: int) -> int:
        return max(1, round(count * scale))

    from protocol.messages import (
        EndReason,
        SessionEnded,
        SessionEndedBody,
        SessionStarted,
        SessionStartedBody,
        encode,
    )
    from protocol.topics import Topics

    t = Topics(SITE)
    now = datetime.now(UTC)
    out: list[tuple[str, bytes]] = []
    if kind == "requests":
        for _ in range(n(10_000)):
            payload = (
                f'{{"v":1,"req_id":"{secrets.token_hex(16)}","edge":"{edge}",'
                f'"machine":"{machine}","badge":"{unknown_badge()}","ts":"{now.isoformat()}"}}'
            )
            out.append((t.req_access(edge), payload.encode()))
    elif kind == "events":
        seq = 0
        for i in range(n(5_000)):
            sid = secrets.token_hex(16)
            seq += 1
            started = SessionStarted(
                edge=edge,
                seq=seq,
                event_id=f"flood-{sid}-s",
                epoch=1,
                ts=now,
                body=SessionStartedBody(
                    session_id=sid,
                    machine=machine,
                    badge=unknown_badge(),
                    offline=True,
                    started_at=now - timedelta(seconds=60 + i),
                    ends_at=now + timedelta(hours=1),
                ),
            )
            seq += 1
            ended = SessionEnded(
                edge=edge,
                seq=seq,
                event_id=f"flood-{sid}-e",
                epoch=1,
                ts=now,
                body=SessionEndedBody(
                    session_id=sid,
                    machine=machine,
                    reason=EndReason.BADGE_OUT,
                    duration_s=30.0,
                    ended_at=now - timedelta(seconds=30 + i),
                ),
            )
            out += [(t.evt(edge), encode(started)), (t.evt(edge), encode(ended))]
    elif kind == "telemetry":
        filler = "x" * 60_000
        for i in range(n(2_000)):
            ghost = f"ghost-{i:05d}"
            payload = (
                f'{{"v":1,"machine":"{ghost}","ts":"{now.isoformat()}",'
                f'"values":{{"pad":"{filler}"}}}}'
            )
            out.append((t.tele(edge, ghost), payload.encode()))
    elif kind == "states":
        for i in range(n(10_000)):
            ghost = f"ghost-{i:05d}"
            payload = (
                f'{{"v":1,"machine":"{ghost}","availability":"free","ts":"{now.isoformat()}"}}'
            )
            out.append((t.state(edge, ghost), payload.encode()))
    else:
        raise ValueError(kind)
    return out


def flooder_main(
    conn: Connection, port: int, edge: str, machine: str, qos: int, scale: float
) -> None:
    """The mad edge: announces itself, then sends each flood asked, paced over 1 s."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol.messages import EdgeStatus, encode
    from protocol.topics import Topics

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-edge-{os.getpid()}")
    client.on_socket_open = _nodelay
    client.max_inflight_messages_set(65_535)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    status = EdgeStatus(online=True, epoch=1, machines=(machine,), ts=datetime.now(UTC))
    client.publish(Topics(SITE).edge_status(edge), encode(status), qos=1, retain=True)
    conn.send("ready")
    while True:
        kind = conn.recv()
        if kind is None:
            break
        payloads = flood_payloads(kind, edge, machine, scale)
        conn.send("built")
        conn.recv()  # go
        t0 = time.monotonic()
        last = None
        for i, (topic, payload) in enumerate(payloads):
            last = client.publish(topic, payload, qos=qos)
            # Pace to 1 s in all (never faster than the socket drains).
            target = t0 + (i + 1) / len(payloads)
            delay = target - time.monotonic()
            if delay > 0.002:
                time.sleep(delay)
        if last is not None and qos > 0:
            with suppress(RuntimeError, ValueError):
                last.wait_for_publish(60)
        conn.send((t0, time.monotonic(), len(payloads)))
    client.disconnect()
    client.loop_stop()


# --------------------------------------------------------------------------- orchestration


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--edges", type=int, default=20, help="honest edges (besides the flooder)")
    p.add_argument("--rate", type=float, default=5.0, help="requests per honest edge per second")
    p.add_argument("--floods", default=",".join(FLOODS), help="comma-separated, in order")
    p.add_argument(
        "--broker-inflight", type=int, default=50,
        help="Mosquitto max_inflight_messages (50: ansible's mosquitto role; 0 = unlimited)",
    )  # fmt: skip
    p.add_argument("--qos", type=int, default=1, choices=(0, 1), help="the flooder's QoS")
    p.add_argument("--scale", type=float, default=1.0, help="flood sizes x this (smoke test)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of the idle phase")
    p.add_argument("--tail", type=float, default=4.0, help="seconds measured after a flood")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between floods")
    p.add_argument(
        "--hub-setting", action="append", default=[], metavar="KEY=VALUE",
        help="extra hub setting written to its TOML (repeatable)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.floods = [f for f in args.floods.split(",") if f]
    unknown = sorted(set(args.floods) - set(FLOODS))
    if unknown:
        p.error(f"unknown flood(s) {unknown}; choose among {FLOODS}")
    return args


class RssProbe(threading.Thread):
    """Samples the hub's RSS (and its children's: the snapshot compiler) every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def rss(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append((time.monotonic(), self.rss()))

    def between(self, t0: float, t1: float) -> list[int]:
        return [r for t, r in list(self.samples) if t0 <= t <= t1]


def cpu_seconds(pid: int) -> float:
    try:
        c = psutil.Process(pid).cpu_times()
        return float(c.user + c.system)
    except psutil.Error:
        return 0.0


def phase_figures(
    name: str,
    window: tuple[float, float],
    samples: list[tuple[float, float]],
    rss: RssProbe,
    idle_rss: int,
    cpu_s: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    t0, t1 = window
    rtts = [rtt for sent, rtt in samples if t0 <= sent <= t1]
    answered = [r * 1000 for r in rtts if r != float("inf")]
    in_window = rss.between(t0, t1) or [rss.rss()]
    slow = [sent - t0 for sent, rtt in samples if t0 <= sent <= t1 and rtt > GOAL_P99_MS / 1000]
    return {
        "phase": name,
        "seconds": round(t1 - t0, 2),
        "requests": len(rtts),
        "timeouts": len(rtts) - len(answered),
        "p50_ms": round(percentile(answered, 50), 2),
        "p99_ms": round(percentile(answered, 99), 2),
        "max_ms": round(max(answered), 2) if answered else float("nan"),
        "rss_peak_above_idle_mb": round((max(in_window) - idle_rss) / 2**20, 1),
        "rss_end_above_idle_mb": round((in_window[-1] - idle_rss) / 2**20, 1),
        "hub_cpu_pct": round(100 * cpu_s / max(t1 - t0, 1e-9), 1),
        #: When the requests slower than the goal were sent, from the phase's start.
        "slow": len(slow),
        "slow_sent_s": [round(min(slow), 2), round(max(slow), 2)] if slow else None,
        **extra,
    }


def scrape(port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def render(report: dict[str, Any]) -> str:
    lines = [
        f"flood benchmark: {report['edges']} honest edges at {report['rate']}/s, "
        f"flooder QoS {report['qos']}, broker inflight {report['broker_inflight']}, "
        f"idle RSS {report['idle_rss_mb']} MB",
        f"{'phase':<10} {'s':>5} {'reqs':>5} {'t/o':>4} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'RSS+pk':>7} {'RSS+end':>7} {'CPU%':>6} {'brk%':>5} {'send s':>6} "
        f"{'throttled':>9}  goals",
    ]
    for ph in report["phases"]:
        ok = ph["p99_ms"] < GOAL_P99_MS and ph["timeouts"] == 0
        ok = ok and ph["rss_peak_above_idle_mb"] < GOAL_RSS_MB
        lines.append(
            f"{ph['phase']:<10} {ph['seconds']:>5} {ph['requests']:>5} {ph['timeouts']:>4} "
            f"{ph['p50_ms']:>7} {ph['p99_ms']:>7} {ph['max_ms']:>7} "
            f"{ph['rss_peak_above_idle_mb']:>7} {ph['rss_end_above_idle_mb']:>7} "
            f"{ph['hub_cpu_pct']:>6} {ph.get('broker_cpu_pct', ''):>5} "
            f"{ph.get('send_s', ''):>6} {ph.get('throttled', 0):>9}  "
            f"{'met' if ok or ph['phase'] == 'idle' else 'MISSED'}"
        )
    lines.append(
        f"goals: honest p99 < {GOAL_P99_MS:g} ms and hub RSS < {GOAL_RSS_MB:g} MB above idle "
        "during each flood"
    )
    return "\n".join(lines)


def expect(conn: Connection, what: str, timeout: float) -> None:
    """Wait for a child's ``what``, or fail loudly."""
    if not conn.poll(timeout) or conn.recv() != what:
        raise RuntimeError(f"no {what!r} from a bench process within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = mp.get_context("spawn")
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="fabrique-flood-"))
        if not args.keep:
            import shutil

            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        broker, port = start_mosquitto(workdir, inflight=args.broker_inflight)
        stack.callback(broker.stop)
        db_url = f"sqlite:///{workdir / 'hub.db'}"
        pop = seed_database(
            db_url, edges=args.edges + 1, members=300, site_secret=DEMO_SITE_SECRET.encode()
        )
        metrics_port = free_port()
        extra = {"metrics_port": str(metrics_port)}
        extra.update(dict(kv.split("=", 1) for kv in args.hub_setting))
        config = hub_config(workdir, db_url=db_url, mqtt_port=port, extra=extra)
        hub = start_hub(workdir, config, "auto")
        stack.callback(hub.stop)
        wait_hub_online(port, hub)
        flooder_edge, flooder_machine = pop.edges[0], pop.machines[0]
        honest = list(pop.edges[1:])

        p_conn, p_child = ctx.Pipe()
        prober = ctx.Process(
            target=prober_main,
            args=(p_child, port, honest, list(pop.known_badges), args.rate),
            daemon=True,
        )
        f_conn, f_child = ctx.Pipe()
        flooder = ctx.Process(
            target=flooder_main,
            args=(f_child, port, flooder_edge, flooder_machine, args.qos, args.scale),
            daemon=True,
        )
        prober.start()
        flooder.start()
        stack.callback(prober.kill)
        stack.callback(flooder.kill)
        expect(p_conn, "ready", 30)
        expect(f_conn, "ready", 30)
        rss = RssProbe(hub.pid)
        rss.start()
        time.sleep(min(2.0, args.idle))  # warm-up: first decisions, snapshot compilation

        windows: list[tuple[str, tuple[float, float], float, dict[str, Any]]] = []
        t0 = time.monotonic()
        c0 = cpu_seconds(hub.pid)
        time.sleep(args.idle)
        t1 = time.monotonic()
        windows.append(("idle", (t0, t1), cpu_seconds(hub.pid) - c0, {}))
        idle_samples = rss.between(t0, t1)
        idle_rss = int(statistics.median(idle_samples)) if idle_samples else rss.rss()
        before = scrape(metrics_port)
        for kind in args.floods:
            f_conn.send(kind)
            expect(f_conn, "built", 300)
            time.sleep(args.settle)
            c0, b0 = cpu_seconds(hub.pid), cpu_seconds(broker.pid)
            f_conn.send("go")
            if not f_conn.poll(600):
                raise RuntimeError(f"the {kind} flood did not end")
            start, end, sent = f_conn.recv()
            time.sleep(args.tail)
            stop = time.monotonic()
            after = scrape(metrics_port)
            throttled = sum(
                v - before.get(k, 0.0)
                for k, v in after.items()
                if k.startswith("fabrique_hub_throttled_messages_total")
            )
            before = after
            extra_figs = {
                "sent": sent,
                "send_s": round(end - start, 2),
                "throttled": int(throttled),
                "broker_cpu_pct": round(
                    100 * (cpu_seconds(broker.pid) - b0) / max(stop - start, 1e-9), 1
                ),
            }
            windows.append((kind, (start, stop), cpu_seconds(hub.pid) - c0, extra_figs))
        p_conn.send("stop")
        samples = p_conn.recv() if p_conn.poll(60) else []
        f_conn.send(None)
        rss.stop.set()
        report = {
            "edges": len(honest),
            "rate": args.rate,
            "qos": args.qos,
            "broker_inflight": args.broker_inflight,
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "phases": [
                phase_figures(name, win, samples, rss, idle_rss, cpu, ex)
                for name, win, cpu, ex in windows
            ],
            "hub_counters": {k: v for k, v in before.items() if "throttl" in k or "unknown" in k},
            "load_avg": os.getloadavg(),
        }
        print(render(report))
        print("hub counters:", json.dumps(report["hub_counters"], sort_keys=True))
        print("load average (1, 5, 15 min):", report["load_avg"])
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
