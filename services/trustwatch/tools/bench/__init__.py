"""Throughput benchmarks (`make bench`): each module measures one stage of the pipeline and
prints its numbers; run one with `python -m trustwatch.tools.bench.<module>`."""
