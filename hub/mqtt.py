"""The hub's MQTT connection: the only module of :mod:`hub` that imports paho.

:class:`HubMqtt` owns one paho-mqtt 2.x client (DESIGN §5.2, one owner per
connection) and turns the broker's traffic into typed calls on a
:class:`HubHandlers` object:

* **last will**: a retained ``HubStatus(online=False)`` on ``hub/status`` (QoS 1), so
  edges switch to their offline policy when the hub dies;
* **persistent session**: MQTT 3.1.1 (the embedded demo broker speaks nothing
  newer) with ``clean_session=False`` and a stable client id, so journal events
  published while the hub restarts wait in the broker;
* **subscribe first, then announce**: on every (re)connect the hub subscribes to
  ``req/access``, ``evt``, ``status``, ``state/+`` and ``tele/+`` of every edge, then
  publishes a retained ``HubStatus(online=True)`` (the Sparkplug order);
* **TCP_NODELAY** on the socket as soon as paho opens it: badge replies are small
  packets, and Nagle's algorithm would hold each one back 40-80 ms waiting for the
  broker's delayed ACK (the broker needs ``set_tcp_nodelay true`` as well);
* **flood control**: each edge's messages go through its token bucket for their kind
  (:class:`hub.throttle.EdgeThrottle`) before they are decoded; what finds the bucket
  empty is dropped and counted (``throttled``);
* **bad input never stops the loop**: every payload goes through
  :func:`protocol.decode` / :func:`protocol.decode_event`; any
  :class:`~protocol.errors.ProtocolError` or handler exception is counted by reason
  in :class:`~hub.metrics.Metrics` (``bad_messages``), logged through a rate-limited
  WARNING, and the next message is served as usual.

Reconnection is paho's own loop (``connect_async`` + ``loop_start`` with
``reconnect_delay_set``), which retries with exponential back-off until
:meth:`HubMqtt.stop`.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hub.metrics import Metrics, RateLimitedLog
from hub.settings import HubSettings
from hub.throttle import EdgeThrottle
from protocol.contract import CONTRACT, Direction, spec
from protocol.errors import MalformedPayload, ProtocolError
from protocol.ids import is_ident
from protocol.messages import (
    MAX_PAYLOAD,
    AccessRequest,
    CommandOutcome,
    EdgeStatus,
    Event,
    HubStatus,
    MachineState,
    Message,
    decode,
    decode_event,
    encode,
    utcnow,
)
from protocol.topics import Kind, Topics, parse_topic

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)


#: (topic kind, QoS) the hub subscribes to for every edge of its site.
#: What the hub reads from every edge, at the contract's QoS (:mod:`protocol.contract`).
SUBSCRIPTIONS: tuple[tuple[Kind, int], ...] = tuple(
    (row.kind, row.qos) for row in CONTRACT if row.direction is Direction.EDGE_TO_HUB
)

#: What the second connection carries when there is one (``mqtt_telemetry_connection``):
#: telemetry, most of the traffic, and journal events — QoS 1 messages an edge may send
#: by thousands, whose PUBACKs and in-flight window must not queue a badge request behind
#: them (an events flood from one edge held the others' decisions ~0.6 s at p99 when
#: they shared the decision connection; 12 ms apart, ``bench/flood.py``).
BULK_KINDS: tuple[Kind, ...] = (Kind.EVT, Kind.TELE)


#: The token bucket (:data:`hub.throttle.KINDS`) of each kind of topic an edge sends.
_BUCKETS: dict[Kind, str] = {
    Kind.REQ_ACCESS: "req",
    Kind.EVT: "evt",
    Kind.EDGE_STATUS: "status",
    Kind.STATE: "state",
    Kind.TELE: "tele",
}


class MismatchError(ProtocolError):
    """The body names another edge or machine than the topic it came on.

    An edge may only speak for itself (the broker's ACL enforces the topic, the hub
    enforces the body), so such a message is dropped whatever else it says.
    """

    reason = "edge_mismatch"


class HubHandlers(Protocol):
    """What the hub service does with the decoded traffic (called in paho's thread)."""

    def on_connected(self) -> None:
        """The connection is up, subscriptions sent and online status published."""

    def on_access_request(self, edge: str, request: AccessRequest, received: float) -> None:
        """A badge request; ``received`` is ``time.perf_counter()`` at receipt."""

    def on_event(self, edge: str, event: Event) -> None:
        """A journal event (possibly a duplicate or a replay)."""

    def on_edge_status(self, edge: str, status: EdgeStatus) -> None:
        """An edge's retained status (online, or its last will)."""

    def on_machine_state(self, edge: str, machine: str, state: MachineState | None) -> None:
        """A machine's retained state; None when the retained state was cleared."""

    def on_command_outcome(self, edge: str, outcome: CommandOutcome) -> None:
        """An edge answered a command (``outcome``)."""

    def on_telemetry(self, edge: str, machine: str, payload: bytes) -> None:
        """Raw telemetry of a machine (never used for metering), validated when read.

        Telemetry is most of the traffic (thousands of messages a second) and nobody
        reads most of it: decoding each one on the network thread would take CPU
        from the badge answers. Readers decode the latest payload per machine.
        """


#: Bytes asked of the socket per read: a burst of small packets in one system call.
READ_CHUNK = 16384


class _BufferedClient(paho.Client):
    """paho's client with fewer system calls and less work per incoming packet.

    paho reads a packet with three ``recv`` calls (command byte, length, body) and
    returns to ``select`` after each packet once nothing is in flight (the answers are
    QoS 0): at a few thousand messages a second that per-packet Python was most of the
    hub's CPU (issue 15). Here the socket is read :data:`READ_CHUNK` bytes at a time
    into a buffer that paho's parser consumes, :meth:`loop_read` goes on until the
    buffer is empty (writing what the handlers queued between passes, so an answer does
    not wait for the whole chunk), and an incoming message goes straight to
    ``on_message`` (the hub registers no per-topic callbacks). paho's own parser,
    session and QoS handling are untouched.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            chunk = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing came
            if len(chunk) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return chunk  # also b"" (connection closed)
            self._rbuf, self._rpos = chunk, 0
        start = self._rpos
        self._rpos = end = min(len(self._rbuf), start + bufsize)
        return self._rbuf[start:end]

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            if self._out_packet:
                self.loop_write()
            rc = super().loop_read(max_packets)
        return rc

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        callback = self._on_message
        if callback is None:
            return
        try:
            callback(self, self._userdata, message)
        except Exception as err:
            self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
            if not self.suppress_exceptions:
                raise


def set_nodelay(sock: Any) -> bool:
    """Disable Nagle's algorithm on a TCP socket (also through an SSL wrapper)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as err:
        logger.warning("could not set TCP_NODELAY on the MQTT socket: %s", err)
        return False
    return True


class HubMqtt:
    """The hub's one MQTT client.

    The constructor only stores its arguments; :meth:`start` creates the client and
    connects in the background (reconnecting forever), :meth:`stop` announces the
    hub offline and disconnects.
    """

    def __init__(
        self,
        settings: HubSettings,
        handlers: HubHandlers,
        metrics: Metrics | None = None,
        *,
        version: str = "",
        throttle: EdgeThrottle | None = None,
    ) -> None:
        self.settings = settings
        self._throttle = throttle
        self.topics = Topics(settings.site)
        self._edge_prefix = f"{self.topics.root}/edge/"
        self.metrics = metrics or Metrics()
        self._handlers = handlers
        self._version = version
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._subscriptions: list[tuple[Kind, int]] = list(SUBSCRIPTIONS)
        self._tele_client: _BufferedClient | None = None
        self._tele_ready = threading.Event()
        #: The decision connection's SUBACK arrived (cleared when it drops).
        self._main_subscribed = threading.Event()
        self._announce_lock = threading.Lock()
        self._last_connect_error: OSError | None = None

    @property
    def client_id(self) -> str:
        """Stable across restarts, so that the broker keeps the hub's session."""
        return self.settings.mqtt_client_id or f"fabrique-hub-{self.settings.site}"

    # ------------------------------------------------------------------ lifecycle

    def _new_client(self, client_id: str, *, clean_session: bool) -> _BufferedClient:
        """A configured client (credentials, TLS, TCP_NODELAY, queues), not connected."""
        s = self.settings
        client = _BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.suppress_exceptions = True
        if s.mqtt_username:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            client.username_pw_set(s.mqtt_username, password)
        if s.mqtt_tls:
            client.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client.max_inflight_messages_set(50)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_socket_open = self._on_socket_open
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Create the client(s) and connect in the background (paho's own threads)."""
        if self._client is not None:
            return
        s = self.settings
        client = self._new_client(self.client_id, clean_session=False)
        client.will_set(
            self.topics.hub_status(),
            encode(HubStatus(online=False, ts=utcnow(), version=self._version)),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._stopping = False
        if s.mqtt_telemetry_connection:
            self._subscriptions = [k for k in SUBSCRIPTIONS if k[0] not in BULK_KINDS]
            # Persistent too: journal events published while the hub restarts wait here.
            tele = self._new_client(f"{self.client_id}-tele", clean_session=False)
            tele.on_connect = self._on_tele_connect
            tele.on_subscribe = self._on_tele_subscribe
            tele.on_disconnect = self._on_tele_disconnect
            self._tele_client = tele
            tele.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
            tele.loop_start()
        else:
            self._subscriptions = list(SUBSCRIPTIONS)
            self._tele_ready.set()
        client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        client.loop_start()
        logger.info("MQTT: connecting to %s:%d as %s", s.mqtt_host, s.mqtt_port, self.client_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``hub/status`` offline (retained), disconnect and stop the loop."""
        client = self._client
        if client is None:
            return
        self._stopping = True
        if self._connected.is_set():
            info = client.publish(
                self.topics.hub_status(),
                encode(HubStatus(online=False, ts=utcnow(), version=self._version)),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as err:
                logger.warning("MQTT: offline status not confirmed: %s", err)
        client.disconnect()
        client.loop_stop()
        tele, self._tele_client = self._tele_client, None
        if tele is not None:
            tele.disconnect()
            tele.loop_stop()
        self._connected.clear()
        self._tele_ready.clear()
        self._main_subscribed.clear()
        self._client = None
        logger.info("MQTT: stopped")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected, subscribed (SUBACK) and announced online, or ``timeout``.

        With the telemetry connection, until it is subscribed as well.
        """
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self._tele_ready.wait(
            max(0.0, deadline - time.monotonic())
        )

    def socket(self) -> Any:
        """The client's live socket (tests check its options), or None."""
        return self._client.socket() if self._client is not None else None

    # ------------------------------------------------------------------ publishing

    def publish(self, topic: str, message: Message, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish one message; False (and counted) if paho refused it.

        While disconnected, QoS 1 messages are queued by paho and sent on reconnect.
        """
        client = self._client
        if client is None:
            self.metrics.inc("publish_failed", "not_started")
            return False
        info = client.publish(topic, encode(message), qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.metrics.inc("publish_failed", str(info.rc))
            _limited.warning("publish", "MQTT: publish on %s failed: %s", topic, info.rc)
            return False
        return True

    def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Publish raw bytes (an empty retained payload deletes a retained message)."""
        client = self._client
        if client is None:
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    def publish_paced(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0
    ) -> bool:
        """Publish a large QoS 1 payload and wait for the broker's PUBACK.

        Policy snapshots weigh up to megabytes: publishing hundreds at once would put
        them all in front of the badge answers in paho's outgoing queue. Sending one
        at a time keeps at most one of them ahead of any answer. Never call this from
        paho's own thread (it would wait for itself).
        """
        client = self._client
        if client is None:
            return False
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not connected: paho keeps the message and sends it after reconnecting.
            return info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            info.wait_for_publish(timeout)
            return info.is_published()
        except (RuntimeError, ValueError):
            return False

    # ------------------------------------------------------------------ paho callbacks

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        set_nodelay(sock)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.metrics.inc("mqtt_connect_refused", str(reason_code))
            _limited.warning("refused", "MQTT: connection refused: %s", reason_code)
            return
        result, mid = client.subscribe(
            [(self.topics.all_edges(kind), qos) for kind, qos in self._subscriptions]
        )
        self._subscribe_mid = mid if result == MQTTErrorCode.MQTT_ERR_SUCCESS else None
        self._last_connect_error = None
        logger.info("MQTT: connected (session present: %s)", flags.session_present)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            # Typically an ACL: the hub would be deaf to part of the site. Say it loudly.
            self.metrics.inc("mqtt_subscribe_refused")
            logger.error("MQTT: subscriptions refused by the broker: %s", refused)
        self._main_subscribed.set()
        self._announce_when_subscribed()

    def _announce_when_subscribed(self) -> None:
        """Subscribed first, announced second (Sparkplug order): edges that see the hub
        online and start replaying their journal are sure to be heard, on whichever
        connection carries their events; so once both connections are subscribed."""
        client = self._client
        with self._announce_lock:
            if (
                client is None
                or self._connected.is_set()
                or not self._main_subscribed.is_set()
                or not self._tele_ready.is_set()
            ):
                return
            self._announce(client)

    def _announce(self, client: paho.Client) -> None:
        client.publish(
            self.topics.hub_status(),
            encode(HubStatus(online=True, ts=utcnow(), version=self._version)),
            qos=1,
            retain=True,
        )
        self.metrics.inc("mqtt_connects")
        try:
            self._handlers.on_connected()
        except Exception:
            self.metrics.inc("handler_errors", "on_connected")
            logger.exception("MQTT: on_connected handler failed")
        self._connected.set()

    def _on_tele_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.metrics.inc("mqtt_connect_refused", f"tele:{reason_code}")
            _limited.warning("tele_refused", "MQTT: telemetry connection refused: %s", reason_code)
            return
        client.subscribe([(self.topics.all_edges(k), spec(k).qos) for k in BULK_KINDS])

    def _on_tele_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self.metrics.inc("mqtt_subscribe_refused")
            logger.error("MQTT: telemetry subscription refused by the broker: %s", reason_codes)
        self._tele_ready.set()
        self._announce_when_subscribed()

    def _on_tele_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._tele_ready.clear()
        if not self._stopping:
            self.metrics.inc("mqtt_disconnects")
            _limited.warning("tele_disconnect", "MQTT: telemetry connection lost (%s)", reason_code)

    @property
    def last_connect_error(self) -> OSError | None:
        """Why the last connection attempt failed (socket or TLS); None after a success."""
        return self._last_connect_error

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` and does not pass the error.
        err = sys.exc_info()[1]
        self._last_connect_error = err if isinstance(err, OSError) else None
        self.metrics.inc("mqtt_connect_failed")
        _limited.warning("connect_fail", "MQTT: cannot reach the broker; retrying")

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._main_subscribed.clear()
        if self._stopping:
            return
        self.metrics.inc("mqtt_disconnects")
        _limited.warning("disconnect", "MQTT: connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        received = time.perf_counter()
        topic = msg.topic
        try:
            self._dispatch(topic, bytes(msg.payload), received)
        except ProtocolError as err:
            self.metrics.inc("bad_messages", err.reason)
            _limited.warning(f"bad:{err.reason}", "dropping message on %s: %s", topic, err)
        except Exception as err:
            self.metrics.inc("bad_messages", "handler_error")
            _limited.warning(
                f"handler:{type(err).__name__}",
                "handler failed on %s: %s",
                topic,
                err,
                exc_info=True,
            )

    def _allow(self, edge: str, kind: str) -> bool:
        """The edge's token bucket for ``kind`` (:mod:`hub.throttle`); False: drop it."""
        throttle = self._throttle
        if throttle is None or throttle.allow(edge, kind):
            return True
        self.metrics.inc("throttled", kind)
        return False

    def _dispatch(self, topic: str, payload: bytes, received: float) -> None:
        if topic.startswith(self._edge_prefix):  # the hot telemetry path: no full parse
            parts = topic[len(self._edge_prefix) :].split("/")
            if len(parts) == 3 and parts[1] == "tele" and is_ident(parts[0]) and is_ident(parts[2]):
                self.metrics.inc("messages", "tele")
                if not self._allow(parts[0], "tele"):
                    return
                if len(payload) > MAX_PAYLOAD:
                    raise MalformedPayload(
                        f"telemetry of {len(payload)} bytes exceeds {MAX_PAYLOAD}"
                    )
                self._handlers.on_telemetry(parts[0], parts[2], payload)
                return
        parsed = parse_topic(topic)
        edge = parsed.edge
        if parsed.site != self.topics.site or edge is None:
            raise ProtocolError(
                f"topic {topic!r} is not an edge topic of this site", reason="topic"
            )
        kind = parsed.kind
        self.metrics.inc("messages", kind.value)
        bucket = _BUCKETS.get(kind)
        if bucket is not None and not self._allow(edge, bucket):
            return
        h = self._handlers
        if kind is Kind.REQ_ACCESS:
            request = decode(AccessRequest, payload)
            if request.edge != edge:
                raise MismatchError(f"request names edge {request.edge!r}, topic {edge!r}")
            h.on_access_request(edge, request, received)
        elif kind is Kind.EVT:
            event = decode_event(payload)
            if event.edge != edge:
                raise MismatchError(f"event names edge {event.edge!r}, topic {edge!r}")
            h.on_event(edge, event)
        elif kind is Kind.EDGE_STATUS:
            if not payload:
                return  # retained status cleared (edge decommissioned): nothing to apply
            h.on_edge_status(edge, decode(EdgeStatus, payload))
        elif kind is Kind.STATE:
            machine = parsed.machine or ""
            if not payload:
                h.on_machine_state(edge, machine, None)
                return
            state = decode(MachineState, payload)
            if state.machine != machine:
                raise MismatchError(f"state names machine {state.machine!r}, topic {machine!r}")
            h.on_machine_state(edge, machine, state)
        elif kind is Kind.OUTCOME:
            h.on_command_outcome(edge, decode(CommandOutcome, payload))
        else:
            raise ProtocolError(f"the hub does not consume {kind.value} messages", reason="topic")
