"""Live screens: the floor feed, pushed to browsers as Server-Sent Events.

One :class:`FloorFeed` per app. It subscribes to the live hub's change notifications
(:meth:`hub.control.HubControl.subscribe_changes`, called on paho's thread and the
ledger worker) and, on the event loop, coalesces them: at most one *tick* per
:attr:`FloorFeed.coalesce_s`, plus one every :attr:`FloorFeed.refresh_s` (alerts,
countdowns, anything not notified). A tick reads the floor once
(:func:`hub.web.tiles.floor_snapshot`, on a worker thread), and every *view* renders
its fragments once per tick; each subscriber then receives only the fragments that
changed since it last heard (all of them when it connects, so a reconnecting page is
whole again).

A view is a name and a render function ``snapshot -> {element id: html}``: the floor
for staff, the floor for coordinators (no names), one kiosk per machine and language…
Subscribers that cannot keep up are dropped; their EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from anyio import to_thread
from sqlalchemy.orm import Session, sessionmaker

from hub.control import HubControl
from hub.web.tiles import FloorSnapshot, floor_snapshot

log = logging.getLogger(__name__)

Render = Callable[[FloorSnapshot], dict[str, str]]

#: Sent first on every stream: how long the browser waits before reconnecting (ms).
RETRY_MS = 1000
#: A comment line is sent when nothing else was for this long (keeps proxies and the
#: page's watchdog happy).
PING_S = 10.0


@dataclass(eq=False)
class _Subscriber:
    view: str
    render: Render
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=64))
    sent: dict[str, str] = field(default_factory=dict)
    dropped: bool = False


class FloorFeed:
    """Coalesces live changes into per-view fragment updates (see the module docstring).

    Args:
        factory: store sessions (the tick reads machines, zones and alerts).
        control: the live hub, for its state and change notifications.
        coalesce_s: a change waits this long for others before a tick.
        refresh_s: a tick happens at least this often while someone listens.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        control: HubControl,
        *,
        coalesce_s: float = 0.15,
        refresh_s: float = 2.0,
    ) -> None:
        self._factory = factory
        self._control = control
        self.coalesce_s = coalesce_s
        self.refresh_s = refresh_s
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._poked = threading.Event()
        self._snapshot: FloorSnapshot | None = None
        self.ticks = 0

    # ------------------------------------------------------------------ change side

    def _poke(self, _machine_id: str) -> None:
        """Any thread: note that something changed (cheap, coalesced)."""
        if self._poked.is_set():
            return
        self._poked.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    def poke(self) -> None:
        """Something the hub does not notify changed (an alert, a note): tick soon."""
        self._poke("")

    def _ensure_started(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._unsubscribe = self._control.subscribe_changes(self._poke)
        self._task = asyncio.create_task(self._run(), name="floor-feed")

    async def _run(self) -> None:
        assert self._wake is not None
        try:
            while self._subscribers:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.refresh_s)
                    await asyncio.sleep(self.coalesce_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                self._poked.clear()
                try:
                    await self.tick()
                except Exception:
                    log.exception("floor feed tick failed")
                    await asyncio.sleep(1.0)
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None

    def snapshot_now(self) -> FloorSnapshot:
        """The floor read now (for a page's first render; blocking, call off the loop)."""
        return self._read()

    def _read(self) -> FloorSnapshot:
        with self._factory() as db:
            return floor_snapshot(db, self._control)

    async def tick(self) -> None:
        """Read the floor once, render each view once, send what changed."""
        snapshot = await to_thread.run_sync(self._read)
        self._snapshot = snapshot
        self.ticks += 1
        rendered: dict[str, dict[str, str]] = {}
        for sub in list(self._subscribers):
            if sub.view not in rendered:
                rendered[sub.view] = sub.render(snapshot)
            self._send(sub, rendered[sub.view])

    def _send(self, sub: _Subscriber, fragments: dict[str, str]) -> None:
        changed = {k: v for k, v in fragments.items() if sub.sent.get(k) != v}
        if not changed:
            return
        payload = json.dumps(
            {"fragments": changed, "ts": time.time()}, ensure_ascii=False, separators=(",", ":")
        )
        try:
            sub.queue.put_nowait(f"event: fragments\ndata: {payload}\n\n")
        except asyncio.QueueFull:
            sub.dropped = True
            log.info("floor feed: a slow subscriber was dropped (it will reconnect)")
            return
        sub.sent.update(changed)

    # ------------------------------------------------------------------ browser side

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    async def stream(self, view: str, render: Render) -> AsyncIterator[str]:
        """The text/event-stream of one page: everything now, then the changes."""
        self._ensure_started()
        sub = _Subscriber(view, render)
        self._subscribers.add(sub)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            snapshot = self._snapshot
            if snapshot is None:
                snapshot = await to_thread.run_sync(self._read)
            self._send(sub, render(snapshot))
            while not sub.dropped:
                try:
                    yield await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    yield "event: ping\ndata: \n\n"
        finally:
            self._subscribers.discard(sub)


def feed_of(app_state: object) -> FloorFeed:
    """The app's feed (created by :func:`hub.web.mount_web`)."""
    feed = getattr(app_state, "floor_feed", None)
    if not isinstance(feed, FloorFeed):
        raise RuntimeError("the web UI is not mounted on this app")
    return feed
