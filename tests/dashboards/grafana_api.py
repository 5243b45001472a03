"""A loopback stand-in for Grafana's HTTP API (no Grafana server can run here).

It follows Grafana's documented legacy HTTP API (``/api/datasources``,
``/api/folders``, ``/api/dashboards/db`` and ``/api/dashboards/uid/:uid``): the
request and response bodies, the status codes (404 for what is missing, 409 for a
folder uid taken, 412 ``version-mismatch`` when a dashboard exists and
``overwrite`` is false, 401 without the bearer token), and records every exchange
so that tests can assert what a client sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Exchange:
    method: str
    path: str
    body: Any
    status: int


@dataclass
class GrafanaState:
    token: str
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    next_id: int = 1

    def writes(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method != "GET"]


def _handler(state: GrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, req: Any) -> None:
            state.exchanges.append(Exchange(self.command, self.path, req, status))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _new_id(self) -> int:
            state.next_id += 1
            return state.next_id

        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = json.loads(raw) if raw else None
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, {"message": "Unauthorized"}, req)
            m, p = self.command, self.path.split("?")[0]
            if m == "GET" and p.startswith("/api/datasources/uid/"):
                ds = state.datasources.get(p.rsplit("/", 1)[1])
                if ds is None:
                    return self._send(404, {"message": "Data source not found"}, req)
                public = {k: v for k, v in ds.items() if k != "secureJsonData"}
                public["secureJsonFields"] = {k: True for k in ds.get("secureJsonData", {})}
                return self._send(200, public, req)
            if m == "POST" and p == "/api/datasources":
                if req["uid"] in state.datasources:
                    return self._send(
                        409, {"message": "data source with the same uid already exists"}, req
                    )
                ds = {**req, "id": self._new_id(), "orgId": 1}
                state.datasources[req["uid"]] = ds
                return self._send(
                    200,
                    {
                        "datasource": ds,
                        "id": ds["id"],
                        "message": "Datasource added",
                        "name": ds["name"],
                    },
                    req,
                )
            if m == "PUT" and p.startswith("/api/datasources/uid/"):
                uid = p.rsplit("/", 1)[1]
                if uid not in state.datasources:
                    return self._send(404, {"message": "Data source not found"}, req)
                ds = {**req, "id": state.datasources[uid]["id"], "orgId": 1}
                state.datasources[uid] = ds
                return self._send(
                    200,
                    {
                        "datasource": ds,
                        "id": ds["id"],
                        "message": "Datasource updated",
                        "name": ds["name"],
                    },
                    req,
                )
            if m == "GET" and p.startswith("/api/folders/"):
                folder = state.folders.get(p.rsplit("/", 1)[1])
                if folder is None:
                    return self._send(
                        404, {"message": "Folder not found", "status": "not-found"}, req
                    )
                return self._send(200, folder, req)
            if m == "POST" and p == "/api/folders":
                if req.get("uid") in state.folders:
                    return self._send(
                        409, {"message": "a folder with the same uid already exists"}, req
                    )
                folder = {
                    "id": self._new_id(),
                    "uid": req["uid"],
                    "title": req["title"],
                    "url": f"/dashboards/f/{req['uid']}/",
                    "version": 1,
                }
                state.folders[req["uid"]] = folder
                return self._send(200, folder, req)
            if m == "GET" and p.startswith("/api/dashboards/uid/"):
                stored = state.dashboards.get(p.rsplit("/", 1)[1])
                if stored is None:
                    return self._send(404, {"message": "Dashboard not found"}, req)
                return self._send(200, stored, req)
            if m == "POST" and p == "/api/dashboards/db":
                dash = req["dashboard"]
                uid = dash["uid"]
                old = state.dashboards.get(uid)
                if old is not None and not req.get("overwrite"):
                    return self._send(
                        412,
                        {
                            "message": "The dashboard has been changed by someone else",
                            "status": "version-mismatch",
                        },
                        req,
                    )
                folder_uid = req.get("folderUid", "")
                if folder_uid and folder_uid not in state.folders:
                    return self._send(400, {"message": "folder not found"}, req)
                version = (old["dashboard"]["version"] + 1) if old else 1
                ident = old["dashboard"]["id"] if old else self._new_id()
                saved = {**dash, "id": ident, "version": version}
                state.dashboards[uid] = {
                    "dashboard": saved,
                    "meta": {"folderUid": folder_uid, "slug": uid, "url": f"/d/{uid}/{uid}"},
                }
                return self._send(
                    200,
                    {
                        "id": ident,
                        "uid": uid,
                        "url": f"/d/{uid}/{uid}",
                        "status": "success",
                        "version": version,
                        "slug": uid,
                    },
                    req,
                )
            return self._send(404, {"message": "Not found"}, req)

        do_GET = do_POST = do_PUT = do_DELETE = _route

    return Handler


class FakeGrafana:
    def __init__(self, token: str) -> None:
        self.state = GrafanaState(token)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
