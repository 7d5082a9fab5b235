"""Tests of the evaluators (services/trustwatch/benchmark/evaluators)."""
