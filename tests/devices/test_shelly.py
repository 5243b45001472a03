"""The Shelly Gen2 driver against a local HTTP server speaking the Gen2 RPC API.

The fake device follows the documented HTTP RPC shapes: ``GET /rpc/Switch.Set``
answers ``{"was_on": bool}``; ``GET /rpc/Switch.GetStatus`` answers the switch
status object; errors are an HTTP error status with ``{"code", "message"}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from devices.actuators import ShellyPlug, ShellySwitchStatus
from devices.errors import (
    DeviceAuthError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from tests.conftest import free_port


class FakeShelly(ThreadingHTTPServer):
    """A one-switch Shelly Plus Plug S; ``mode`` injects faults."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ShellyHandler)
        self.output = True  # left on by a previous crash: open() must switch it off
        self.load_w = 42.5
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def status(self) -> dict[str, object]:
        return {
            "id": 0,
            "source": "HTTP_in",
            "output": self.output,
            "apower": self.load_w if self.output else 0.0,
            "voltage": 230.1,
            "current": 0.187 if self.output else 0.0,
            "aenergy": {"total": 1234.567, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1700000000},
            "temperature": {"tC": 41.2, "tF": 106.2},
        }


class ShellyHandler(BaseHTTPRequestHandler):
    server: FakeShelly

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((url.path, params))
        mode = self.server.mode
        if mode == "slow":
            self.server.release.wait(5)
        if mode == "500":
            return self.reply(500, {"code": -105, "message": "Argument 'id', value 3 not found!"})
        if mode == "401":
            return self.reply(401, {"code": 401, "message": "Unauthorized"})
        if mode == "badjson":
            return self.reply(200, b"<html>captive portal</html>")
        if params.get("id") != "0":
            return self.reply(500, {"code": -105, "message": "Argument 'id' not found"})
        if url.path == "/rpc/Switch.Set" and params.get("on") in ("true", "false"):
            was_on, self.server.output = self.server.output, params["on"] == "true"
            return self.reply(200, {"was_on": was_on})
        if url.path == "/rpc/Switch.GetStatus":
            body = self.server.status()
            if mode == "noutput":
                del body["output"]
            return self.reply(200, body)
        return self.reply(404, {"code": 404, "message": "No handler for " + url.path})

    def reply(self, status: int, body: object) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def shelly() -> Iterator[FakeShelly]:
    server = FakeShelly()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_open_switches_off_then_on_off_and_status(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host, timeout=2.0) as plug:
        assert shelly.output is False
        assert shelly.requests[0] == ("/rpc/Switch.Set", {"id": "0", "on": "false"})
        assert plug.state() is False
        assert plug.power_w() == 0.0
        plug.on()
        assert shelly.output is True
        assert plug.state() is True
        assert plug.power_w() == 42.5
        status = plug.status()
        assert isinstance(status, ShellySwitchStatus)
        assert (status.voltage, status.aenergy and status.aenergy.total) == (230.1, 1234.567)
    assert shelly.output is False  # close switched off


def test_exception_inside_the_block_switches_off(shelly: FakeShelly) -> None:
    with pytest.raises(RuntimeError), ShellyPlug(shelly.host) as plug:
        plug.on()
        raise RuntimeError("controller bug")
    assert shelly.output is False


def test_auto_off_sends_toggle_after(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host, auto_off_s=30) as plug:
        plug.on()
    on_requests = [p for path, p in shelly.requests if p.get("on") == "true"]
    assert on_requests == [{"id": "0", "on": "true", "toggle_after": "30"}]


def test_http_500_is_a_protocol_error_with_the_device_code(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host) as plug:
        shelly.mode = "500"
        with pytest.raises(DeviceProtocolError, match=r"HTTP 500 \(code -105\)"):
            plug.on()


def test_unknown_switch_id_is_a_protocol_error(shelly: FakeShelly) -> None:
    with pytest.raises(DeviceProtocolError, match="not found"):
        ShellyPlug(shelly.host, switch_id=3).open()


def test_invalid_json_is_a_protocol_error(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host) as plug:
        shelly.mode = "badjson"
        with pytest.raises(DeviceProtocolError, match="not JSON"):
            plug.state()


def test_status_without_output_is_a_protocol_error(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host) as plug:
        shelly.mode = "noutput"
        with pytest.raises(DeviceProtocolError, match="GetStatus") as info:
            plug.state()
        assert info.value.__cause__ is not None  # chained to the validation error


def test_401_is_an_auth_error(shelly: FakeShelly) -> None:
    shelly.mode = "401"
    with pytest.raises(DeviceAuthError):
        ShellyPlug(shelly.host).open()


def test_connection_refused_is_unavailable_and_open_leaves_nothing_open() -> None:
    plug = ShellyPlug(f"127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(DeviceUnavailable) as info:
        plug.open()
    assert not isinstance(info.value, DeviceTimeout)
    assert plug._client is None
    with pytest.raises(DeviceUnavailable, match="not open"):
        plug.on()


def test_timeout_is_a_device_timeout(shelly: FakeShelly) -> None:
    with ShellyPlug(shelly.host, timeout=0.2) as plug:
        shelly.mode = "slow"
        with pytest.raises(DeviceTimeout, match="timed out") as info:
            plug.on()
        assert isinstance(info.value, DeviceUnavailable)
        shelly.release.set()
        shelly.mode = "ok"


def test_close_never_raises_when_the_plug_is_gone(
    shelly: FakeShelly, caplog: pytest.LogCaptureFixture
) -> None:
    plug = ShellyPlug(shelly.host, timeout=0.5)
    plug.open()
    shelly.mode = "500"
    plug.close()  # logged, not raised
    assert "could not switch off on close" in caplog.text
    with pytest.raises(DeviceError):
        plug.off()
