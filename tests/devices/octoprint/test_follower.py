"""The push follower against a real OctoPrint 1.11 with its Virtual Printer.

Prints are ``G4`` dwells (the virtual printer sleeps for real), so their length is
known: a few seconds to finish, or long enough to pause, resume and cancel.
"""

from __future__ import annotations

import httpx
import pytest

from devices.errors import DeviceAuthError, DeviceTimeout, DeviceUnavailable
from devices.octoprint import (
    JobEvent,
    JobEventKind,
    OctoPrintClient,
    OctoPrintFollower,
    PrinterSnapshot,
)
from tests.conftest import free_port
from tests.devices.octoprint.conftest import eventually
from tests.devices.octoprint.server import USER, OctoPrintServer, dwell_gcode

pytestmark = [pytest.mark.anyio, pytest.mark.octoprint]


def kind(k: JobEventKind):  # type: ignore[no-untyped-def]
    return lambda e: e.kind is k


def printing(s: PrinterSnapshot) -> bool:
    return s.flags.printing and not s.flags.paused


async def test_prints_a_small_gcode_to_the_end(octoprint: OctoPrintServer) -> None:
    seen: list[PrinterSnapshot] = []
    callback_events: list[JobEvent] = []
    client = OctoPrintClient(octoprint.url, octoprint.api_key)
    follower = OctoPrintFollower(client, poll_interval_s=1.0, on_event=callback_events.append)
    async with follower, follower.subscribe() as events:
        idle = await follower.wait_for(lambda s: s.connected, 10)
        assert idle.state == "Operational"
        assert not follower.job_active
        assert follower.link_up
        assert follower.running

        data = dwell_gcode(2.5)
        upload = await client.upload("cube.gcode", data, print_=True)
        assert upload.printing
        started = await events.wait_for(kind(JobEventKind.PRINT_STARTED), 10)
        assert (started.file_name, started.size, started.origin) == (
            "cube.gcode",
            len(data),
            "local",
        )

        active = await follower.wait_for(printing, 5)
        assert follower.job_active
        assert active.job_active
        assert active.file_name == "cube.gcode"
        seen.append(active)

        done = await events.wait_for(kind(JobEventKind.PRINT_DONE), 30)
        assert done.file_name == "cube.gcode"
        assert done.print_time_s is not None
        assert done.print_time_s >= 2.0
        assert done.monotonic_s > started.monotonic_s
        assert done.ends_job

        finished = await follower.wait_for(
            lambda s: s.progress_pct == 100 and not s.job_active and s.source == "push", 5
        )
        assert finished.state == "Operational"
        assert not follower.job_active
        assert finished.tool0 is not None
        assert finished.tool0.target == 200.0
        assert finished.bed is not None
        assert finished.bed.target == 60.0
        assert finished.tool0.actual is not None
        assert finished.tool0.actual > 21
        assert finished.print_time_left_s == 0
        assert finished.last_update is not None
        assert finished.last_update > active.last_update

        await follower.wait_for(lambda s: s.source == "poll", 5)  # the REST safety poll runs
        assert follower.polls >= 1
    kinds = [e.kind for e in callback_events]
    assert kinds.index(JobEventKind.PRINT_STARTED) < kinds.index(JobEventKind.PRINT_DONE)
    assert kinds[0] is JobEventKind.LINK_UP
    assert follower.sessions == 1
    assert not follower.running


async def test_pause_resume_and_cancel(octoprint: OctoPrintServer) -> None:
    client = OctoPrintClient(octoprint.url, octoprint.api_key)
    async with OctoPrintFollower(client) as follower, follower.subscribe() as events:
        await follower.wait_for(lambda s: s.connected, 10)
        await client.upload("long.gcode", dwell_gcode(60), print_=True)
        await follower.wait_for(printing, 10)

        await client.pause()
        paused_event = await events.wait_for(kind(JobEventKind.PRINT_PAUSED), 10)
        assert paused_event.file_name == "long.gcode"
        assert not paused_event.ends_job
        paused = await follower.wait_for(lambda s: s.flags.paused, 5)
        assert paused.state == "Paused"
        assert follower.job_active  # a paused print is a job: never cut power

        await client.resume()
        await events.wait_for(kind(JobEventKind.PRINT_RESUMED), 10)
        await follower.wait_for(printing, 5)
        assert follower.job_active

        await client.cancel()
        await events.wait_for(kind(JobEventKind.PRINT_CANCELLED), 10)
        failed = await events.wait_for(kind(JobEventKind.PRINT_FAILED), 10)
        assert failed.reason == "cancelled"
        assert failed.ends_job
        assert failed.print_time_s is not None
        idle = await follower.wait_for(lambda s: not s.job_active and s.flags.ready, 10)
        assert idle.state == "Operational"


