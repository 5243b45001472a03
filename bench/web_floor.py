"""The live floor under load: 50 machines, 20 open floor pages, and the hub still deciding.

Everything runs on 127.0.0.1 and is started and stopped by the script:

1. a private Mosquitto and a seeded SQLite store (50 edges with one machine each, 200
   members, a fabmanager login), then the hub as its own process (``fabrique hub
   run``, service + API + web UI), as in ``bench/decisions.py``;
2. one MQTT client playing the 50 edges: online status, each machine's retained state,
   badge requests (``req/access``) whose decisions come back on ``cmd/access``;
3. a child process holding 20 floor pages open: 20 Server-Sent Events streams of
   ``/plancher/flux`` (what ``live.js`` reads in the browser), logged in as the
   fabmanager; it stamps every tile fragment it receives with ``time.monotonic()``
   (one clock for every process on Linux).

Phases and figures:

* **decisions, no page open**: ``--requests`` badge requests at ``--rate`` per second,
  round trip request → decision (p50/p95/p99);
* **floor page**: ``--page-loads`` sequential ``GET /plancher`` while the 20 streams
  are open, time to the whole HTML (p50/p95; the client is on the same host, so this
  is the server's time plus a loopback round trip);
* **state change → floor pages**: ``--changes`` machine states published by an edge
  (alternately in use / free); for each, the delay until each of the 20 streams has
  the machine's tile with its new state (p50/p95/p99 over changes × pages);
* **decisions, 20 pages open**: the first phase again while the pages are open and
  the floor keeps changing (one state change every 0.5 s).

Goals (issue 10): floor page p95 < 100 ms; state change → page p99 < 1 s; decision
latency p95 with the pages open ≤ 1.10 × without::

    .venv/bin/python bench/web_floor.py
    .venv/bin/python bench/web_floor.py --requests 600 --changes 60 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import queue
import re
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import (
    SITE,
    hub_config,
    seed_database,
    start_hub,
    start_mosquitto,
    wait_hub_online,
    wait_port,
)

USERNAME = "fabmanager"
PASSWORD = "banc d'essai du plancher"  # noqa: S105 - a throwaway bench login
GOALS = {"page_p95_ms": 100.0, "change_p99_ms": 1000.0, "decision_rise": 1.10}
_TILE = re.compile(r'id="tile-([\w.-]+)" data-state="([\w-]+)"')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": pct(values, 0.50) * 1000,
        "p95_ms": pct(values, 0.95) * 1000,
        "p99_ms": pct(values, 0.99) * 1000,
        "max_ms": max(values, default=float("nan")) * 1000,
    }


# --------------------------------------------------------------------------- pages (child)


def pages_main(base: str, token: str, n: int, out: Any, ready: Any, stop: Any) -> None:
    """Child process: ``n`` SSE streams; every tile fragment goes to ``out``."""
    import httpx

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/plancher/flux") as answer:
            answer.raise_for_status()
            ready.put(i)
            data: list[str] = []
            async for line in answer.aiter_lines():
                if line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    now = time.monotonic()
                    payload = "\n".join(data)
                    data = []
                    if not payload.startswith("{"):
                        continue
                    for fid, html in json.loads(payload).get("fragments", {}).items():
                        m = _TILE.search(html)
                        if fid.startswith("tile-") and m:
                            out.put((now, i, m.group(1), m.group(2)))

    async def run() -> None:
        cookies = {"fabrique_session": token}
        timeout = httpx.Timeout(30.0, read=60.0)  # a ping comes every 10 s
        async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=timeout) as client:
            tasks = [asyncio.create_task(one(i, client)) for i in range(n)]
            while not stop.is_set():
                await asyncio.sleep(0.2)
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            for t in tasks:
                t.cancel()

    asyncio.run(run())


# --------------------------------------------------------------------------- edges (MQTT)


class Edges:
    """One paho client speaking for every edge of the site."""

    def __init__(self, port: int, edges: tuple[str, ...], machines: tuple[str, ...]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from protocol.topics import Topics

        self.topics = Topics(SITE)
        self.edges, self.machines = edges, machines
        self.pending: dict[str, float] = {}
        self.rtts: list[float] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-edges-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        for edge in edges:
            self.client.subscribe(self.topics.cmd_access(edge), qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic()
        try:
            req_id = json.loads(msg.payload)["req_id"]
        except (ValueError, KeyError):
            return
        with self.lock:
            t0 = self.pending.pop(req_id, None)
            if t0 is not None:
                self.rtts.append(now - t0)

    def online(self) -> None:
        from protocol.messages import EdgeStatus, encode

        for edge, machine in zip(self.edges, self.machines, strict=True):
            status = EdgeStatus(online=True, epoch=1, version="bench", machines=(machine,))
            self.client.publish(self.topics.edge_status(edge), encode(status), qos=1, retain=True)
            self.state(edge, machine, busy=False)

    def state(self, edge: str, machine: str, *, busy: bool) -> float:
        from protocol.messages import Availability, MachineState, encode

        st = MachineState(
            machine=machine,
            availability=Availability.IN_USE if busy else Availability.FREE,
            detail={"kind": "generic", "state": "active" if busy else "idle"},
            ts=datetime.now(UTC),
        )
        t0 = time.monotonic()
        self.client.publish(self.topics.state(edge, machine), encode(st), qos=1, retain=True)
        return t0

    def decisions(self, badges: tuple[str, ...], count: int, rate: float) -> list[float]:
        from protocol.messages import AccessRequest, encode

        with self.lock:
            self.rtts = []
        period = 1.0 / rate
        start = time.monotonic()
        for k in range(count):
            i = k % len(self.edges)
            req = AccessRequest(
                req_id=uuid.uuid4().hex,
                edge=self.edges[i],
                machine=self.machines[i],
                badge=badges[k % len(badges)],
                ts=datetime.now(UTC),
            )
            payload = encode(req)
            with self.lock:
                self.pending[req.req_id] = time.monotonic()
            self.client.publish(self.topics.req_access(self.edges[i]), payload, qos=1)
            delay = start + (k + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        deadline = time.monotonic() + 5
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            lost = len(self.pending)
            self.pending.clear()
            rtts = list(self.rtts)
        if lost:
            print(f"  ({lost} requests without a decision)")
        return rtts

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=50)
    p.add_argument("--pages", type=int, default=20)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rate", type=float, default=20.0, help="badge requests per second")
    p.add_argument("--changes", type=int, default=40)
    p.add_argument("--page-loads", type=int, default=100)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def add_login(db_url: str) -> None:
    from hub.api.auth import create_account
    from hub.db.engine import make_engine, make_sessionmaker, transaction
    from hub.db.models import Role

    engine = make_engine(db_url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            create_account(s, USERNAME, PASSWORD, Role.FABMANAGER)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    import httpx

    from hub.settings import DEMO_SITE_SECRET

    a = parse_args(argv)
    report: dict[str, Any] = {"machines": a.machines, "pages": a.pages}
    with tempfile.TemporaryDirectory(prefix="web-floor-") as tmp:
        work = Path(tmp)
        broker, port = start_mosquitto(work)
        hub = None
        edges = None
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        child = None
        try:
            db_url = f"sqlite:///{work / 'hub.db'}"
            pop = seed_database(
                db_url, edges=a.machines, members=200, site_secret=DEMO_SITE_SECRET.encode()
            )
            add_login(db_url)
            config = hub_config(work, db_url=db_url, mqtt_port=port)
            http_port = int(re.search(r"http_port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
            hub = start_hub(work, config, "auto")
            wait_hub_online(port, hub)
            wait_port(http_port)
            base = f"http://127.0.0.1:{http_port}"
            edges = Edges(port, pop.edges, pop.machines)
            edges.online()
            time.sleep(2.0)

            print(f"web floor bench: {a.machines} machines, {a.pages} floor pages")
            before = edges.decisions(pop.known_badges, a.requests, a.rate)
            report["decisions_alone"] = summary(before)

            token = httpx.post(
                f"{base}/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
            ).json()["token"]
            out, ready = ctx.Queue(), ctx.Queue()
            child = ctx.Process(
                target=pages_main, args=(base, token, a.pages, out, ready, stop), daemon=True
            )
            child.start()
            for _ in range(a.pages):
                try:
                    ready.get(timeout=30)
                except Exception:
                    print(hub.log_tail())
                    raise
            time.sleep(1.0)
            while not out.empty():
                out.get_nowait()

            loads: list[float] = []
            with httpx.Client(base_url=base, cookies={"fabrique_session": token}) as web:
                web.get("/plancher").raise_for_status()
                for _ in range(a.page_loads):
                    t0 = time.perf_counter()
                    r = web.get("/plancher")
                    loads.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    assert "tile-m-000" in r.text
            report["floor_page"] = summary(loads)

            lat: list[float] = []
            busy = dict.fromkeys(pop.machines, False)
            missed = 0
            for j in range(a.changes):
                idx = (j * 7) % a.machines
                machine, edge = pop.machines[idx], pop.edges[idx]
                busy[machine] = not busy[machine]
                want = "occupe" if busy[machine] else "libre"
                t0 = edges.state(edge, machine, busy=busy[machine])
                seen: dict[int, float] = {}
                deadline = time.monotonic() + 5
                while len(seen) < a.pages and time.monotonic() < deadline:
                    try:
                        t, page, mid, state = out.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if mid == machine and state == want and page not in seen and t >= t0:
                        seen[page] = t - t0
                missed += a.pages - len(seen)
                lat.extend(seen.values())
                time.sleep(0.3)
            report["state_to_page"] = {**summary(lat), "missed": missed}

            changing = threading.Event()

            def keep_changing() -> None:
                k = 0
                while not changing.is_set():
                    idx = (k * 11) % a.machines
                    machine = pop.machines[idx]
                    busy[machine] = not busy[machine]
                    edges.state(pop.edges[idx], machine, busy=busy[machine])
                    k += 1
                    changing.wait(0.5)

            changer = threading.Thread(target=keep_changing, daemon=True)
            changer.start()
            after = edges.decisions(pop.known_badges, a.requests, a.rate)
            changing.set()
            changer.join()
            report["decisions_with_pages"] = summary(after)
        finally:
            stop.set()
            if child is not None:
                child.join(5)
                if child.is_alive():
                    child.terminate()
            if edges is not None:
                edges.close()
            if hub is not None:
                hub.stop()
            broker.stop()

    alone, withp = report["decisions_alone"], report["decisions_with_pages"]
    rise95 = withp["p95_ms"] / alone["p95_ms"]
    rise50 = withp["p50_ms"] / alone["p50_ms"]
    report["decision_rise_p50"], report["decision_rise_p95"] = rise50, rise95

    def row(name: str, s: dict[str, float]) -> str:
        return (
            f"  {name:<34} n={s['n']:<5} p50 {s['p50_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms"
            f"  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms"
        )

    print(row("decisions, no page open", alone))
    print(row(f"GET /plancher ({a.pages} pages open)", report["floor_page"]))
    print(row("edge state change → each page", report["state_to_page"]))
    print(f"  {'':<34} pages that missed a change: {report['state_to_page']['missed']}")
    print(row(f"decisions, {a.pages} pages open", withp))
    print(f"  decision latency with pages open: p50 ×{rise50:.2f}, p95 ×{rise95:.2f}")
    verdicts = {
        "floor page p95 < 100 ms": report["floor_page"]["p95_ms"] < GOALS["page_p95_ms"],
        "state change → page p99 < 1 s": report["state_to_page"]["p99_ms"] < GOALS["change_p99_ms"]
        and report["state_to_page"]["missed"] == 0,
        "decision p95 rise ≤ 10 %": rise95 <= GOALS["decision_rise"],
    }
    for goal, ok in verdicts.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")
    report["verdicts"] = verdicts
    if a.json is not None:
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
