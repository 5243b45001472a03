"""Staff command round trip: the hub sends a command, the edge answers its outcome.

Everything runs on 127.0.0.1 and is started and stopped by the script: a private
Mosquitto and a seeded SQLite store (as in ``bench/edge_latency.py``), the hub service
(:class:`hub.service.Hub`) and one edge agent in this process. ``--runs`` times, the
hub sends ``maintenance_on`` / ``maintenance_off`` alternately to a simulated plug
(``applied``) and ``pause`` (``refused``: ``no_driver``), and waits for the answer:
``cmd/machine`` → broker → edge thread → session machine → ``outcome`` → broker → hub
→ the waiting caller. This is what an API call for a staff command waits for before
it answers (``command_outcome_wait_s``, 5 s)::

    .venv/bin/python bench/command_outcome.py
    .venv/bin/python bench/command_outcome.py --runs 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._edge_setup import SECRET, SITE, edge_values, machine_id, quantiles, rig, wait


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="commands of each kind")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    from edge.agent import Agent
    from edge.settings import EdgeSettings
    from hub.db.engine import make_engine, make_sessionmaker
    from hub.service import Hub
    from hub.settings import HubSettings
    from protocol.messages import MachineAction, Outcome

    with (
        tempfile.TemporaryDirectory(prefix="fabrique-cmd-") as tmp,
        rig(Path(tmp), machines=1, members=1, hub=False) as r,
    ):
        settings = HubSettings(
            site=SITE,
            demo=True,
            database_url=r.db_url,
            mqtt_host="127.0.0.1",
            mqtt_port=r.port,
            site_secret=SECRET,
        )
        engine = make_engine(r.db_url)
        hub = Hub(settings, make_sessionmaker(engine), snapshot_workers=0)
        hub.start()
        agent = Agent(EdgeSettings(**edge_values(r, [{"id": machine_id(0)}])))
        agent.start()
        try:
            wait(lambda: agent.hub_online, 15, "edge online")
            figures: dict[str, object] = {}
            for name, actions, expect in (
                (
                    "applied",
                    [MachineAction.MAINTENANCE_ON, MachineAction.MAINTENANCE_OFF],
                    Outcome.APPLIED,
                ),
                ("refused", [MachineAction.PAUSE], Outcome.REFUSED),
            ):
                samples: list[float] = []
                for n in range(args.runs):
                    action = actions[n % len(actions)]
                    start = time.perf_counter()
                    pending = hub.machine_command(machine_id(0), action)
                    assert pending is not None, "not sent"
                    outcome = pending.wait(5.0)
                    samples.append(time.perf_counter() - start)
                    if outcome is None or outcome.outcome is not expect:
                        raise SystemExit(f"unexpected answer to {action}: {outcome}")
                figures[name] = quantiles(samples)
        finally:
            agent.stop()
            hub.stop()
            engine.dispose()
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
