"""The REST client against a real OctoPrint 1.11 with its Virtual Printer."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from devices.errors import DeviceAuthError, DeviceTimeout, DeviceUnavailable
from devices.octoprint import (
    CommandRefused,
    JobEventKind,
    OctoPrintClient,
    OctoPrintFollower,
    PrinterOffline,
)
from tests.conftest import free_port
from tests.devices.octoprint.server import OctoPrintServer, dwell_gcode

pytestmark = [pytest.mark.anyio, pytest.mark.octoprint]


async def test_version_and_connection(octoprint: OctoPrintServer) -> None:
    async with OctoPrintClient(octoprint.url, octoprint.api_key) as client:
        version = await client.version()
        assert version.server.startswith("1.11.")
        assert version.api == "0.1"
        connection = await client.connection()
        assert connection.state == "Operational"
        assert connection.port == "VIRTUAL"
        assert "VIRTUAL" in connection.ports
        assert "_default" in connection.printer_profiles
        printer = await client.printer()
        assert printer.flags.operational
        assert printer.flags.ready
        assert not printer.flags.printing


async def test_disconnect_and_connect_the_virtual_printer(octoprint: OctoPrintServer) -> None:
    client = OctoPrintClient(octoprint.url, octoprint.api_key)
    async with OctoPrintFollower(client, poll_interval_s=60) as follower:
        await follower.wait_for(lambda s: s.connected and s.flags.operational, 10)
        async with follower.subscribe() as events:
            await client.disconnect()
            await events.wait_for(lambda e: e.kind is JobEventKind.PRINTER_DISCONNECTED, 10)
            offline = await follower.wait_for(lambda s: s.flags.closed_or_error, 10)
            assert offline.state == "Offline"
            assert offline.connected  # OctoPrint is still there, only the printer is not
            with pytest.raises(PrinterOffline, match="not connected") as info:
                await client.printer()
            assert info.value.detail
            assert (await client.job()).state == "Offline"  # /api/job answers while offline
            follower.poll_now()  # the safety poll maps the 409 to an offline snapshot
            polled = await follower.wait_for(lambda s: s.source == "poll", 10)
            assert polled.flags.closed_or_error
            assert not polled.job_active

            await client.connect("VIRTUAL", baudrate=115200, printer_profile="_default")
            connected = await events.wait_for(
                lambda e: e.kind is JobEventKind.PRINTER_CONNECTED, 10
            )
            assert connected.kind.value == "Connected"
            await follower.wait_for(lambda s: s.flags.operational and s.source == "push", 10)
    async with client:
        assert (await client.printer()).state == "Operational"


async def test_upload_select_start_and_refused_commands(octoprint: OctoPrintServer) -> None:
    async with OctoPrintClient(octoprint.url, octoprint.api_key) as client:
        with pytest.raises(CommandRefused, match="neither printing nor paused"):
            await client.cancel()
        result = await client.upload("fab select test.gcode", dwell_gcode(20), select=True)
        assert result.done
        assert result.selected
        assert not result.printing
        assert result.path.endswith(".gcode")
        job = await client.job()
        assert job.file_path == result.path
        assert job.file_size == len(dwell_gcode(20))

        await client.start()
        state = None
        for _ in range(100):
            state = await client.printer()
            if state.flags.printing:
                break
        assert state is not None
        assert state.flags.printing
        with pytest.raises(CommandRefused, match="already has an active print job"):
            await client.start()
        # a busy printer stores the file but neither selects nor prints it
        other = await client.upload("other.gcode", dwell_gcode(1), print_=True)
        assert other.done
        assert not other.printing
        assert not other.selected
        assert (await client.job()).file_path == result.path
        with pytest.raises(CommandRefused, match="already printing") as info:
            await client.select(other.path)
        assert "cannot select" in info.value.detail
        await client.cancel()

        await asyncio.to_thread(octoprint.make_idle)
        await client.select(other.path)  # allowed once idle
        assert (await client.job()).file_path == other.path


async def test_wrong_api_key_is_an_auth_error(octoprint: OctoPrintServer) -> None:
    async with OctoPrintClient(octoprint.url, "NOT-THE-KEY") as client:
        with pytest.raises(DeviceAuthError, match="refused the API key") as info:
            await client.version()
        assert info.value.__cause__ is None  # an answer (HTTP 403), not a transport error
        with pytest.raises(DeviceAuthError, match="did not accept the API key"):
            await client.passive_login()
        with pytest.raises(DeviceAuthError):
            await client.start()
    assert "NOT-THE-KEY" not in repr(client)


async def test_octoprint_not_running_is_unavailable() -> None:
    async with OctoPrintClient(f"http://127.0.0.1:{free_port()}", "key", timeout=2) as client:
        with pytest.raises(DeviceUnavailable) as info:
            await client.version()
        assert not isinstance(info.value, DeviceTimeout)
        assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_frozen_octoprint_times_out(octoprint: OctoPrintServer) -> None:
    async with OctoPrintClient(octoprint.url, octoprint.api_key, timeout=0.5) as client:
        octoprint.suspend()
        try:
            with pytest.raises(DeviceTimeout, match=r"timed out after 0\.5 s") as info:
                await client.job()
            assert isinstance(info.value.__cause__, httpx.TimeoutException)
        finally:
            octoprint.resume()
        assert (await client.job()).state  # and it answers again once thawed


async def test_client_must_be_open_and_may_be_shared() -> None:
    client = OctoPrintClient("http://127.0.0.1:9/", "key")
    with pytest.raises(DeviceUnavailable, match="not open"):
        await client.version()
    assert client.websocket_url == "ws://127.0.0.1:9/sockjs/websocket"
    assert OctoPrintClient("https://p.local", "k").websocket_url == "wss://p.local/sockjs/websocket"
    async with httpx.AsyncClient() as http:
        async with client, OctoPrintClient("http://127.0.0.1:9", "key", http=http) as shared:
            async with client:  # re-entering is counted
                pass
            assert client._http is not None  # still open for the outer block
            assert shared._http is http
        assert client._http is None
        assert not http.is_closed  # a shared http client is never closed by us
