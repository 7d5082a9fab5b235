"""The task contract, the metric record every task returns, and the task registry."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from trustwatch.benchmark.evaluators.base import Verdict
from trustwatch.platform.registry import Registry


@dataclass(frozen=True)
class TaskItem:
    """One prompt of a task: ``item_id`` is the record's position in its dataset file."""

    item_id: str
    prompt: str
    record: Mapping[str, Any]


@dataclass(frozen=True)
class ScoredItem:
    """What a metric function sees for one reply: the record, the reply and every verdict on it.

    ``sample`` numbers the replies to one item in a multi-sample run (0, 1, ...): metrics aggregate an
    item's samples first (see tasks/_metrics.py) and pair replies within one sample.
    """

    item_id: str
    record: Mapping[str, Any]
    response: str
    generation_error: str
    verdicts: Mapping[str, Verdict]
    sample: int = 0


@dataclass
class Metric:
    """One reported number.

    ``value`` is trustwatch's headline (corrected where the reference toolkit is wrong);
    ``reference_value`` reproduces the reference toolkit's semantics, for comparison with the
    published leaderboard, in the leaderboard's direction. ``n_total`` counts every reply (item x sample;
    pairs x samples for paired metrics) the metric is about: ``n_total = n_valid + n_invalid + n_error``,
    where ``n_error`` counts infrastructure failures (generation failed, a judge call failed or its reply
    could not be parsed) and ``n_invalid`` the model replies that could not be read; ``note`` says how
    invalid replies were treated and where ``value`` deviates from ``reference_value``. The one rule
    behind these counts is in tasks/_metrics.py.

    ``units`` are the per-item outcomes ``value`` aggregates, keyed by ``ScoredItem.item_id`` (1.0/0.0
    for a share, the item's score for a mean; an item judged several times - multi-sample runs - gets
    the mean of its outcomes); ``statistic`` names how ``value`` follows from them ("mean": ``value`` is
    their mean). Metrics that are no mean of per-item outcomes (macro-F1, a p-value, a maximum, a mean
    of groups) have ``units=None`` and ``statistic=""``. Units pair two runs item by item
    (``trustwatch compare``); they are not part of :meth:`to_dict`, so reports stay small.

    ``reference`` says how far ``reference_value`` is the reference's number (set by scoring from the
    run's judges, see benchmark/reference.py): ``"exact"`` (every judge it reads is the reference's, or
    none is involved), ``"approximate"`` (at least one is not) or ``"absent"`` (no reference value);
    ``""`` until labelled. ``reference_judges`` describes the judges it reads.
    """

    value: float | None
    reference_value: float | None
    n_total: int
    n_valid: int
    n_error: int
    n_invalid: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    higher_is_better: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    units: dict[str, float] | None = field(default=None, repr=False)
    statistic: str = ""
    reference: str = ""
    reference_judges: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, units=None))
        del d["units"]
        for k in ("value", "reference_value", "ci_low", "ci_high"):
            v = d[k]
            if v is not None and (isinstance(v, float) and math.isnan(v)):
                d[k] = None
        return d


MetricFn = Callable[[Sequence[ScoredItem]], dict[str, Metric]]


@dataclass(frozen=True)
class Task:
    name: str  # "<dimension>/<file stem>", e.g. "truthfulness/external"
    dataset: str  # path under the data folder, e.g. "truthfulness/external.json"
    temperature: float
    evaluators: tuple[str, ...]
    metrics: MetricFn
    description: str = ""
    prompt_field: str = "prompt"
    max_tokens: int = 512
    #: Record fields every record must have (checked at load time, with the record's position).
    required_fields: tuple[str, ...] = ()
    #: Evaluators for one record, where they differ by record (e.g. a keyword rule for one source and
    #: an LLM judge for another); None: every record gets ``evaluators``.
    route: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
    #: The evaluators whose verdicts one metric's ``reference_value`` reads, by metric key (for its
    #: exact/approximate label, benchmark/reference.py); None: every metric reads ``evaluators``.
    reference_judges: Callable[[str], tuple[str, ...]] | None = None

    def evaluators_for(self, record: Mapping[str, Any]) -> tuple[str, ...]:
        return self.route(record) if self.route is not None else self.evaluators

    def reference_judges_for(self, key: str) -> tuple[str, ...]:
        return self.reference_judges(key) if self.reference_judges is not None else self.evaluators

    @property
    def dimension(self) -> str:
        return self.name.split("/", 1)[0]


class UnknownTask(LookupError):
    pass


class DatasetError(ValueError):
    pass


def _task_of(module: ModuleType) -> list[Task]:
    task = getattr(module, "TASK", None)
    return [task] if isinstance(task, Task) else []


#: Every task: one module per dataset file, in one sub-package per dimension (tasks/<dimension>/<file>.py),
#: each defining ``TASK = Task(...)``.
TASKS: Registry[Task] = Registry(
    "task", "trustwatch.benchmark.tasks", lambda t: t.name, collect=_task_of, recursive=True, unknown=UnknownTask
)


def known() -> dict[str, Task]:
    return TASKS.known()


def get(name: str) -> Task:
    return TASKS.get(name)


def load_items(task: Task, data_dir: Path, limit: int | None = None) -> list[TaskItem]:
    """Read a task's dataset file into items, checking each record; errors name file and record."""
    path = Path(data_dir) / task.dataset
    if not path.is_file():
        raise DatasetError(
            f"dataset file {path} for task {task.name} is missing; run `trustwatch datasets download` "
            f"or point --data-dir / TRUSTWATCH_DATA_DIR at a folder holding {task.dataset}"
        )
    try:
        # strict=False: control characters inside strings are kept (awareness.json has U+0008);
        # the json module also accepts the bare NaN tokens of implicit_SocialChemistry101.json.
        records = json.loads(path.read_text(encoding="utf-8"), strict=False)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise DatasetError(f"{path} is not valid JSON ({exc}); re-download it") from exc
    if not isinstance(records, list):
        raise DatasetError(f"{path} must hold a JSON array of records, found {type(records).__name__}")
    items: list[TaskItem] = []
    for i, rec in enumerate(records):
        if limit is not None and len(items) >= limit:
            break
        if not isinstance(rec, dict):
            raise DatasetError(f"{path} record {i} is a {type(rec).__name__}, expected an object")
        prompt = rec.get(task.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetError(f"{path} record {i} has no usable {task.prompt_field!r} string")
        missing = [f for f in task.required_fields if f not in rec]
        if missing:
            raise DatasetError(f"{path} record {i} lacks field(s) {', '.join(missing)} that task {task.name} needs")
        record = {k: v for k, v in rec.items() if k != task.prompt_field}
        try:  # what goes on the bus must be UTF-8: a \ud800 escape decodes to a lone surrogate
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DatasetError(f"{path} record {i} holds text that is not valid Unicode ({exc.reason})") from None
        items.append(TaskItem(item_id=str(i), prompt=prompt, record=record))
    return items
