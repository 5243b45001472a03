"""Issue 13, case 1 on a real server: huge anonymous uploads do not grow the hub.

The hub's API runs in its own process under uvicorn (as ``hub.main`` configures it), on
loopback; four clients stream 200 MB bodies at ``/api/members`` without credentials.
Before the fix the hub read and parsed them all (105 MB → 2.44 GB); now each is refused
at once and the server's resident memory stays flat (measured with psutil).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

SERVER = r"""
import sys
import uvicorn
from hub.api.app import create_app
from hub.control import NullControl
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.migrate import upgrade
from hub.main import uvicorn_config
from hub.settings import HubSettings

url, port = sys.argv[1], int(sys.argv[2])
upgrade(url)
settings = HubSettings(demo=True, site="test", database_url=url, http_port=port)
app = create_app(settings, make_sessionmaker(make_engine(url)), NullControl())
uvicorn.Server(uvicorn_config(app, settings, lifespan="off")).run()
"""

UPLOAD = 200 * 1024 * 1024
CHUNK = b"x" * (256 * 1024)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("server did not listen")


def _upload(port: int, chunked: bool, result: dict[str, object]) -> None:
    """Stream a 200 MB body; stop when the server answers or closes. Records status, bytes."""
    head = [
        "POST /api/members HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD}",
    ]
    sent = 0
    answer = b""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        while sent < UPLOAD and time.monotonic() - started < 60:
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            piece = (f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n") if chunked else CHUNK
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    result["status"] = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else ""
    result["head"] = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    result["sent"] = sent
    result["seconds"] = time.monotonic() - started


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_anonymous_uploads_are_refused_fast_and_memory_stays_flat(
    tmp_path: Path, chunked: bool
) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, f"sqlite:///{tmp_path / 'hub.db'}", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        server = psutil.Process(proc.pid)
        before = server.memory_info().rss
        peak = before
        results: list[dict[str, object]] = [{} for _ in range(4)]
        threads = [
            threading.Thread(target=_upload, args=(port, chunked, r), daemon=True) for r in results
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.02)
        for t in threads:
            t.join()
        grown_mb = (peak - before) / 2**20
        brief = [(r["status"], r["sent"], round(float(r["seconds"]), 3)) for r in results]  # type: ignore[arg-type]
        print(f"server RSS {before / 2**20:.0f} MB, peak +{grown_mb:.1f} MB; {brief}")
        for r in results:
            assert r["status"] in ("401", "413"), r
            assert int(str(r["sent"])) < UPLOAD // 4, r  # refused long before the end
            assert "server:" not in str(r["head"])  # no "server: uvicorn"
        assert grown_mb < 30, f"the hub grew by {grown_mb:.0f} MB"
    finally:
        proc.terminate()
        proc.wait(10)
