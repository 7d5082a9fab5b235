"""Contract tests of the message bus, run against every implementation."""
