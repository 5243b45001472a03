"""Provision Grafana through its HTTP API with ``grafana-client``, idempotently.

:func:`push` makes Grafana hold the InfluxDB datasource (uid ``fabrique-influxdb``),
the folder (uid ``fabrique``) and every dashboard of ``json/``, each by its stable
uid: what is missing is created, what differs is updated (dashboards with
``overwrite``), what is equal is left alone, so a second push changes nothing.
Grafana's errors come back as :class:`SyncError` with the step that failed.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from dashboards import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID
from dashboards.check import load

logger = logging.getLogger(__name__)

#: Dashboard keys Grafana rewrites on every save (not part of what we compare).
_VOLATILE = ("id", "version")
#: Datasource keys compared to decide whether it needs an update.
_DATASOURCE_KEYS = ("name", "type", "access", "url", "database", "user", "jsonData")


class SyncError(RuntimeError):
    """Grafana refused or could not be reached (the message names the step)."""


@dataclass(frozen=True, slots=True)
class InfluxSource:
    """The InfluxDB that Grafana reads with InfluxQL.

    InfluxDB 1.x: ``database`` with ``user``/``password``. InfluxDB 2.x/3.x: the
    bucket's DBRP database, and a read ``token`` sent as ``Authorization: Token …``.
    """

    url: str
    database: str
    user: str = ""
    password: str = ""
    token: str = ""


@dataclass
class PushResult:
    """What a push did, by object: ``created``, ``updated`` and ``unchanged`` names."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def datasource_model(source: InfluxSource) -> dict[str, Any]:
    """The datasource as Grafana's ``/api/datasources`` takes it."""
    model: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": "Fabrique InfluxDB",
        "type": "influxdb",
        "access": "proxy",
        "url": source.url,
        "database": source.database,
        "user": source.user,
        "jsonData": {"dbName": source.database, "httpMode": "POST"},
    }
    secure: dict[str, str] = {}
    if source.password:
        secure["password"] = source.password
    if source.token:
        model["jsonData"]["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {source.token}"
    if secure:
        model["secureJsonData"] = secure
    return model


def _status(err: Exception) -> int | None:
    code = getattr(err, "status_code", None)
    return code if isinstance(code, int) else None


def _get(call: Any, *args: Any) -> Any:
    """``call(*args)``, or None when Grafana answers 404."""
    from grafana_client.client import GrafanaClientError

    try:
        return call(*args)
    except GrafanaClientError as err:
        if _status(err) == 404:
            return None
        raise


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(dashboard)
    for key in _VOLATILE:
        clean.pop(key, None)
    return clean


def push(api: Any, source: InfluxSource) -> PushResult:
    """Provision the datasource, the folder and the dashboards on ``api`` (a
    ``grafana_client.GrafanaApi``).

    Raises:
        SyncError: Grafana refused a step or could not be reached.
    """
    from grafana_client.client import GrafanaException

    result = PushResult()
    step = "datasource"
    try:
        wanted = datasource_model(source)
        current = _get(api.datasource.get_datasource_by_uid, DATASOURCE_UID)
        if current is None:
            api.datasource.create_datasource(wanted)
            result.created.append(f"datasource {DATASOURCE_UID}")
        elif any(current.get(k) != wanted.get(k) for k in _DATASOURCE_KEYS) or (
            "secureJsonData" in wanted and not current.get("secureJsonFields")
        ):
            api.datasource.update_datasource_by_uid(DATASOURCE_UID, wanted)
            result.updated.append(f"datasource {DATASOURCE_UID}")
        else:
            result.unchanged.append(f"datasource {DATASOURCE_UID}")

        step = "folder"
        folder = _get(api.folder.get_folder, FOLDER_UID)
        if folder is None:
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            result.created.append(f"folder {FOLDER_UID}")
        elif folder.get("title") != FOLDER_TITLE:
            api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            result.updated.append(f"folder {FOLDER_UID}")
        else:
            result.unchanged.append(f"folder {FOLDER_UID}")

        for name, dashboard in load().items():
            uid = dashboard["uid"]
            step = f"dashboard {uid}"
            current = _get(api.dashboard.get_dashboard, uid)
            if (
                current is not None
                and current.get("meta", {}).get("folderUid") == FOLDER_UID
                and _comparable(current.get("dashboard", {})) == _comparable(dashboard)
            ):
                result.unchanged.append(f"dashboard {uid}")
                continue
            body = {
                "dashboard": {**_comparable(dashboard), "id": None},
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": f"fabrique dashboards push ({name}.json)",
            }
            api.dashboard.update_dashboard(body)
            (result.created if current is None else result.updated).append(f"dashboard {uid}")
    except GrafanaException as err:
        raise SyncError(f"{step}: Grafana answered {_status(err)}: {err.message}") from err
    except OSError as err:
        raise SyncError(f"{step}: Grafana unreachable: {err}") from err
    logger.info(
        "grafana: %d created, %d updated, %d unchanged",
        len(result.created),
        len(result.updated),
        len(result.unchanged),
    )
    return result


def connect(url: str, credential: str) -> Any:
    """A ``GrafanaApi`` for ``url`` with a service-account token (or ``user:password``)."""
    from grafana_client.api import GrafanaApi

    auth: str | tuple[str, str] = credential
    if ":" in credential:
        user, _, password = credential.partition(":")
        auth = (user, password)
    return GrafanaApi.from_url(url, credential=auth)
