"""Following one printer live through OctoPrint's push API, with a REST safety net.

:class:`OctoPrintFollower` is the one owner of a printer's connection (DESIGN §5.2):
everyone else reads its :attr:`~OctoPrintFollower.snapshot`, subscribes to its
:class:`JobEvent` stream (or adds a listener, called synchronously with every event
and every new snapshot: the edge posts them to its agent's queue at once), and
sends commands through the follower (:meth:`~OctoPrintFollower.pause`…) or its
:attr:`~OctoPrintFollower.client`.

How it follows (research §2.2/§2.4, OctoFarm and FDM Monster's pattern):

1. ``POST /api/login {"passive": true}`` with the user's API key gives ``name`` and
   ``session``;
2. a plain WebSocket to ``/sockjs/websocket`` (raw SockJS transport, one JSON object
   per frame): on ``connected`` it sends ``{"auth": "name:session"}``, a
   subscription (state without logs and messages, only the events it follows, no
   plugin messages) and ``{"throttle": n}`` (one ``current`` per n × 500 ms);
3. ``history``/``current`` messages replace the snapshot; ``event`` messages become
   :class:`JobEvent`\\ s; ``reauthRequired`` is answered on the same socket: with
   the same session when the reason is ``modified`` (the user changed; OctoPrint
   sends it once per session of that user), with a new passive login otherwise
   (``stale``, ``logout``, ``removed``);
4. a **silence watchdog**: OctoPrint pushes ``current`` every n × 500 ms even when
   idle, so no message for ``silence_timeout_s`` means a dead or frozen peer: the
   socket is dropped and reopened;
5. **reconnect with exponential backoff** (``backoff_initial_s`` doubling up to
   ``backoff_max_s``, ±25 % jitter; reset after a session that stayed up), for ever
   and without raising: an unreachable OctoPrint is a state, not a crash;
6. a **REST safety poll** (``GET /api/job`` + ``GET /api/printer``) every
   ``poll_interval_s``, whether the socket is up or not, so a silently broken
   socket never leaves the snapshot stale for long; a poll that succeeds while the
   socket is down means OctoPrint is back, so the socket is retried at once rather
   than after the rest of a long backoff (not after a refused key); after a job's
   end event it polls every 100 ms (for 2 s at most) until the printer shows no job,
   so the snapshot says "idle" within ~100 ms instead of at the next push.

While the link is down the snapshot keeps the last known values with
``connected=False``; :attr:`~OctoPrintFollower.job_active` therefore stays true if
a job was running when the link went down (never cut a printer's power on a guess,
DESIGN §4). When the link comes back and that job is gone without a terminal event
(OctoPrint restarted mid-print), a ``JobLost`` event says so. Before the first
answer the snapshot is not :attr:`~PrinterSnapshot.known` and ``job_active`` is
false: whether to keep power on for an unknown printer is the edge's decision.

A follower built without a client (``OctoPrintFollower(None)``) opens no socket
and polls nothing: a subclass is the data source. It feeds OctoPrint's own push
payloads to :meth:`~OctoPrintFollower._feed_current` and
:meth:`~OctoPrintFollower._feed_event`, runs its work with
:meth:`~OctoPrintFollower._start_task` and overrides the commands, and the base
class turns them into snapshots and events exactly as for a real OctoPrint
(:class:`~devices.octoprint.SimulatedPrinter` does so).

Latency (bench/octoprint_follow.py, loopback): a :class:`JobEvent` arrives within
tens of milliseconds of OctoPrint acting; the snapshot follows OctoPrint's
``current`` cadence (≈ throttle × 500 ms), so react to events when it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from devices.errors import (
    DeviceAuthError,
    DeviceConfigError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.octoprint.client import OctoPrintClient, PrinterOffline
from devices.octoprint.models import (
    OCTOPRINT_EVENT_TYPES,
    JobEvent,
    JobEventKind,
    PrinterSnapshot,
    PrinterStatus,
)

__all__ = ["JobEventStream", "OctoPrintFollower"]

_LOGGER = logging.getLogger(__name__)

#: Largest push message accepted: ``history`` grows to tens of KB (research §2.2).
_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: reauthRequired answered this many times in a row without data -> reconnect
_MAX_REAUTHS_WITHOUT_DATA = 3
#: a session that delivered data this long resets the backoff to its initial delay
_STABLE_S = 5.0
#: after a job's end event, poll this often (for at most _SETTLE_S) until the
#: printer shows no job: OctoPrint is idle within tens of milliseconds, its next
#: ``current`` push may be half a second away
_SETTLE_POLL_S = 0.1
_SETTLE_S = 2.0


class JobEventStream:
    """The :class:`JobEvent`\\ s of one follower, from the moment of subscription.

    An async iterator (``async for event in stream``) and an async context
    manager that unsubscribes on exit. Each stream has its own bounded queue; when
    a reader falls more than ``maxsize`` events behind, the oldest are dropped
    (and logged) so a slow reader can never stall the follower.
    """

    def __init__(self, follower: OctoPrintFollower, maxsize: int) -> None:
        self._follower = follower
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self

    async def __anext__(self) -> JobEvent:
        return await self._queue.get()

    async def wait_for(self, predicate: Callable[[JobEvent], bool], within_s: float) -> JobEvent:
        """Skip events until one matches ``predicate``; return it.

        Raises:
            TimeoutError: no matching event within ``within_s`` seconds.
        """
        async with asyncio.timeout(within_s):
            while True:
                event = await self._queue.get()
                if predicate(event):
                    return event

    def pending(self) -> list[JobEvent]:
        """Take every event already queued, without waiting."""
        events: list[JobEvent] = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    def close(self) -> None:
        """Stop receiving events."""
        self._follower._unsubscribe(self)

    def _put(self, event: JobEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            _LOGGER.warning("%r: event reader too slow, dropped the oldest event", self._follower)
        self._queue.put_nowait(event)


class OctoPrintFollower:
    """Follows one printer: live snapshot, job events, reconnects for ever.

    Args:
        client: the REST client of this printer's OctoPrint; the follower enters
            it on start (entering is counted, so it may be shared) and sends
            commands through it. ``None``: no push socket and no REST poll, a
            subclass supplies the messages (see "Subclasses" below).
        throttle: push rate divisor: one ``current`` every ``throttle`` × 500 ms.
        poll_interval_s: period of the REST safety poll.
        silence_timeout_s: reconnect when no push message arrived for this long;
            defaults to ``max(10, 5 × throttle × 0.5)`` seconds.
        backoff_initial_s, backoff_max_s: reconnect delays (doubling, capped).
        on_event: called synchronously with every :class:`JobEvent` (keep it short;
            exceptions are logged and swallowed). :meth:`subscribe` is the
            async alternative; :meth:`add_listener` adds more callbacks.
        event_queue_size: per-subscriber queue bound.

    Subclasses (a follower with another data source) use the protected methods
    :meth:`_feed_current`, :meth:`_feed_event` and :meth:`_start_task`, and
    override :meth:`pause`, :meth:`resume` and :meth:`cancel`; the rest is private.
    """

    def __init__(
        self,
        client: OctoPrintClient | None,
        *,
        throttle: int = 1,
        poll_interval_s: float = 10.0,
        silence_timeout_s: float | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        on_event: Callable[[JobEvent], None] | None = None,
        event_queue_size: int = 256,
    ) -> None:
        self.throttle = throttle
        self.poll_interval_s = poll_interval_s
        self.silence_timeout_s = (
            silence_timeout_s if silence_timeout_s is not None else max(10.0, 2.5 * throttle)
        )
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.event_queue_size = event_queue_size
        self._client = client
        self._event_listeners: list[Callable[[JobEvent], None]] = [on_event] if on_event else []
        self._snapshot_listeners: list[Callable[[PrinterSnapshot], None]] = []
        self._snapshot = PrinterSnapshot()
        self._link_up = False
        self._link_since: float | None = None
        self._last_error: DeviceError | None = None
        self._retry_delay_s = backoff_initial_s
        self._streams: list[JobEventStream] = []
        self._changed = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._settle_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        #: (file name, path) of the job running when the link went down
        self._job_before_outage: tuple[str | None, str | None] | None = None
        #: the PrintStarted of the job running now (before a snapshot shows it)
        self._started: JobEvent | None = None
        #: counters, for diagnostics and the benchmark
        self.attempts = 0
        self.sessions = 0
        self.messages = 0
        self.reauths = 0
        self.polls = 0

    def __repr__(self) -> str:
        source = self._client.base_url if self._client is not None else None
        return f"OctoPrintFollower({source!r})"

    # ------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Enter the client and start following in background tasks (never blocks on
        OctoPrint: an unreachable OctoPrint is retried, not raised). Without a
        client, nothing starts here: the subclass starts its own work."""
        if self._client is not None:
            await self._client.__aenter__()
            self._start_task(self._run(), "push")
            self._start_task(self._poll_loop(), "poll")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop following: cancel the tasks (the subclass's too), close the socket
        and the client; the link goes down, the snapshot keeps its last values."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_link(False, "follower stopped", emit=False)
        if self._client is not None:
            await self._client.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------------- reading

    @property
    def client(self) -> OctoPrintClient:
        """The REST client: send commands (start, pause, cancel…) through it.

        Raises:
            DeviceConfigError: this follower has no OctoPrint behind it (a
                simulated printer): use its own commands.
        """
        if self._client is None:
            raise DeviceConfigError(f"{self!r} has no OctoPrint client")
        return self._client

    @property
    def snapshot(self) -> PrinterSnapshot:
        """The latest :class:`PrinterSnapshot` (last known values while disconnected)."""
        return self._snapshot

    @property
    def job_active(self) -> bool:
        """OctoPrint reports (or last reported) a job: never cut this printer's power."""
        return self._snapshot.job_active

    @property
    def link_up(self) -> bool:
        """The push socket is open, authenticated and delivering data."""
        return self._link_up

    @property
    def last_error(self) -> DeviceError | None:
        """Why the last connection attempt or session ended (``None`` if none did)."""
        return self._last_error

    @property
    def retry_delay_s(self) -> float:
        """The backoff delay the next failed attempt will wait (before jitter)."""
        return self._retry_delay_s

    @property
    def running(self) -> bool:
        """Whether the follower's tasks are alive (they only stop when it is closed)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def subscribe(self) -> JobEventStream:
        """A new stream of the :class:`JobEvent`\\ s that happen from now on."""
        stream = JobEventStream(self, self.event_queue_size)
        self._streams.append(stream)
        return stream

    def add_listener(
        self,
        on_event: Callable[[JobEvent], None] | None = None,
        on_snapshot: Callable[[PrinterSnapshot], None] | None = None,
    ) -> None:
        """Also call ``on_event`` with every :class:`JobEvent` and ``on_snapshot`` with
        every new :class:`PrinterSnapshot` (push message, poll, link change).

        Both run synchronously on the follower's event loop, in the order things
        happened (a ``JobLost`` event comes before the snapshot that revealed it):
        keep them short (post to a queue); exceptions are logged and swallowed.
        """
        if on_event is not None:
            self._event_listeners.append(on_event)
        if on_snapshot is not None:
            self._snapshot_listeners.append(on_snapshot)

    def _unsubscribe(self, stream: JobEventStream) -> None:
        with contextlib.suppress(ValueError):
            self._streams.remove(stream)

    async def wait_for(
        self, predicate: Callable[[PrinterSnapshot], bool], within_s: float
    ) -> PrinterSnapshot:
        """Wait until the snapshot satisfies ``predicate``; return that snapshot.

        Raises:
            DeviceTimeout: it did not within ``within_s`` seconds (the message shows
                the last snapshot).
        """
        deadline = time.monotonic() + within_s
        while not predicate(self._snapshot):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(
                    f"{self!r}: condition not met in {within_s} s: {self._snapshot}"
                )
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()
        return self._snapshot

    def poll_now(self) -> None:
        """Run the REST safety poll now instead of at the next period."""
        self._poll_now.set()

    # ------------------------------------------------------------------- commands
    # Commands go through the follower, the one owner of the printer (a simulated
    # printer overrides these), then a poll confirms the new state at once.

    async def pause(self) -> None:
        """Pause the running job.

        Raises:
            DeviceError: OctoPrint refused, is unreachable, or answered oddly.
        """
        await self.client.pause()
        self.poll_now()

    async def resume(self) -> None:
        """Resume the paused job (same errors as :meth:`pause`)."""
        await self.client.resume()
        self.poll_now()

    async def cancel(self) -> None:
        """Cancel the running job (same errors as :meth:`pause`)."""
        await self.client.cancel()
        self.poll_now()

    # ------------------------------------------------------------------- push loop

    async def _run(self) -> None:
        """Connect, follow, and reconnect with backoff, for ever."""
        while True:
            self.attempts += 1
            try:
                await self._session()
            except DeviceError as err:
                self._last_error = err
                level = logging.ERROR if isinstance(err, DeviceAuthError) else logging.WARNING
                if self._link_up:
                    # One line for a lost link ("link down: why"), not the error and
                    # then the link down with the same words.
                    self._set_link(False, str(err), level=level)
                else:
                    _LOGGER.log(level, "%r: %s", self, err)
            since = self._link_since
            if since is not None and time.monotonic() - since >= _STABLE_S:
                self._retry_delay_s = self.backoff_initial_s
            self._set_link(False, str(self._last_error))
            delay = self._retry_delay_s
            if isinstance(self._last_error, DeviceAuthError):
                # a wrong key stays wrong: do not burn OctoPrint's login rate limit
                delay = self.backoff_max_s
            self._retry_delay_s = min(self._retry_delay_s * 2, self.backoff_max_s)
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.75, 1.25)):
                    await self._retry_now.wait()  # set by a poll that reached OctoPrint

    async def _session(self) -> None:
        """One push session: login, socket, messages; it only ends by raising.

        Raises:
            DeviceError: why the session ended (translated at this boundary).
        """
        client = self.client
        login = await client.passive_login()
        try:
            async with connect(
                client.websocket_url,
                open_timeout=client.timeout,
                close_timeout=2,
                max_size=_MAX_MESSAGE_BYTES,
                user_agent_header="fabrique-octoprint",
            ) as ws:
                self.sessions += 1
                await self._follow(ws, login.name, login.session)
        except DeviceError:
            raise
        except InvalidStatus as err:
            status = err.response.status_code
            raise DeviceProtocolError(f"{self!r}: push socket refused with HTTP {status}") from err
        except ConnectionClosed as err:
            raise DeviceUnavailable(f"{self!r}: push socket closed ({err})") from err
        except TimeoutError as err:
            raise DeviceTimeout(f"{self!r}: push socket did not open in time") from err
        except (OSError, WebSocketException) as err:
            raise DeviceUnavailable(f"{self!r}: push socket: {err}") from err

    async def _follow(self, ws: ClientConnection, name: str, session: str) -> NoReturn:
        """Read messages until the socket fails or stays silent too long."""
        reauths_without_data = 0
        while True:
            try:
                async with asyncio.timeout(self.silence_timeout_s):
                    raw = await ws.recv()
            except TimeoutError:
                raise DeviceTimeout(
                    f"{self!r}: no push message for {self.silence_timeout_s:g} s"
                ) from None
            self.messages += 1
            message = _decode(raw)
            for mtype, payload in message.items():
                if mtype == "connected":
                    await self._authenticate(ws, name, session)
                elif mtype in ("current", "history"):
                    reauths_without_data = 0
                    self._feed_current(payload)
                elif mtype == "event":
                    self._feed_event(payload)
                elif mtype == "reauthRequired":
                    self.reauths += 1
                    reason = payload.get("reason") if isinstance(payload, dict) else None
                    _LOGGER.info("%r: OctoPrint asks to re-authenticate (%s)", self, reason)
                    if reason == "modified":
                        # the user changed (sent once per session of that user, so
                        # often in bursts): our session is still valid, re-send it
                        await self._authenticate(ws, name, session)
                        continue
                    # stale, logout, removed: the session is gone, log in again;
                    # refused again and again without data -> give up this socket
                    reauths_without_data += 1
                    if reauths_without_data > _MAX_REAUTHS_WITHOUT_DATA:
                        raise DeviceAuthError(f"{self!r}: session refused again and again")
                    login = await self.client.passive_login()
                    name, session = login.name, login.session
                    await self._authenticate(ws, name, session)

    async def _authenticate(self, ws: ClientConnection, name: str, session: str) -> None:
        subscription = {
            "state": {"logs": False, "messages": False},
            "events": list(OCTOPRINT_EVENT_TYPES),
            "plugins": False,
        }
        await ws.send(json.dumps({"auth": f"{name}:{session}"}))
        await ws.send(json.dumps({"subscribe": subscription}))
        await ws.send(json.dumps({"throttle": self.throttle}))

    # ------------------------------------------------------------------- poll loop

    async def _poll_loop(self) -> None:
        """The REST safety poll, every ``poll_interval_s`` (or at :meth:`poll_now`)."""
        while True:
            period = self.poll_interval_s
            if self._snapshot.job_active and time.monotonic() < self._settle_until:
                period = _SETTLE_POLL_S  # a job just ended: follow it out of Finishing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._poll_now.wait()
            self._poll_now.clear()
            try:
                await self._poll_once()
            except DeviceError as err:
                _LOGGER.debug("%r: safety poll failed: %s", self, err)

    async def _poll_once(self) -> None:
        client = self.client
        job = await client.job()
        printer: PrinterStatus | None
        try:
            printer = await client.printer()
        except PrinterOffline:
            printer = None
        self.polls += 1
        if not self._link_up and not isinstance(self._last_error, DeviceAuthError):
            self._retry_now.set()  # OctoPrint answers again: reopen the socket now
        self._replace(
            self._snapshot.updated_from_poll(
                printer, job, connected=self._link_up, now=datetime.now(UTC)
            )
        )

    # ------------------------------------------------------------------- state
    # _start_task, _feed_current and _feed_event are the protected hooks of a
    # subclass that supplies the messages itself (a follower built without client).

    def _start_task(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coro`` in the background until the follower stops (for a subclass).

        The task is cancelled on exit, and :attr:`running` is false once it ends.
        """
        self._tasks.append(asyncio.create_task(coro, name=f"{self!r} {what}"))

    def _feed_current(self, payload: Any) -> None:
        """A push ``current`` (or ``history``) payload, as OctoPrint 1.11 sends it:
        the link is up and the snapshot replaced (listeners, ``JobLost``, waiters)."""
        snapshot = self._snapshot.updated_from_push(payload, connected=True, now=datetime.now(UTC))
        self._set_link(True, "push data flowing")  # LinkUp before a JobLost it may reveal
        self._replace(snapshot)

    def _feed_event(self, payload: Any) -> None:
        """A push ``event`` payload (``{"type": "PrintDone", "payload": {…}}``): the
        :class:`JobEvent` is emitted if the follower knows its type, ignored else."""
        event = JobEvent.from_push(payload, at=datetime.now(UTC), monotonic_s=time.monotonic())
        if event is not None:
            _LOGGER.info("%r: %s %s", self, event.kind.value, event.file_name or "")
            if event.kind is JobEventKind.PRINT_STARTED:
                self._started = event
            elif event.ends_job:
                self._job_before_outage = self._started = None
                self._settle_until = time.monotonic() + _SETTLE_S
                self.poll_now()
            self._emit(event)

    def _replace(self, snapshot: PrinterSnapshot) -> None:
        """Install a new snapshot, detect a job lost during an outage, wake waiters."""
        before = self._job_before_outage
        if before is not None and snapshot.connected:
            self._job_before_outage = None
            if not snapshot.job_active:
                self._started = None
                self._emit_own(
                    JobEventKind.JOB_LOST,
                    reason="the job seen before the outage is gone (OctoPrint restarted?)",
                    file_name=before[0],
                    file_path=before[1],
                )
        self._snapshot = snapshot
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self._snapshot_listeners:
            try:
                listener(snapshot)
            except Exception:
                _LOGGER.exception("%r: snapshot listener failed", self)

    def _set_link(
        self, up: bool, reason: str, *, emit: bool = True, level: int = logging.WARNING
    ) -> None:
        if up == self._link_up:
            return
        self._link_up = up
        self._link_since = time.monotonic() if up else None
        if up:
            _LOGGER.info("%r: following (%s)", self, reason)
        else:
            _LOGGER.log(level, "%r: link down: %s", self, reason)
            # A job the snapshot shows, or one whose PrintStarted came before any
            # snapshot showed it (the link broke right after the start).
            snap, started = self._snapshot, self._started
            if snap.job_active:
                self._job_before_outage = (snap.file_name, snap.file_path)
            elif started is not None:
                self._job_before_outage = (started.file_name, started.file_path)
            self._replace(snap.with_link(False))
        if emit:
            self._emit_own(JobEventKind.LINK_UP if up else JobEventKind.LINK_DOWN, reason=reason)

    def _emit_own(
        self,
        kind: JobEventKind,
        *,
        reason: str,
        file_name: str | None = None,
        file_path: str | None = None,
    ) -> None:
        self._emit(
            JobEvent(
                kind=kind,
                at=datetime.now(UTC),
                monotonic_s=time.monotonic(),
                reason=reason,
                file_name=file_name,
                file_path=file_path,
            )
        )

    def _emit(self, event: JobEvent) -> None:
        for stream in list(self._streams):
            stream._put(event)
        for listener in self._event_listeners:
            try:
                listener(event)
            except Exception:
                _LOGGER.exception("%r: on_event callback failed for %s", self, event.kind)


def _decode(raw: str | bytes) -> dict[str, Any]:
    """One push frame: a JSON object ``{"<type>": payload}``."""
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DeviceProtocolError(f"push message is not JSON: {raw[:80]!r}") from err
    if not isinstance(message, dict):
        raise DeviceProtocolError(f"push message is not an object: {raw[:80]!r}")
    return message
