"""Prometheus metrics: every name is declared in :mod:`trustwatch.platform.telemetry.names`."""
