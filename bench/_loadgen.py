"""Load-generator worker of the decision benchmark (one OS process per worker).

Each worker owns a slice of the simulated edges, one paho-mqtt client (one TCP
connection, one client id) per edge, and drives all of them from a single
``selectors`` loop with paho's external-loop API (``loop_read``/``loop_write``/
``loop_misc``): no paho thread, no GIL contention between clients, and a publish is
written to the socket the moment it is made, so the time stamped just before it is
the time the request leaves.

The orchestrator talks to a worker over a :mod:`multiprocessing` pipe whose end is
watched by the same selector:

* worker → parent: ``("ready", info)`` once every edge is connected and subscribed,
  then ``("result", dict)`` after each phase, or ``("error", traceback)``;
* parent → worker: ``("prime", params)``, ``("steady", params)``, ``("saturate",
  params)``, ``("stop", {})``.

Round trip = from just before ``publish()`` of an :class:`~protocol.AccessRequest`
on the edge's ``req/access`` to the receipt of the :class:`~protocol.AccessDecision`
with the same ``req_id`` on that edge's own ``cmd/access``. Requests are QoS 1 like
the contract, telemetry QoS 0. Payloads are produced from templates that are checked
once against the contract's models (so the generator spends its CPU on MQTT, not on
pydantic); every decision of the priming phase is fully validated.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import json
import os
import random
import secrets
import selectors
import signal
import socket
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.errors import PayloadError
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    Availability,
    EdgeStatus,
    EndReason,
    MachineState,
    SessionEnded,
    SessionEndedBody,
    SessionStarted,
    SessionStartedBody,
    Telemetry,
    decode,
    encode,
)
from protocol.topics import Topics

#: A request not answered within this many seconds is a timeout.
TIMEOUT_S = 2.0
#: Longest a worker waits for its edges to connect and subscribe.
CONNECT_TIMEOUT_S = 30.0
#: A worker left without orders this long exits on its own.
IDLE_LIMIT_S = 900.0
#: Hard cap on any phase beyond its nominal end (drain + margin).
PHASE_MARGIN_S = TIMEOUT_S + 3.0

_REQ = '{"v":1,"req_id":"%s","edge":"%s","machine":"%s","badge":"%s","ts":"%s"}'
_TELE = (
    '{"v":1,"machine":"%s","ts":"%s","values":'
    '{"nozzle_c":%.1f,"bed_c":60.0,"progress":%.3f,"power_w":%.1f}}'
)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def request_payload(req_id: str, edge: str, machine: str, badge: str) -> bytes:
    """An AccessRequest as JSON bytes, without pydantic (checked by :func:`check_templates`)."""
    return (_REQ % (req_id, edge, machine, badge, _iso_now())).encode()


def telemetry_payload(machine: str, n: int) -> bytes:
    """A Telemetry message as JSON bytes (printer-like values that change every message)."""
    return (
        _TELE % (machine, _iso_now(), 200.0 + n % 17, (n % 1000) / 1000, 80.0 + n % 40)
    ).encode()


def check_templates() -> None:
    """Fail fast if the hand-written payloads stopped matching the contract's models."""
    decode(AccessRequest, request_payload("r-1", "e-000", "m-000", "a" * 64))
    decode(Telemetry, telemetry_payload("m-000", 7))


