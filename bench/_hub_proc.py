"""Minimal hub launcher for the benchmark, used when ``fabrique hub run`` is absent.

Usage: ``python bench/_hub_proc.py hub.toml``. Builds :class:`hub.service.Hub` from
the settings file and a session factory, starts it, and runs until SIGTERM or
SIGINT, then stops it. Works whether ``start()``/``stop()`` are plain or async.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

#: Longest life of this launcher; the benchmark stops it long before.
MAX_LIFETIME_S = 6 * 3600.0


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


async def _run_async(hub: Any, stop: threading.Event) -> None:
    await _maybe_await(hub.start())
    try:
        await asyncio.to_thread(stop.wait, MAX_LIFETIME_S)
    finally:
        await _maybe_await(hub.stop())


def main(argv: list[str]) -> int:
    """Run the hub described by the TOML file ``argv[0]`` until told to stop."""
    from hub.db.engine import make_engine, make_sessionmaker
    from hub.service import Hub
    from hub.settings import load_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(Path(argv[0]))
    engine = make_engine(settings.database_url)
    hub = Hub(settings, make_sessionmaker(engine))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if inspect.iscoroutinefunction(hub.start):
            asyncio.run(_run_async(hub, stop))
        else:
            hub.start()
            try:
                stop.wait(MAX_LIFETIME_S)
            finally:
                hub.stop()
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