async def test_octoprint_restarted_mid_print(octoprint: OctoPrintServer) -> None:
    client = OctoPrintClient(octoprint.url, octoprint.api_key, timeout=2)
    follower = OctoPrintFollower(client, backoff_initial_s=0.2, backoff_max_s=1.0)
    async with follower, follower.subscribe() as events:
        await follower.wait_for(lambda s: s.connected, 10)
        await client.upload("restart.gcode", dwell_gcode(60), print_=True)
        await follower.wait_for(printing, 10)

        await octoprint.astop()
        down = await events.wait_for(kind(JobEventKind.LINK_DOWN), 10)
        assert down.reason
        assert not follower.link_up
        assert not follower.snapshot.connected
        # OctoPrint is gone: the last known state is kept, so power stays on
        assert follower.job_active
        assert follower.snapshot.file_name == "restart.gcode"
        await eventually(
            lambda: isinstance(follower.last_error, DeviceUnavailable), 10, "login refused"
        )
        assert follower.running

        await octoprint.astart()
        await events.wait_for(kind(JobEventKind.LINK_UP), 30)
        lost = await events.wait_for(kind(JobEventKind.JOB_LOST), 5)
        assert lost.file_name == "restart.gcode"
        assert lost.ends_job
        recovered = await follower.wait_for(lambda s: s.connected and s.flags.operational, 10)
        assert not recovered.job_active
        assert not follower.job_active
        assert follower.sessions == 2
        assert follower.attempts >= 2


async def test_silence_watchdog_reconnects(octoprint: OctoPrintServer) -> None:
    client = OctoPrintClient(octoprint.url, octoprint.api_key, timeout=1)
    follower = OctoPrintFollower(
        client, silence_timeout_s=1.5, backoff_initial_s=0.2, backoff_max_s=0.5
    )
    async with follower, follower.subscribe() as events:
        await follower.wait_for(lambda s: s.connected, 10)
        octoprint.suspend()  # sockets stay open, nothing arrives any more
        try:
            down = await events.wait_for(kind(JobEventKind.LINK_DOWN), 10)
            assert down.reason is not None
            assert "no push message for 1.5 s" in down.reason
            await eventually(lambda: follower.attempts >= 3, 10, "keeps retrying while frozen")
            assert isinstance(follower.last_error, DeviceTimeout)
        finally:
            octoprint.resume()
        await events.wait_for(kind(JobEventKind.LINK_UP), 15)
        assert (await follower.wait_for(lambda s: s.connected, 5)).flags.operational


async def test_reauth_required_logs_in_again_on_the_same_socket(
    octoprint: OctoPrintServer,
) -> None:
    client = OctoPrintClient(octoprint.url, octoprint.api_key)
    async with OctoPrintFollower(client) as follower:
        await follower.wait_for(lambda s: s.connected, 10)
        assert follower.reauths == 0
        headers = {"X-Api-Key": octoprint.api_key}
        async with httpx.AsyncClient(base_url=octoprint.url, headers=headers) as admin:
            # modifying the user makes OctoPrint send reauthRequired("modified")
            for permissions in (["STATUS"], []):
                response = await admin.put(
                    f"/api/access/users/{USER}", json={"permissions": permissions}
                )
                assert response.status_code == 200, response.text
        await eventually(lambda: follower.reauths >= 1, 10, "reauthRequired handled")
        before = follower.snapshot.last_update
        assert before is not None
        after = await follower.wait_for(
            lambda s: s.last_update is not None and s.last_update > before, 5
        )
        assert after.connected
        assert follower.link_up
        assert follower.sessions == 1  # no reconnect was needed


async def test_not_running_keeps_retrying_with_backoff() -> None:
    client = OctoPrintClient(f"http://127.0.0.1:{free_port()}", "key", timeout=1)
    follower = OctoPrintFollower(client, backoff_initial_s=0.02, backoff_max_s=0.16)
    async with follower, follower.subscribe() as events:
        assert follower.retry_delay_s == 0.02
        await eventually(lambda: follower.attempts >= 6, 10, "retries")
        assert isinstance(follower.last_error, DeviceUnavailable)
        assert follower.retry_delay_s == 0.16  # doubled up to the cap
        assert follower.running
        assert not follower.link_up
        assert not follower.snapshot.known
        assert not follower.job_active
        assert events.pending() == []  # no LinkDown: the link was never up
        assert follower.sessions == 0


async def test_wrong_api_key_is_reported_and_not_hammered(octoprint: OctoPrintServer) -> None:
    client = OctoPrintClient(octoprint.url, "NOT-THE-KEY")
    follower = OctoPrintFollower(client, backoff_initial_s=0.01, backoff_max_s=30)
    async with follower:
        await eventually(lambda: follower.last_error is not None, 10, "login refused")
        assert isinstance(follower.last_error, DeviceAuthError)
        assert "did not accept the API key" in str(follower.last_error)
        assert follower.running
        assert not follower.link_up
        with pytest.raises(DeviceTimeout, match="condition not met"):
            await follower.wait_for(lambda s: s.connected, 0.3)
        assert follower.attempts == 1  # a wrong key waits backoff_max_s, not 10 ms