class FastClient(mqtt.Client):
    """A paho client that makes fewer system calls, so the generator leaves the CPU to the hub.

    paho reads every packet with 3-4 ``recv`` calls (type byte, each length byte, body)
    and writes every packet with its own ``send``. On a 2-core machine shared with the
    hub and the broker, those system calls (and the loopback TCP work they trigger) are
    most of the generator's cost. This subclass keeps paho's protocol handling but

    * reads up to 64 KiB per ``recv`` and serves paho's small reads from that buffer
      (the caller drains it: :meth:`buffered`), and
    * appends writes to a buffer sent in one ``send`` per loop iteration (:meth:`flush`),
      so the requests and PUBACKs of one iteration share a TCP segment.

    ``_sock_recv``/``_sock_send`` are paho 2.x internals; they are overridden with the
    same contract (bytes or ``BlockingIOError``; the count of bytes taken).
    """

    def __init__(self, *args: Any, on_dirty: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self._on_dirty = on_dirty
        #: Write straight through (used for the final DISCONNECT, which closes the socket).
        self.direct = False

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            if self._sock is None:
                raise ConnectionError("socket closed")
            data = self._sock.recv(65536)  # BlockingIOError when empty: paho waits
            if not data:
                return data  # EOF: paho reports the lost connection
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def buffered(self) -> bool:
        """Whether received bytes wait in the buffer (call ``loop_read`` again)."""
        return self._rpos < len(self._rbuf)

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("socket closed")
        if self.direct:
            self.flush()
            return int(self._sock.send(buf))
        self._wbuf += buf
        if self._on_dirty is not None:
            self._on_dirty(self)
        return len(buf)

    def flush(self) -> bool:
        """Send the buffered writes; True when nothing is left (False: try again later)."""
        if not self._wbuf:
            return True
        if self._sock is None:
            self._wbuf.clear()
            return True
        try:
            sent = self._sock.send(self._wbuf)
        except BlockingIOError:
            return False
        except OSError:
            self._wbuf.clear()  # connection gone; paho notices on its next read
            return True
        del self._wbuf[:sent]
        return not self._wbuf


@dataclass
class Edge:
    """One simulated edge: its ids, topics and MQTT connection."""

    idx: int
    edge: str
    machine: str
    client: FastClient
    req_topic: str
    cmd_topic: str
    tele_topic: str
    evt_topic: str
    #: The badge this edge's "regular" member uses (repeated grants without journaling).
    owner_badge: str
    connected: bool = False
    subscribed: bool = False
    #: Journal sequence number of the last event sent (the hub requires no gaps).
    seq: int = 0


@dataclass
class Pending:
    """A request in flight."""

    t_send: float
    edge: int
    measured: bool
    known: bool
    badge: str


@dataclass
class PhaseStats:
    """Counters and samples of one phase, in one worker."""

    rtts_ms: list[float] = field(default_factory=list)
    #: How late scheduled requests left (ms): the generator's own responsiveness.
    lags_ms: list[float] = field(default_factory=list)
    sent: int = 0
    sent_measured: int = 0
    answered_measured: int = 0
    granted: int = 0
    denied: int = 0
    timeouts: int = 0
    timeouts_total: int = 0
    late: int = 0
    misrouted: int = 0
    invalid: int = 0
    unexpected: int = 0
    tele_sent: int = 0
    tele_behind: int = 0
    journal_sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["codes"] = dict(self.codes)
        return d


class Worker:
    """The event loop of one load-generator process."""

    def __init__(self, conn: Connection, wid: int, cfg: dict[str, Any]) -> None:
        self.conn = conn
        self.wid = wid
        self.cfg = cfg
        self.rng = random.Random(cfg.get("seed", 0) * 1000 + wid)
        self.nonce = secrets.token_hex(3)
        self.counter = 0
        self.known: list[str] = list(cfg["known_badges"])
        self.unknown_share: float = cfg["unknown_share"]
        self.sel = selectors.DefaultSelector()
        self.edges: list[Edge] = []
        self.inbox: list[tuple[int, str, bytes, float]] = []
        self.pending: dict[str, Pending] = {}
        #: Open sessions to end: (due, edge index, session id, started monotonic).
        self.sessions: list[tuple[float, int, str, float]] = []
        self.needs_write: set[int] = set()
        self.last_misc = 0.0
        self.stop_requested = False
        self.parent_pid = os.getppid()
        self.epoch = int(time.time())

    # ------------------------------------------------------------------ MQTT plumbing

    def _on_message(self, _c: mqtt.Client, idx: int, msg: mqtt.MQTTMessage) -> None:
        self.inbox.append((idx, msg.topic, bytes(msg.payload), time.monotonic()))

    @staticmethod
    def _on_socket_open(_c: mqtt.Client, _u: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _make_client(self, idx: int, edge: str, machine: str, epoch: int) -> Edge:
        topics = Topics(self.cfg["site"])
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{edge}",
            userdata=idx,
            clean_session=True,
            on_dirty=lambda _c: self.needs_write.add(idx),
        )
        client.max_inflight_messages_set(max(100, 2 * int(self.cfg.get("window", 16))))
        client.max_queued_messages_set(0)
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        e = Edge(
            idx,
            edge,
            machine,
            client,
            topics.req_access(edge),
            topics.cmd_access(edge),
            topics.tele(edge, machine),
            topics.evt(edge),
            self.cfg["owner_badges"][idx],
        )

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            e.connected = not rc.is_failure

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, _rcs: Any, _p: Any) -> None:
            e.subscribed = True

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        offline = EdgeStatus(online=False, epoch=epoch, version="bench", machines=(machine,))
        client.will_set(topics.edge_status(edge), encode(offline), qos=1, retain=True)
        return e

    def _publish(self, e: Edge, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        e.client.publish(topic, payload, qos=qos, retain=retain)
        if e.client.want_write():  # paho kept it (e.g. inside a callback): write it out
            e.client.loop_write()

    def _flush_writes(self) -> None:
        """Send what every client buffered during this loop iteration (one send each)."""
        for idx in list(self.needs_write):
            c = self.edges[idx].client
            if c.want_write():
                c.loop_write()
            if c.flush():
                self.needs_write.discard(idx)

    def _read(self, idx: int) -> None:
        """Process everything readable on one client (its buffer included, bounded)."""
        c = self.edges[idx].client
        c.loop_read()
        for _ in range(100_000):
            if not c.buffered():
                break
            c.loop_read()

    def _misc(self, now: float) -> None:
        if now - self.last_misc >= 1.0:
            self.last_misc = now
            for e in self.edges:
                e.client.loop_misc()
            if os.getppid() != self.parent_pid:
                raise SystemExit("orchestrator vanished")

    def _poll(self, timeout: float) -> None:
        """Send what is buffered, wait up to ``timeout`` s for input, process it, send again."""
        self._flush_writes()
        if self.needs_write:  # the kernel buffer was full: come back soon
            timeout = min(timeout, 0.001)
        for key, _ev in self.sel.select(max(0.0, timeout)):
            if key.data is None:
                self._command_during_phase()
            else:
                self._read(key.data)
        self._flush_writes()

    def _command_during_phase(self) -> None:
        try:
            msg = self.conn.recv()
        except EOFError:
            self.stop_requested = True
            return
        if msg[0] == "stop":
            self.stop_requested = True

    def connect_all(self) -> None:
        """Connect, subscribe and announce every edge; bounded by CONNECT_TIMEOUT_S."""
        epoch = self.epoch
        port = int(self.cfg["port"])
        for idx, (edge, machine) in enumerate(
            zip(self.cfg["edges"], self.cfg["machines"], strict=True)
        ):  # bounded: this worker's slice of the edges
            e = self._make_client(idx, edge, machine, epoch)
            self.edges.append(e)
            e.client.connect("127.0.0.1", port, keepalive=60)
            sock = e.client.socket()
            assert sock is not None
            self.sel.register(sock, selectors.EVENT_READ, idx)
        self.sel.register(self.conn, selectors.EVENT_READ, None)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not all(e.connected for e in self.edges):
            if time.monotonic() > deadline:
                raise TimeoutError("edges did not all connect")
            self._poll(0.05)
        for e in self.edges:
            e.client.subscribe(e.cmd_topic, qos=1)
        self._flush_writes()
        while not all(e.subscribed for e in self.edges):
            if time.monotonic() > deadline:
                raise TimeoutError("edges did not all subscribe")
            self._poll(0.05)
        topics = Topics(self.cfg["site"])
        for e in self.edges:
            status = EdgeStatus(
                online=True,
                epoch=epoch,
                version="bench",
                machines=(e.machine,),
                ts=datetime.now(UTC),
            )
            self._publish(e, topics.edge_status(e.edge), encode(status), 1, retain=True)
            state = MachineState(
                machine=e.machine, availability=Availability.FREE, ts=datetime.now(UTC)
            )
            self._publish(e, topics.state(e.edge, e.machine), encode(state), 1, retain=True)
        self.inbox.clear()

    def disconnect_all(self) -> None:
        """Announce every edge offline (retained, like a clean shutdown) and disconnect."""
        topics = Topics(self.cfg["site"])
        epoch = self.epoch
        for e in self.edges:
            try:
                e.client.direct = True
                if e.connected:
                    offline = EdgeStatus(
                        online=False, epoch=epoch, version="bench", machines=(e.machine,)
                    )
                    e.client.publish(topics.edge_status(e.edge), encode(offline), 1, retain=True)
                    e.client.disconnect()
                    e.client.loop_write()
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------------ requests

    def _send_request(
        self, e: Edge, now_measured: bool, stats: PhaseStats, owner: bool = False
    ) -> None:
        """Publish one AccessRequest: a known badge (random member, or the edge's
        regular member when ``owner``) or, for ``unknown_share`` of them, an unknown one."""
        self.counter += 1
        req_id = f"w{self.wid}-{self.nonce}-{self.counter:x}"
        known = self.rng.random() >= self.unknown_share or not self.known
        if not known:
            badge = secrets.token_hex(32)
        elif owner:
            badge = e.owner_badge
        else:
            badge = self.rng.choice(self.known)
        payload = request_payload(req_id, e.edge, e.machine, badge)
        t = time.monotonic()
        self.pending[req_id] = Pending(t, e.idx, now_measured, known, badge)
        self._publish(e, e.req_topic, payload, 1)
        stats.sent += 1
        if now_measured:
            stats.sent_measured += 1

    def _handle_inbox(
        self, stats: PhaseStats, validate: bool, journal: float | None = None
    ) -> list[int]:
        """Match decisions to requests; return the edge indices that got an answer.

        With ``journal`` (seconds), every grant is journaled like a real edge does:
        ``session_started`` at once, ``session_ended`` ``journal`` seconds later.
        """
        answered: list[int] = []
        inbox, self.inbox = self.inbox, []
        for idx, topic, payload, t_recv in inbox:
            try:
                if validate:
                    d = decode(AccessDecision, payload)
                    req_id, granted, code = d.req_id, d.granted, d.code
                    session_id = d.session_id
                else:
                    obj = json.loads(payload)
                    req_id, granted, code = obj["req_id"], bool(obj["granted"]), str(obj["code"])
                    session_id = obj.get("session_id")
            except (PayloadError, ValueError, KeyError, TypeError):
                stats.invalid += 1
                continue
            p = self.pending.pop(req_id, None)
            if p is None:
                stats.late += 1
                continue
            if p.edge != idx or topic != self.edges[idx].cmd_topic:
                stats.misrouted += 1
            if granted:
                stats.granted += 1
            else:
                stats.denied += 1
            if granted != p.known:
                stats.unexpected += 1
            stats.codes[code] += 1
            if p.measured:
                stats.answered_measured += 1
                stats.rtts_ms.append((t_recv - p.t_send) * 1000.0)
            answered.append(p.edge)
            if journal is not None and granted and session_id:
                self._session_started(self.edges[p.edge], session_id, p.badge, req_id, stats)
                heapq.heappush(
                    self.sessions, (t_recv + journal, p.edge, session_id, time.monotonic())
                )
        return answered

    # ------------------------------------------------------------------ journal

    def _event_id(self) -> str:
        self.counter += 1
        return f"ev{self.wid}-{self.nonce}-{self.counter:x}"

    def _session_started(
        self, e: Edge, session_id: str, badge: str, req_id: str, stats: PhaseStats
    ) -> None:
        now = datetime.now(UTC)
        e.seq += 1
        event = SessionStarted(
            edge=e.edge,
            seq=e.seq,
            event_id=self._event_id(),
            epoch=self.epoch,
            ts=now,
            body=SessionStartedBody(
                session_id=session_id,
                machine=e.machine,
                badge=badge,
                req_id=req_id,
                started_at=now,
                ends_at=now + timedelta(hours=1),
            ),
        )
        self._publish(e, e.evt_topic, encode(event), 1)
        stats.journal_sent += 1

    def _end_sessions(self, now: float, stats: PhaseStats) -> None:
        """Journal ``session_ended`` for every session due by ``now``."""
        while self.sessions and self.sessions[0][0] <= now:
            _due, idx, session_id, started = heapq.heappop(self.sessions)
            e = self.edges[idx]
            e.seq += 1
            event = SessionEnded(
                edge=e.edge,
                seq=e.seq,
                event_id=self._event_id(),
                epoch=self.epoch,
                ts=datetime.now(UTC),
                body=SessionEndedBody(
                    session_id=session_id,
                    machine=e.machine,
                    reason=EndReason.BADGE_OUT,
                    duration_s=max(0.0, time.monotonic() - started),
                    ended_at=datetime.now(UTC),
                ),
            )
            self._publish(e, e.evt_topic, encode(event), 1)
            stats.journal_sent += 1

    def _sweep(self, now: float, stats: PhaseStats) -> list[int]:
        """Count requests older than TIMEOUT_S as timeouts; return their edges."""
        expired = [(k, p) for k, p in self.pending.items() if now - p.t_send > TIMEOUT_S]
        for k, p in expired:
            del self.pending[k]
            stats.timeouts_total += 1
            if p.measured:
                stats.timeouts += 1
        return [p.edge for _, p in expired]

    # ------------------------------------------------------------------ phases

    def prime(self, params: dict[str, Any]) -> dict[str, Any]:
        """One request per edge, fully validated: warms the hub, checks the setup.

        Grants are journaled (and ended at once) only when the steady phase journals.
        """
        stats = PhaseStats()
        self.pending.clear()
        for e in self.edges:
            self._send_request(e, True, stats, owner=True)
        deadline = time.monotonic() + float(params.get("timeout", 10.0))
        while self.pending and time.monotonic() < deadline and not self.stop_requested:
            self._poll(0.02)
            self._handle_inbox(stats, validate=True, journal=params.get("journal"))
            self._misc(time.monotonic())
        self._end_sessions(float("inf"), stats)
        stats.timeouts = stats.timeouts_total = len(self.pending)
        self.pending.clear()
        return stats.as_dict()

    def steady(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every edge badges about ``rate`` times a second; telemetry at ``tele`` msg/s."""
        stats = PhaseStats()
        self.pending.clear()
        t0 = float(params["t0"])
        measure_from = t0 + float(params["warmup"])
        send_until = measure_from + float(params["duration"])
        period = 1.0 / float(params["rate"])
        tele_rate = float(params["tele"])
        journal: float | None = params.get("journal")
        owner = journal is None  # without a journal, repeat grants need the same member
        heap = [(t0 + self.rng.random() * period, e.idx) for e in self.edges]
        heapq.heapify(heap)
        tele_next = t0 if tele_rate > 0 else float("inf")
        tele_n = 0
        next_sweep = t0 + 0.1
        hard_end = send_until + PHASE_MARGIN_S
        while time.monotonic() < t0 and not self.stop_requested:
            self._poll(min(0.05, t0 - time.monotonic()))
            self.inbox.clear()
        while not self.stop_requested:
            now = time.monotonic()
            if now >= hard_end or (now >= send_until and not self.pending):
                break
            while heap and heap[0][0] <= now:
                due, idx = heapq.heappop(heap)
                if due >= send_until:
                    continue
                self._send_request(self.edges[idx], due >= measure_from, stats, owner)
                if due >= measure_from:
                    stats.lags_ms.append((now - due) * 1000.0)
                heapq.heappush(heap, (due + period * self.rng.uniform(0.8, 1.2), idx))
            if tele_next < now - 1.0:  # more than a second behind: do not burst
                stats.tele_behind += int((now - tele_next) * tele_rate)
                tele_next = now
            while tele_next <= now and tele_next < send_until:
                e = self.edges[tele_n % len(self.edges)]
                self._publish(e, e.tele_topic, telemetry_payload(e.machine, tele_n), 0)
                tele_n += 1
                stats.tele_sent += 1
                tele_next += 1.0 / tele_rate
            self._end_sessions(now, stats)
            if now >= next_sweep:
                self._sweep(now, stats)
                next_sweep = now + 0.1
            self._misc(now)
            wake = min(heap[0][0] if heap else hard_end, tele_next, next_sweep, hard_end)
            if self.sessions:
                wake = min(wake, self.sessions[0][0])
            self._poll(min(0.05, wake - time.monotonic()))
            self._handle_inbox(stats, validate=False, journal=journal)
        self._sweep(float("inf"), stats)
        self._end_sessions(float("inf"), stats)  # leave every machine free
        return stats.as_dict()

    def saturate(self, params: dict[str, Any]) -> dict[str, Any]:
        """A few edges keep ``window`` requests in flight each, as fast as answers come."""
        stats = PhaseStats()
        self.pending.clear()
        conns = [self.edges[i] for i in params["conns"]]
        window = int(params["window"])
        t0 = float(params["t0"])
        measure_from = t0 + float(params["warmup"])
        send_until = measure_from + float(params["duration"])
        hard_end = send_until + PHASE_MARGIN_S
        if not conns:
            return stats.as_dict()
        while time.monotonic() < t0 and not self.stop_requested:
            self._poll(min(0.05, t0 - time.monotonic()))
            self.inbox.clear()
        now = time.monotonic()
        for e in conns:
            for _ in range(window):
                self._send_request(e, now >= measure_from, stats, owner=True)
        next_sweep = now + 0.1
        while not self.stop_requested:
            now = time.monotonic()
            if now >= hard_end or (now >= send_until and not self.pending):
                break
            self._poll(min(0.01, next_sweep - now))
            answered = self._handle_inbox(stats, validate=False)
            now = time.monotonic()
            if now >= next_sweep:
                answered += self._sweep(now, stats)
                next_sweep = now + 0.1
            if now < send_until:
                measured = now >= measure_from
                for idx in answered:
                    self._send_request(self.edges[idx], measured, stats, owner=True)
            self._misc(now)
        self._sweep(float("inf"), stats)
        return stats.as_dict()

    # ------------------------------------------------------------------ main loop

    def serve(self) -> None:
        """Connect, report ready, then obey the parent until told to stop."""
        check_templates()
        self.connect_all()
        self.conn.send(("ready", {"edges": len(self.edges), "pid": os.getpid()}))
        idle_since = time.monotonic()
        phases = {"prime": self.prime, "steady": self.steady, "saturate": self.saturate}
        while not self.stop_requested:
            if time.monotonic() - idle_since > IDLE_LIMIT_S:
                break
            command: tuple[str, dict[str, Any]] | None = None
            self._flush_writes()
            for key, _ev in self.sel.select(0.5):
                if key.data is None:
                    try:
                        command = self.conn.recv()
                    except EOFError:
                        self.stop_requested = True
                else:
                    self._read(key.data)
            self._flush_writes()
            self.inbox.clear()
            self._misc(time.monotonic())
            if command is None:
                continue
            name, params = command
            if name == "stop":
                break
            t = time.monotonic()
            gc.collect()
            gc.disable()  # no collector pauses inside a measured phase
            try:
                result = phases[name](params)
            finally:
                gc.enable()
            result["worker"] = self.wid
            result["phase_s"] = time.monotonic() - t
            self.conn.send(("result", result))
            idle_since = time.monotonic()


def worker_main(conn: Connection, wid: int, cfg: dict[str, Any]) -> None:
    """Entry point of a worker process (multiprocessing target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C
    worker = Worker(conn, wid, cfg)
    try:
        worker.serve()
    except (BrokenPipeError, EOFError, SystemExit):
        pass  # the orchestrator is gone: nobody to report to, just clean up
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        worker.disconnect_all()
        conn.close()
