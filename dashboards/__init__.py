"""Grafana dashboards as JSON (source of truth) and their idempotent sync."""
