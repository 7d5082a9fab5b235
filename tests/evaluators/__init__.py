"""Tests of the evaluators (services/evaluators)."""
