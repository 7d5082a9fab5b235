"""TrustLLM tasks. A task is one module in this package defining ``TASK = Task(...)``: its dataset
file, how its prompt is sent, its evaluators and its metric function. Adding a task is that module
and its test; nothing else changes."""

from trustwatch.benchmark.tasks.base import (
    Metric,
    ScoredItem,
    Task,
    TaskItem,
    UnknownTask,
    get,
    known,
    load_items,
)

__all__ = ["Metric", "ScoredItem", "Task", "TaskItem", "UnknownTask", "get", "known", "load_items"]
