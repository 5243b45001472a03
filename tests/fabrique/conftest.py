"""Fixtures of the demo tests: a real VictoriaMetrics."""

from tests.tsdb import victoria  # noqa: F401 - the fixture
