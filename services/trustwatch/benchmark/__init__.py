"""The TrustLLM benchmark as pure logic: tasks, evaluators, scoring, statistics, the dataset.

Imports the platform only; no service, no tool."""
