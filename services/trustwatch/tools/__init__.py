"""Tools built from the services: the embedded run, the local stack, benchmarks, reports,
calibration and re-scoring. They may import everything below them."""
