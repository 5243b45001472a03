"""``fabrique dashboards push`` against Grafana's documented HTTP API (loopback stand-in)."""

from __future__ import annotations

import pytest

from dashboards import DATASOURCE_UID, FOLDER_UID
from dashboards.check import load
from dashboards.sync import InfluxSource, SyncError, connect, push
from tests.dashboards.grafana_api import FakeGrafana

TOKEN = "glsa_test_token"
SOURCE = InfluxSource("http://influx.example:8086", "fabrique", token="read-token")


def test_push_creates_everything_then_changes_nothing() -> None:
    with FakeGrafana(TOKEN) as grafana:
        api = connect(grafana.url, TOKEN)
        first = push(api, SOURCE)
        uids = sorted(d["uid"] for d in load().values())
        assert sorted(first.created) == sorted(
            [f"datasource {DATASOURCE_UID}", f"folder {FOLDER_UID}"]
            + [f"dashboard {u}" for u in uids]
        )
        state = grafana.state
        ds = state.datasources[DATASOURCE_UID]
        assert (ds["type"], ds["url"], ds["database"]) == ("influxdb", SOURCE.url, "fabrique")
        assert ds["secureJsonData"] == {"httpHeaderValue1": "Token read-token"}
        assert sorted(state.dashboards) == uids
        for stored in state.dashboards.values():
            assert stored["meta"]["folderUid"] == FOLDER_UID
        posts = [e for e in state.writes() if e.path == "/api/dashboards/db"]
        assert all(e.body["overwrite"] is True and e.body["dashboard"]["id"] is None for e in posts)

        writes = len(state.writes())
        second = push(api, SOURCE)
        assert second.created == second.updated == []
        assert len(state.writes()) == writes  # idempotent: not one write the second time

        # Someone edits a dashboard in Grafana's UI: the next push puts the code back.
        uid = uids[0]
        state.dashboards[uid]["dashboard"]["title"] = "modifié à la main"
        third = push(api, SOURCE)
        assert third.updated == [f"dashboard {uid}"]
        assert state.dashboards[uid]["dashboard"]["version"] == 2


def test_a_refused_token_is_a_precise_error() -> None:
    with FakeGrafana(TOKEN) as grafana, pytest.raises(SyncError, match=r"datasource: .*401"):
        push(connect(grafana.url, "wrong"), SOURCE)
