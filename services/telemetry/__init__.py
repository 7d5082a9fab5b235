"""Prometheus metrics: every name is declared in :mod:`trustwatch.telemetry.names`."""
