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
from hub.web.tiles import FloorSnapshot, floor_snapshot, with_live_state

log = logging.getLogger(__name__)

Render = Callable[[FloorSnapshot], dict[str, str]]

#: Sent first on every stream: how long the browser waits before reconnecting (ms).
RETRY_MS = 1000
#: Changes the hub's live state holds entirely (no need to read the store for them).
LIVE_ONLY = frozenset({"state", "telemetry", "edge"})
#: A ``ping`` event is sent when nothing else was for this long (keeps proxies and the
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
        coalesce_s: float = 0.2,
        refresh_s: float = 3.0,
    ) -> None:
        self._factory = factory
        self._control = control
        self.coalesce_s = coalesce_s
        self.refresh_s = refresh_s
        self._subscribers: set[_Subscriber] = set()
        #: Subscribers that show the last decision (kiosks).
        self._decision_views = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._poked = threading.Event()
        #: Something only the store knows changed (a session, an alert): read it again.
        self._store_changed = True
        self._read_at = 0.0
        self._snapshot: FloorSnapshot | None = None
        self.ticks = 0

    # ------------------------------------------------------------------ change side

    def _poke(self, _machine_id: str, what: str) -> None:
        """Any thread: note that something changed (cheap, coalesced). Decisions only
        matter to kiosks: without one listening they wake nothing."""
        if what == "decision" and not self._decision_views:
            return
        if what not in LIVE_ONLY:
            self._store_changed = True
        if self._poked.is_set():
            return
        self._poked.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    def poke(self) -> None:
        """Something the hub does not notify changed (an alert, a note): tick soon."""
        self._poke("", "note")

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
                woken = True
                try:
                    await asyncio.wait_for(self._wake.wait(), self.refresh_s)
                    await asyncio.sleep(self.coalesce_s)
                except TimeoutError:
                    woken = False
                self._wake.clear()
                self._poked.clear()
                # The store is read when it changed, and at least every refresh_s even
                # while live-only changes (telemetry) keep waking the feed.
                stale = time.monotonic() - self._read_at >= self.refresh_s
                full = self._store_changed or not woken or stale
                self._store_changed = False
                try:
                    await self.tick(full=full)
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
        self._read_at = time.monotonic()
        with self._factory() as db:
            return floor_snapshot(db, self._control)

    async def tick(self, *, full: bool = True) -> None:
        """Read the floor once, render each view once, send what changed.

        ``full``: read the store; otherwise only the hub's live state changed (machine
        states, telemetry, edges) and the last snapshot is refreshed from it.
        """
        previous = self._snapshot
        if full or previous is None:
            snapshot = await to_thread.run_sync(self._read)
        else:
            snapshot = with_live_state(previous, self._control)
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

    async def stream(
        self, view: str, render: Render, *, decisions: bool = False
    ) -> AsyncIterator[str]:
        """The text/event-stream of one page: everything now, then the changes.

        ``decisions``: the view shows access decisions (a kiosk), so they wake the feed.
        """
        self._ensure_started()
        sub = _Subscriber(view, render)
        self._subscribers.add(sub)
        self._decision_views += decisions
        try:
            yield f"retry: {RETRY_MS}\n\n"
            # A fresh read: the last snapshot may be older than the page just rendered.
            snapshot = await to_thread.run_sync(self._read)
            self._send(sub, render(snapshot))
            while not sub.dropped:
                try:
                    yield await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    yield "event: ping\ndata: \n\n"
        finally:
            self._subscribers.discard(sub)
            self._decision_views -= decisions


def feed_of(app_state: object) -> FloorFeed:
    """The app's feed (created by :func:`hub.web.mount_web`)."""
    feed = getattr(app_state, "floor_feed", None)
    if not isinstance(feed, FloorFeed):
        raise RuntimeError("the web UI is not mounted on this app")
    return feed
