"""Journal replay after a 2-hour outage: 20 machines, one event a minute each.

The edge's journal is filled as two hours without the hub would leave it: 20
sessions (one per machine) started two hours ago, a ``usage_tick`` every minute on
each (2,400 ticks) and their ends, 2,440 unacknowledged events. Then the hub starts
(its own process, private Mosquitto, seeded SQLite store) and the edge agent starts
on that journal. The script measures the time until the hub has acknowledged every
event, and checks that each was delivered exactly once and in order:

* the link is wrapped to record every publication: each ``seq`` sent once, in
  increasing order (no resend was needed);
* the hub's ``edge_event`` holds seqs 1..N with no gap, each once;
* the 20 sessions are in the ledger with 7,200 s each.

::

    .venv/bin/python bench/journal_replay.py
    .venv/bin/python bench/journal_replay.py --machines 20 --minutes 120 --window 500
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._edge_setup import (
    EDGE,
    SECRET,
    edge_values,
    machine_id,
    member_uid,
    rig,
    start_hub_process,
    wait,
)
from bench._setup import wait_hub_online


def fill_journal(path: Path, machines: int, minutes: int) -> int:
    """Journal ``minutes`` of sessions on ``machines`` machines ending now; return N."""
    from edge.clock import FakeClock
    from edge.journal import Journal
    from protocol.ids import badge_hash
    from protocol.messages import (
        EndReason,
        SessionEndedBody,
        SessionStartedBody,
        UsageTickBody,
    )

    start = datetime.now(UTC) - timedelta(minutes=minutes)
    clock = FakeClock(wall=start)
    journal = Journal(path, EDGE, clock)
    with journal:
        for i in range(machines):
            journal.append(
                SessionStartedBody(
                    session_id=f"replay-{i:03d}",
                    machine=machine_id(i),
                    badge=badge_hash(SECRET.encode(), member_uid(i)),
                    started_at=start,
                    ends_at=start + timedelta(minutes=minutes + 60),
                )
            )
        for minute in range(1, minutes + 1):
            clock.advance(60)
            for i in range(machines):
                journal.append(
                    UsageTickBody(
                        session_id=f"replay-{i:03d}",
                        machine=machine_id(i),
                        minute=minute,
                        elapsed_s=minute * 60.0,
                    )
                )
        for i in range(machines):
            journal.append(
                SessionEndedBody(
                    session_id=f"replay-{i:03d}",
                    machine=machine_id(i),
                    reason=EndReason.BADGE_OUT,
                    duration_s=minutes * 60.0,
                    ended_at=clock.now(),
                )
            )
        return journal.last_seq()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--window", type=int, default=200, help="events in flight (journal)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from edge.agent import Agent
    from edge.link import EdgeLink, LinkHandler, LinkSettings
    from edge.settings import EdgeSettings
    from protocol.messages import Message

    sent: list[int] = []

    class Recording(EdgeLink):
        def send_event(self, event: Message) -> bool:
            ok = super().send_event(event)
            if ok:
                sent.append(int(getattr(event, "seq", 0)))
            return ok

    def link_factory(s: LinkSettings, h: LinkHandler, epochs: Any) -> EdgeLink:
        return Recording(s, h, epoch_source=epochs)

    with (
        tempfile.TemporaryDirectory(prefix="fabrique-replay-") as tmp,
        rig(Path(tmp), machines=args.machines, members=args.machines, hub=False) as r,
    ):
        journal_path = r.workdir / "edge" / "journal.db"
        t_fill = time.monotonic()
        total = fill_journal(journal_path, args.machines, args.minutes)
        fill_s = time.monotonic() - t_fill
        r.hub = start_hub_process(r)
        wait_hub_online(r.port, r.hub)
        settings = EdgeSettings(
            **edge_values(
                r,
                [{"id": machine_id(i)} for i in range(args.machines)],
                journal={"path": str(journal_path), "window": args.window},
            )
        )
        agent = Agent(settings, link_factory=link_factory)
        t0 = time.monotonic()
        agent.start()
        try:
            wait(lambda: agent.hub_online, 30, "edge online")
            t_online = time.monotonic()
            wait(lambda: agent.acked_through >= total, 600, "every event acknowledged")
            t_done = time.monotonic()
            resends = agent.resends
        finally:
            agent.stop()
        with sqlite3.connect(r.workdir / "hub.db") as db:
            stored, lowest, highest = db.execute(
                "SELECT COUNT(*), MIN(seq), MAX(seq) FROM edge_event WHERE edge_id = ?", (EDGE,)
            ).fetchone()
            sessions = db.execute(
                "SELECT COUNT(*), MIN(used_s), MAX(used_s) FROM usage_session"
            ).fetchone()

    in_order = all(b > a for a, b in itertools.pairwise(sent))
    once = len(sent) == len(set(sent)) == total
    contiguous = stored == total and lowest == 1 and highest == total
    drain = t_done - t_online
    print(
        f"journal replay: {args.machines} machines × {args.minutes} min = {total} events "
        f"(journal filled in {fill_s:.1f} s)"
    )
    print(f"  link up after {t_online - t0:.2f} s, all acknowledged {drain:.2f} s later")
    print(f"  throughput {total / drain:.0f} events/s (window {args.window})")
    print(f"  published {len(sent)} times, resends {resends}: in order {in_order}, once {once}")
    print(f"  hub ledger: {stored} events, seq {lowest}..{highest}, contiguous {contiguous}")
    print(f"  sessions {sessions[0]}, used_s {sessions[1]:.0f}..{sessions[2]:.0f}")
    ok = in_order and once and contiguous and sessions[0] == args.machines
    print(f"delivered exactly once and in order: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "events": total,
                    "drain_s": drain,
                    "events_per_s": total / drain,
                    "published": len(sent),
                    "resends": resends,
                    "in_order": in_order,
                    "once": once,
                    "contiguous": contiguous,
                }
            )
        )
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
