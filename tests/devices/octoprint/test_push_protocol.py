"""Push-protocol corner cases that a healthy OctoPrint does not produce on demand.

A small scripted peer speaks OctoPrint's raw push socket (``connected`` first, then
``reauthRequired``/``current`` depending on the ``auth`` it receives) on a loopback
port, and an ``httpx.MockTransport`` answers the passive logins. Shapes are those
recorded from OctoPrint 1.11.8 (see ``push_transcript.jsonl``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from devices.errors import DeviceAuthError, DeviceProtocolError
from devices.octoprint import JobEvent, JobEventKind, OctoPrintClient, OctoPrintFollower
from tests.devices.octoprint.conftest import eventually

pytestmark = pytest.mark.anyio

CURRENT = {
    "current": {
        "state": {"text": "Operational", "flags": {"operational": True, "ready": True}},
        "job": {"file": {"name": None}},
        "progress": {"completion": None},
        "temps": [],
    }
}

OnAuth = Callable[[ServerConnection, str], Awaitable[None]]


class Peer:
    """Counts logins and socket sessions; ``on_auth`` decides what follows an auth."""

    def __init__(self, on_auth: OnAuth) -> None:
        self.on_auth = on_auth
        self.logins = 0
        self.sockets = 0
        self.auths: list[str] = []
        self.subscriptions: list[object] = []

    def rest(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/login":
            assert json.loads(request.content) == {"passive": True}
            assert request.headers["X-Api-Key"] == "KEY-1234"
            self.logins += 1
            return httpx.Response(200, json={"name": "fabhub", "session": f"s{self.logins}"})
        return httpx.Response(404, json={"error": "not scripted"})

    async def socket(self, ws: ServerConnection) -> None:
        self.sockets += 1
        await ws.send(json.dumps({"connected": {"version": "1.11.8"}}))
        async for raw in ws:
            message = json.loads(raw)
            if "auth" in message:
                self.auths.append(message["auth"])
                await self.on_auth(ws, message["auth"])
            elif "subscribe" in message:
                self.subscriptions.append(message["subscribe"])


@asynccontextmanager
async def following(peer: Peer, **options: float) -> AsyncIterator[OctoPrintFollower]:
    async with serve(peer.socket, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with httpx.AsyncClient(transport=httpx.MockTransport(peer.rest)) as http:
            client = OctoPrintClient(f"http://127.0.0.1:{port}", "KEY-1234", http=http)
            follower = OctoPrintFollower(client, poll_interval_s=60, **options)  # type: ignore[arg-type]
            async with follower:
                yield follower


async def test_stale_session_logs_in_again_and_follows() -> None:
    async def on_auth(ws: ServerConnection, auth: str) -> None:
        if auth == "fabhub:s1":
            await ws.send(json.dumps({"reauthRequired": {"reason": "stale"}}))
        else:
            await ws.send(json.dumps(CURRENT))

    peer = Peer(on_auth)
    async with following(peer) as follower:
        snapshot = await follower.wait_for(lambda s: s.connected, 5)
        assert snapshot.state == "Operational"
        assert peer.auths == ["fabhub:s1", "fabhub:s2"]
        assert (peer.logins, peer.sockets, follower.reauths) == (2, 1, 1)
        subscription = peer.subscriptions[-1]
        assert isinstance(subscription, dict)
        assert subscription["state"] == {"logs": False, "messages": False}
        assert "PrintDone" in subscription["events"]
        assert "ZChange" not in subscription["events"]


async def test_modified_user_reuses_the_session() -> None:
    async def on_auth(ws: ServerConnection, auth: str) -> None:
        await ws.send(json.dumps(CURRENT))
        if len(peer.auths) == 1:
            await ws.send(json.dumps({"reauthRequired": {"reason": "modified"}}))

    peer = Peer(on_auth)
    async with following(peer) as follower:
        await eventually(lambda: len(peer.auths) == 2, 5, "auth sent again")
        assert peer.auths == ["fabhub:s1", "fabhub:s1"]
        assert peer.logins == 1
        assert follower.reauths == 1
        assert follower.link_up


async def test_session_refused_again_and_again_reconnects() -> None:
    async def on_auth(ws: ServerConnection, auth: str) -> None:
        await ws.send(json.dumps({"reauthRequired": {"reason": "stale"}}))

    peer = Peer(on_auth)
    async with following(peer, backoff_initial_s=0.01, backoff_max_s=0.05) as follower:
        await eventually(lambda: peer.sockets >= 2, 5, "a new socket after giving up")
        assert isinstance(follower.last_error, DeviceAuthError)
        assert "refused again and again" in str(follower.last_error)
        assert not follower.link_up
        assert follower.running


async def test_garbage_frame_is_a_protocol_error_then_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_auth(ws: ServerConnection, auth: str) -> None:
        await ws.send(json.dumps(CURRENT))
        await ws.send("<html>proxy error</html>")

    peer = Peer(on_auth)
    events: list[JobEvent] = []
    caplog.set_level(logging.WARNING, "devices.octoprint.push")
    options = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    async with following(peer, **options) as follower:
        follower.subscribe()  # an unread subscriber does not block anything
        stream = follower.subscribe()
        await eventually(lambda: peer.sockets >= 2, 5, "reconnected")
        events = stream.pending()
        assert isinstance(follower.last_error, DeviceProtocolError)
        assert "not JSON" in str(follower.last_error)
    kinds = [e.kind for e in events]
    assert kinds[:2] == [JobEventKind.LINK_UP, JobEventKind.LINK_DOWN]
    assert any("not JSON" in r.getMessage() for r in caplog.records)


async def test_a_lost_link_is_logged_once_not_twice(caplog: pytest.LogCaptureFixture) -> None:
    """Once: not the error, then "link down" with the same words (issue 9)."""

    async def on_auth(ws: ServerConnection, auth: str) -> None:
        await ws.send(json.dumps(CURRENT))
        if peer.sockets == 1:  # the first session breaks; the next ones are healthy
            await ws.send("<html>proxy error</html>")

    peer = Peer(on_auth)
    caplog.set_level(logging.WARNING, "devices.octoprint.push")
    options = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    async with following(peer, **options) as follower:
        await eventually(lambda: peer.sockets >= 2 and follower.link_up, 5, "following again")
    lines = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "link down" in lines[0]


async def test_slow_subscriber_drops_oldest_and_callback_errors_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(event: JobEvent) -> None:
        raise RuntimeError("consumer bug")

    client = OctoPrintClient("http://127.0.0.1:9", "KEY")
    follower = OctoPrintFollower(client, event_queue_size=2, on_event=explode)
    stream = follower.subscribe()
    now = datetime.now(UTC)
    for i in range(3):
        follower._emit(JobEvent(kind=JobEventKind.ERROR, at=now, monotonic_s=i, error=str(i)))
    assert [e.error for e in stream.pending()] == ["1", "2"]
    assert stream.dropped == 1
    assert any("on_event callback failed" in r.getMessage() for r in caplog.records)
    stream.close()
    follower._emit(JobEvent(kind=JobEventKind.ERROR, at=now, monotonic_s=9))
    assert stream.pending() == []
