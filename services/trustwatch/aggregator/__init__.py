"""The aggregator: stores judgments idempotently, computes task metrics, exports them to Prometheus."""
