"""The real hub service as its own process, on a clock that starts at a given instant.

Usage: ``python -m tests.edge._hub_proc hub.toml 2026-11-26T14:00:00+00:00``. Like
``fabrique hub run`` without the HTTP API, but with :class:`hub.service.Hub`'s clock
starting at the given wall time (and running at real speed), so that reliability
tests can ``kill -9`` a hub whose grants do not end at the next real midnight.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from hub.db.engine import make_engine, make_sessionmaker
from hub.service import Hub
from hub.settings import load_settings
from tests.edge.conftest import ShiftedClock


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(Path(argv[0]))
    clock = ShiftedClock(datetime.fromisoformat(argv[1]))
    engine = make_engine(settings.database_url)
    hub = Hub(settings, make_sessionmaker(engine), clock=clock, snapshot_workers=0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub.start()
    try:
        stop.wait(600)
    finally:
        hub.stop()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
