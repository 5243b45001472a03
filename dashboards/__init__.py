"""Grafana dashboards as code: the JSON under ``json/`` is the source of truth.

* :mod:`dashboards.check` validates the JSON and proves every query names only the
  measurements, tags and fields of :mod:`protocol.telemetry_schema`;
* :mod:`dashboards.sync` provisions the datasource, the folder and the dashboards
  through Grafana's HTTP API (``grafana-client``), idempotently;
* ``provisioning/`` holds Grafana's file provisioning, for sites that prefer it.
"""

from pathlib import Path

#: Where the dashboard JSON files live.
JSON_DIR = Path(__file__).parent / "json"
#: The datasource every panel names (created by ``fabrique dashboards push``).
DATASOURCE_UID = "fabrique-influxdb"
#: The Grafana folder holding the dashboards.
FOLDER_UID = "fabrique"
FOLDER_TITLE = "Fabrique"
