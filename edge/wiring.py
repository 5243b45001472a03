"""Building one edge from its settings: machines, feedback sinks, link settings.

Explicit wiring (DESIGN §5.6): everything the agent drives is built here from the
validated :class:`~edge.settings.EdgeSettings`, nothing opened yet. A machine's
kind row (:mod:`edge.kinds`) says whether its actuator is latched, which session
preset it gets and which follower follows its driver; a metering plug with
``busy_above_w`` gets a :class:`~edge.power.PowerWatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from devices.actuators import LatchedActuator
from devices.registry import DeviceContext
from edge.feedback import ConsoleFeedback, FeedbackSink, GpioFeedback
from edge.kinds import Post, get_kind, session_config
from edge.link import LinkSettings
from edge.machines import MachineUnit
from edge.power import PowerWatch
from edge.session import SessionMachine
from edge.settings import EdgeSettings

__all__ = ["build_units", "device_context", "feedback_sinks", "link_settings"]


def device_context(
    settings: EdgeSettings,
    given: DeviceContext | None,
    publish_raw: Callable[[str, bytes], None],
) -> DeviceContext:
    """The device factories' seams: the caller's, plus the link's raw publisher (Tasmota
    plugs) and gpiozero's mock pins when ``gpio_mock`` is set."""
    ctx = given or DeviceContext()
    pin_factory = ctx.gpio_pin_factory
    if pin_factory is None and settings.gpio_mock:
        from gpiozero.pins.mock import MockFactory

        pin_factory = MockFactory()
    return DeviceContext(
        mqtt_publish=ctx.mqtt_publish or publish_raw,
        gpio_pin_factory=pin_factory,
        http_transport=ctx.http_transport,
        state_dir=ctx.state_dir or settings.journal.path.parent,
    )


def build_units(settings: EdgeSettings, ctx: DeviceContext, post: Post) -> dict[str, MachineUnit]:
    """Every machine of the edge, unopened, by id.

    Raises:
        DeviceConfigError, ValueError: a device cannot be built.
    """
    units: dict[str, MachineUnit] = {}
    for m in settings.machines:
        kind = get_kind(m.kind)
        actuator = m.actuator.build_actuator(ctx) if m.actuator else None
        if kind.latched and actuator is not None and not isinstance(actuator, LatchedActuator):
            actuator = LatchedActuator(actuator)  # never restarts by itself
        watch = None
        if m.busy_above_w is not None:
            watch = PowerWatch(m.id, m.busy_above_w, m.idle_timeout_min)
        units[m.id] = MachineUnit(
            settings=m,
            session=SessionMachine(m.id, session_config(m, settings)),
            reader=m.reader.build_reader(ctx),
            follower=kind.follower(m, ctx, actuator, post),
            actuator=actuator,
            lock=m.pc.build_session_lock(ctx) if m.pc else None,
            power_watch=watch,
            notices=kind.notify,
        )
    return units


def feedback_sinks(
    settings: EdgeSettings,
    ctx: DeviceContext,
    narrate: Callable[[str], None] | None,
    extra: Iterable[FeedbackSink] = (),
) -> list[FeedbackSink]:
    """The console (or the demo's narration), each machine's LEDs and buzzer, then ``extra``."""
    sinks: list[FeedbackSink] = []
    if settings.feedback.console or narrate is not None:
        sinks.append(ConsoleFeedback(narrate, log_messages=settings.feedback.log_messages))
    for m in settings.machines:
        if m.feedback is not None:
            sinks.append(
                GpioFeedback(
                    m.id,
                    green_pin=m.feedback.green_pin,
                    red_pin=m.feedback.red_pin,
                    buzzer_pin=m.feedback.buzzer_pin,
                    active_high=m.feedback.active_high,
                    pin_factory=ctx.gpio_pin_factory,
                )
            )
    return [*sinks, *extra]


def link_settings(settings: EdgeSettings, machines: Iterable[str], version: str) -> LinkSettings:
    """The MQTT link's settings: broker, identity, the machines it announces."""
    s, q = settings, settings.mqtt
    return LinkSettings(
        site=s.site,
        edge=s.edge_id,
        host=q.host,
        port=q.port,
        username=q.username,
        password=q.password.get_secret_value() if q.password else None,
        tls=q.tls,
        ca_file=str(q.ca_file) if q.ca_file else None,
        keepalive_s=q.keepalive_s,
        protocol=q.protocol,
        client_id=q.client_id,
        version=version,
        machines=tuple(machines),
        reconnect_min_s=q.reconnect_min_s,
        reconnect_max_s=q.reconnect_max_s,
    )
