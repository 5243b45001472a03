"""The edge's MQTT link: the only module of ``edge/`` that imports paho (DESIGN §5.4).

One :class:`EdgeLink` per edge owns one MQTT connection and speaks the contract of
DESIGN §3 from the edge's side:

* before every connection attempt it takes a new **epoch** (``epoch_source``) and
  sets the last will ``EdgeStatus(online=False, epoch)`` (retained), so a late will
  of an older connection can never mark a newer one offline;
* once connected it subscribes to its own ``cmd/access``, ``cmd/journal``,
  ``cmd/session``, ``cmd/machine``, ``policy`` and to ``hub/status``, and only after
  the broker acknowledged the subscriptions publishes ``EdgeStatus(online=True)``
  (retained) and calls :meth:`LinkHandler.on_link_up`: the hub never answers an edge
  that cannot hear it yet;
* incoming payloads are decoded into protocol messages and handed to the handler
  (the agent's :class:`~edge.intake.Intake`, which checks each command's MAC and
  freshness); anything outside the contract is dropped and reported to the handler
  (:meth:`LinkHandler.on_bad_message`), whose count of rejected messages the status
  carries (republished when it moves: :meth:`EdgeLink.refresh_status`);
* paho reconnects by itself (``reconnect_min_s`` … ``reconnect_max_s``); the link
  publishes nothing while disconnected: the caller's journal resends events after
  :meth:`LinkHandler.on_link_up`, and stale access requests are worthless anyway.

Handler methods run on paho's network thread: they must be quick and hand work to
the caller's own thread (a queue), never block on the link.

The broker may speak MQTT 3.1.1 only (the demo's embedded amqtt broker), so the
protocol version is a setting (default 3.1.1, which Mosquitto speaks too).
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol.errors import ProtocolError
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    CommandOutcome,
    EdgeHealth,
    EdgeStatus,
    HubStatus,
    JournalCommand,
    MachineCommand,
    MachineState,
    Message,
    PolicySnapshot,
    SessionCommand,
    Telemetry,
    decode,
    encode,
    utcnow,
)
from protocol.topics import Kind, Topics, parse_topic

logger = logging.getLogger(__name__)

MqttProtocol = Literal["3.1.1", "5"]
#: Shortest time between two status republications for a changed rejection count (s).
STATUS_REFRESH_S = 5.0


class LinkError(Exception):
    """The link could not be set up (bad TLS file, unusable settings)."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Where and how one edge connects (built by the caller from its own settings)."""

    site: str
    edge: str
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 30
    protocol: MqttProtocol = "3.1.1"
    client_id: str | None = None
    #: Software version and machine ids announced in the retained status.
    version: str = ""
    machines: tuple[str, ...] = ()
    reconnect_min_s: int = 1
    reconnect_max_s: int = 10


class LinkHandler:
    """Receives what the link hears. Every method is a no-op here: override what you need.

    All methods are called on paho's network thread (see the module docstring).
    """

    def on_link_up(self) -> None:
        """Connected, subscribed, and the online status is published."""

    def on_link_down(self) -> None:
        """The connection was lost (paho is already trying to reconnect)."""

    def on_decision(self, decision: AccessDecision) -> None:
        """The hub answered an access request."""

    def on_journal(self, command: JournalCommand) -> None:
        """The hub acknowledged journal events or asked for a replay."""

    def on_session_command(self, command: SessionCommand) -> None:
        """Staff or the hub act on a running session."""

    def on_machine_command(self, command: MachineCommand) -> None:
        """Staff act on a machine (maintenance, pause, cancel…)."""

    def on_policy(self, snapshot: PolicySnapshot) -> None:
        """A new offline policy snapshot (not yet verified: check its signature)."""

    def on_hub_status(self, status: HubStatus) -> None:
        """The hub went online or offline."""

    def on_bad_message(self, kind: Kind, error: ProtocolError) -> None:
        """A payload on one of this edge's topics was dropped undecoded (too large, not
        the contract)."""

    def rejected_count(self) -> int:
        """Hub→edge messages dropped so far, announced on the edge's status."""
        return 0


def _counter_from(start: int) -> Callable[[], int]:
    counter = itertools.count(start)
    return lambda: next(counter)


