"""Tasmota messages: what the plug driver publishes and how it reads the plug's answers."""

from __future__ import annotations

import pytest

from devices.actuators import Actuator, TasmotaPlug
from devices.errors import DeviceConfigError, DeviceProtocolError, DeviceUnavailable


class Recorder:
    """Stands in for the edge's MQTT link: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.broken = False

    def __call__(self, topic: str, payload: bytes) -> None:
        if self.broken:
            raise ConnectionError("link down")
        self.sent.append((topic, payload))


def test_commands_follow_tasmota_topics() -> None:
    link = Recorder()
    plug = TasmotaPlug("tasmota_4E2F1A", link)
    assert isinstance(plug, Actuator)
    with plug:
        plug.on()
        plug.request_state()
    assert link.sent == [
        ("cmnd/tasmota_4E2F1A/POWER", b"OFF"),  # open
        ("cmnd/tasmota_4E2F1A/POWER", b"ON"),
        ("cmnd/tasmota_4E2F1A/POWER", b""),
        ("cmnd/tasmota_4E2F1A/POWER", b"OFF"),  # close
    ]


def test_state_comes_from_what_the_plug_reports() -> None:
    plug = TasmotaPlug("plug1", Recorder())
    plug.open()
    assert plug.state() is None  # sent OFF, but nothing reported yet
    assert plug.handle_message("stat/plug1/POWER", b"ON")
    assert plug.state() is True
    assert plug.handle_message("stat/plug1/RESULT", b'{"POWER":"OFF"}')
    assert plug.state() is False
    assert plug.handle_message("tele/plug1/STATE", b'{"Time":"2024-05-01T10:00:00","POWER":"ON"}')
    assert plug.state() is True
    assert plug.handle_message("stat/plug1/RESULT", b'{"PowerOnState":0}')  # unrelated command
    assert plug.state() is True


def test_power_from_sensor_telemetry() -> None:
    plug = TasmotaPlug("plug1", Recorder())
    assert plug.power_w() is None
    body = b'{"Time":"2024-05-01T10:00:00","ENERGY":{"Total":12.3,"Power":87,"Voltage":231}}'
    assert plug.handle_message("tele/plug1/SENSOR", body)
    assert plug.power_w() == 87.0
    assert plug.handle_message("tele/plug1/SENSOR", b'{"DS18B20":{"Temperature":21.5}}')
    assert plug.power_w() == 87.0


def test_lwt_offline_makes_state_unknown() -> None:
    plug = TasmotaPlug("plug1", Recorder())
    plug.handle_message("stat/plug1/POWER", b"ON")
    plug.handle_message("tele/plug1/SENSOR", b'{"ENERGY":{"Power":5.5}}')
    assert plug.handle_message("tele/plug1/LWT", b"Offline")
    assert (plug.online, plug.state(), plug.power_w()) == (False, None, None)
    plug.handle_message("tele/plug1/LWT", b"Online")
    assert (plug.online, plug.state(), plug.power_w()) == (True, True, 5.5)


def test_other_topics_are_not_ours() -> None:
    plug = TasmotaPlug("plug1", Recorder())
    assert not plug.handle_message("stat/plug2/POWER", b"ON")
    assert not plug.handle_message("stat/plug1/STATUS8", b"{}")
    assert not plug.handle_message("fabrique/v1/site/hub/status", b"{}")
    assert plug.state() is None


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("stat/plug1/POWER", b"MAYBE"),
        ("stat/plug1/POWER", b"\xff\xfe"),
        ("stat/plug1/RESULT", b"not json"),
        ("tele/plug1/STATE", b"[1, 2]"),
        ("tele/plug1/SENSOR", b'{"ENERGY":{"Power":"lots"}}'),
        ("tele/plug1/LWT", b"Gone"),
    ],
)
def test_malformed_messages_are_protocol_errors(topic: str, payload: bytes) -> None:
    plug = TasmotaPlug("plug1", Recorder())
    with pytest.raises(DeviceProtocolError):
        plug.handle_message(topic, payload)
    assert plug.state() is None


def test_multi_relay_device() -> None:
    link = Recorder()
    plug = TasmotaPlug("strip", link, relay=2)
    plug.on()
    assert link.sent == [("cmnd/strip/POWER2", b"ON")]
    assert "stat/strip/POWER2" in plug.subscriptions
    assert not plug.handle_message("stat/strip/POWER1", b"ON")
    assert plug.state() is None
    plug.handle_message("stat/strip/RESULT", b'{"POWER1":"ON","POWER2":"OFF"}')
    assert plug.state() is False
    plug.handle_message("tele/strip/SENSOR", b'{"ENERGY":{"Power":[10,25]}}')
    assert plug.power_w() == 25.0


def test_relay_one_accepts_power_and_power1() -> None:
    plug = TasmotaPlug("plug1", Recorder())
    assert set(plug.subscriptions) == {
        "stat/plug1/POWER",
        "stat/plug1/POWER1",
        "stat/plug1/RESULT",
        "tele/plug1/STATE",
        "tele/plug1/SENSOR",
        "tele/plug1/LWT",
    }
    plug.handle_message("stat/plug1/POWER1", b"on")
    assert plug.state() is True


def test_publish_failure_is_unavailable_and_close_does_not_raise() -> None:
    link = Recorder()
    plug = TasmotaPlug("plug1", link)
    link.broken = True
    with pytest.raises(DeviceUnavailable, match="link down") as info:
        plug.on()
    assert isinstance(info.value.__cause__, ConnectionError)
    plug.close()  # logged only


@pytest.mark.parametrize("topic", ["", "a/b", "plug+", "#", "with space"])
def test_topic_must_be_one_mqtt_level(topic: str) -> None:
    with pytest.raises(DeviceConfigError):
        TasmotaPlug(topic, Recorder())
