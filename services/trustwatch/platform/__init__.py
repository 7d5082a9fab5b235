"""The platform every service is built on: bus, transport loop, messages, store, config, telemetry.

Imports nothing of trustwatch above it (only the generated ``trustwatch.v1``)."""