class EdgeLink:
    """One edge's MQTT connection: last will, subscriptions, typed publish and receive.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with EdgeLink(settings, handler, epoch_source=journal.next_epoch) as link:
            link.request_access(request)
    """

    def __init__(
        self,
        settings: LinkSettings,
        handler: LinkHandler,
        *,
        epoch_source: Callable[[], int] | None = None,
    ) -> None:
        """Assign only; :meth:`start` connects.

        Args:
            settings: broker address, credentials, identity of the edge.
            handler: receives decoded messages (on paho's thread).
            epoch_source: called before every connection attempt for the new epoch;
                it should persist the value so epochs grow across restarts. The
                default counts from 1 in memory.
        """
        self._settings = settings
        self._handler = handler
        self._epoch_source = epoch_source or _counter_from(1)
        self._topics = Topics(settings.site)
        self._client: mqtt.Client | None = None
        self._last_connect_error: OSError | None = None
        self._lock = threading.Lock()
        self._epoch = 0
        self._sub_mid: int | None = None
        self._up = threading.Event()
        self._status_rejected = 0
        self._status_at = 0.0
        # Health counters (EdgeHealth on the online status); written on paho's thread.
        self._started = time.monotonic()
        self._connects = 0
        self._bad_messages = 0
        self._handler_errors = 0
        self._backlog = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def edge(self) -> str:
        """This link's edge id."""
        return self._settings.edge

    @property
    def topics(self) -> Topics:
        """The topic builder of this link's site."""
        return self._topics

    @property
    def epoch(self) -> int:
        """Epoch of the current (or last attempted) connection; 0 before the first."""
        return self._epoch

    @property
    def is_up(self) -> bool:
        """Connected and subscribed (the hub can talk to us)."""
        return self._up.is_set()

    def wait_up(self, timeout: float) -> bool:
        """Block until the link is up or ``timeout`` seconds passed; True when up."""
        return self._up.wait(timeout)

    def start(self) -> None:
        """Create the client and start connecting in the background (never blocks).

        Raises:
            LinkError: TLS was asked for and cannot be configured.
        """
        if self._client is not None:
            return
        s = self._settings
        v5 = s.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"fabrique-edge-{s.site}-{s.edge}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        if s.username:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise LinkError(f"cannot set up TLS for the MQTT link: {err}") from err
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.on_pre_connect = self._on_pre_connect
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        logger.info("edge %s: connecting to %s:%d (MQTT %s)", s.edge, s.host, s.port, s.protocol)
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say goodbye (retained offline status), disconnect and stop the network thread.

        A clean disconnect suppresses the last will, hence the explicit offline status.
        """
        client = self._client
        if client is None:
            return
        self._client = None
        if self._up.is_set():
            info = client.publish(
                self._topics.edge_status(self._settings.edge),
                encode(self._status(online=False, goodbye=True)),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                logger.debug("edge %s: offline status not confirmed", self._settings.edge)
        self._up.clear()
        client.disconnect()
        client.loop_stop()
        logger.info("edge %s: link stopped", self._settings.edge)

    def __enter__(self) -> EdgeLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ publish

    def request_access(self, request: AccessRequest) -> bool:
        """Send a badge request (QoS 1); False when the link is down."""
        return self._publish(self._topics.req_access(self.edge), request, qos=1)

    def send_event(self, event: Message) -> bool:
        """Publish one journal event on ``evt`` (QoS 1); False when the link is down.

        The caller's journal keeps the event until the hub's ``ack_through`` covers it.
        """
        return self._publish(self._topics.evt(self.edge), event, qos=1)

    def send_outcome(self, outcome: CommandOutcome) -> bool:
        """Answer a hub command on ``outcome`` (QoS 1); False when the link is down."""
        return self._publish(self._topics.outcome(self.edge), outcome, qos=1)

    def publish_state(self, state: MachineState) -> bool:
        """Publish a machine's retained availability snapshot (QoS 1)."""
        return self._publish(
            self._topics.state(self.edge, state.machine), state, qos=1, retain=True
        )

    def publish_tele(self, tele: Telemetry) -> bool:
        """Publish telemetry (QoS 0, never used for metering)."""
        return self._publish(self._topics.tele(self.edge, tele.machine), tele, qos=0)

    def publish_raw(self, topic: str, payload: bytes, *, qos: int = 1) -> bool:
        """Publish bytes outside the contract (a Tasmota plug's ``cmnd/…`` topic).

        Never retained; False when the link is down.
        """
        client = self._client
        if client is None or not self._up.is_set():
            return False
        return client.publish(topic, payload, qos=qos).rc == mqtt.MQTT_ERR_SUCCESS

    def refresh_status(self) -> None:
        """Publish the online status again if the count of rejected hub messages moved
        since the last one (at most every :data:`STATUS_REFRESH_S`; call it often)."""
        client = self._client
        if client is None or not self._up.is_set():
            return
        now = time.monotonic()
        if now - self._status_at < STATUS_REFRESH_S:
            return
        if self._handler.rejected_count() == self._status_rejected:
            return
        client.publish(
            self._topics.edge_status(self.edge),
            encode(self._status(online=True)),
            qos=1,
            retain=True,
        )

    def _publish(self, topic: str, message: Message, *, qos: int, retain: bool = False) -> bool:
        client = self._client
        if client is None or not self._up.is_set():
            return False
        info = client.publish(topic, encode(message), qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # ------------------------------------------------------------------ paho callbacks

    def health(self) -> EdgeHealth:
        """This edge's health counters now (sent on its online status)."""
        return EdgeHealth(
            uptime_s=int(time.monotonic() - self._started),
            connects=self._connects,
            journal_backlog=self._backlog,
            bad_messages=self._bad_messages,
            handler_errors=self._handler_errors,
        )

    def publish_health(self, journal_backlog: int) -> bool:
        """Republish the retained online status with fresh health counters (the agent
        calls this about once a minute); False when the link is down."""
        self._backlog = max(0, journal_backlog)
        return self._publish(
            self._topics.edge_status(self.edge), self._status(online=True), qos=1, retain=True
        )

    def _status(self, *, online: bool, goodbye: bool = False) -> EdgeStatus:
        s = self._settings
        self._status_rejected = self._handler.rejected_count()
        self._status_at = time.monotonic()
        return EdgeStatus(
            rejected=self._status_rejected,
            online=online,
            epoch=self._epoch,
            version=s.version,
            machines=s.machines,
            ts=utcnow(),
            goodbye=goodbye,
            health=self.health() if online else None,
        )

    def _on_pre_connect(self, client: mqtt.Client, _userdata: Any) -> None:
        self._epoch = self._epoch_source()
        client.will_set(
            self._topics.edge_status(self.edge),
            encode(self._status(online=False)),
            qos=1,
            retain=True,
        )
        logger.debug("edge %s: connection attempt with epoch %d", self.edge, self._epoch)

    @staticmethod
    def _on_socket_open(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Access decisions are tiny latency-bound messages: no Nagle delay.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            logger.debug("TCP_NODELAY not available on this socket")

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            logger.warning("edge %s: broker refused the connection: %s", self.edge, reason)
            return
        self._last_connect_error = None
        t = self._topics
        filters = [
            (t.cmd_access(self.edge), 1),
            (t.cmd_journal(self.edge), 1),
            (t.cmd_session(self.edge), 1),
            (t.cmd_machine(self.edge), 1),
            (t.policy(self.edge), 1),
            (t.hub_status(), 1),
        ]
        with self._lock:
            _rc, self._sub_mid = client.subscribe(filters)

    @property
    def last_connect_error(self) -> OSError | None:
        """Why the last connection attempt failed (socket or TLS), None once connected."""
        return self._last_connect_error

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` and does not pass the error.
        err = sys.exc_info()[1]
        self._last_connect_error = err if isinstance(err, OSError) else None
        logger.warning("edge %s: cannot connect to the broker: %s", self.edge, err)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Any,
    ) -> None:
        with self._lock:
            if mid != self._sub_mid:
                return
        refused = [r for r in reasons if r.is_failure]
        if refused:
            logger.error("edge %s: subscriptions refused by the broker: %s", self.edge, refused)
        self._connects += 1
        client.publish(
            self._topics.edge_status(self.edge),
            encode(self._status(online=True)),
            qos=1,
            retain=True,
        )
        self._up.set()
        logger.info("edge %s: link up (epoch %d)", self.edge, self._epoch)
        self._call(self._handler.on_link_up)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        was_up = self._up.is_set()
        self._up.clear()
        if was_up:
            logger.warning("edge %s: link down (%s)", self.edge, reason)
            self._call(self._handler.on_link_down)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return  # a cleared retained message
        h = self._handler
        payload = bytes(msg.payload)
        parsed = None
        try:
            parsed = parse_topic(msg.topic)
            if parsed.kind is not Kind.HUB_STATUS and parsed.edge != self.edge:
                raise ProtocolError(f"topic {msg.topic} is not for edge {self.edge}")
            match parsed.kind:
                case Kind.CMD_ACCESS:
                    self._call(h.on_decision, decode(AccessDecision, payload))
                case Kind.CMD_JOURNAL:
                    self._call(h.on_journal, decode(JournalCommand, payload))
                case Kind.CMD_SESSION:
                    self._call(h.on_session_command, decode(SessionCommand, payload))
                case Kind.CMD_MACHINE:
                    self._call(h.on_machine_command, decode(MachineCommand, payload))
                case Kind.POLICY:
                    self._call(h.on_policy, decode(PolicySnapshot, payload))
                case Kind.HUB_STATUS:
                    self._call(h.on_hub_status, decode(HubStatus, payload))
                case _:
                    raise ProtocolError(f"edges do not read {parsed.kind.value} topics")
        except ProtocolError as err:
            self._bad_messages += 1
            if parsed is not None and parsed.edge == self.edge:
                self._call(h.on_bad_message, parsed.kind, err)
            else:
                logger.warning("edge %s: dropped message on %s: %s", self.edge, msg.topic, err)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        # A handler bug must never kill paho's network thread.
        try:
            fn(*args)
        except Exception:
            self._handler_errors += 1
            logger.exception("edge %s: handler %s failed", self.edge, fn.__name__)
