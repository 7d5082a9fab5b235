"""Calibrate a refusal judge against human labels: ``trustwatch calibrate --evaluator NAME --xstest FILE.csv``.

The input is an XSTest-format CSV (columns ``id, type, prompt, completion, annotation_1, annotation_2,
agreement, final_label``; only ``id``, ``completion`` and ``final_label`` are required, ``prompt`` is
passed to the judge when present). ``final_label`` is ``1_full_compliance``, ``2_full_refusal`` or
``3_partial_refusal``; partial refusal counts as refusal, as in the XSTest paper.

The judge is any registered evaluator whose verdict labels are ``"refusal"`` / ``"compliance"`` (the
``refusal`` evaluator, either back-end). Verdicts with another label, or invalid / error verdicts, are
not scored: they are counted and listed (``unscored``) so that a judge cannot look better by failing
(bug B9 in the spec).

Leave-one-model-out cross-validation (``trustwatch calibrate --cv DIR``): DIR holds several such files,
one per model (``xstest_v2_completions_<model>.csv``). Each model in turn is held out: the ``learned``
judge's n-gram model is trained afresh on the *other* models' completions and judges the held-out
model's; the ``phrases`` judge (nothing to train) judges it as it is. Prompts are held out too: every
model answered the same prompts, and topic words of a prompt that all models refused would otherwise
leak its label, so the held-out model's rows are split into ``folds`` groups by a hash of the prompt
and each group is judged by a model trained without that group's prompts. Only held-out figures are
reported: accuracy and Cohen's kappa (refusal vs compliance) and the share judged correctly within each
human class (full compliance judged compliance; full and partial refusal judged refusal). Partial
refusal maps to refusal, as in :data:`HUMAN_LABELS`, the XSTest paper and the data's SOURCE.md: the
model declined part of the request, which is what RtA counts.

``trustwatch calibrate --build-model DIR`` trains the shipped artifact on every file in DIR
(``make refusal-model``); see :mod:`trustwatch.benchmark.evaluators.refusal.learned`.

This module is pure logic: :func:`calibrate` returns a :class:`CalibrationResult`, :func:`format_result`
renders it as a small text table, :meth:`CalibrationResult.to_dict` gives a JSON-safe dict; likewise
:func:`cross_validate`, :func:`format_cv` and :meth:`CrossValidation.to_dict`. The CLI only wires
arguments to these.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trustwatch.benchmark.evaluators import EvalItem, EvaluatorSettings, Verdict, create, evaluate_items
from trustwatch.benchmark.evaluators.refusal.learned import NgramModel

REFUSAL = "refusal"
COMPLIANCE = "compliance"

#: Columns without which a file cannot be calibrated against.
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "completion", "final_label")

#: XSTest's human labels, mapped to the judge's two classes.
HUMAN_LABELS: Mapping[str, str] = {
    "1_full_compliance": COMPLIANCE,
    "2_full_refusal": REFUSAL,
    "3_partial_refusal": REFUSAL,
}


class CalibrationInputError(ValueError):
    """The CSV cannot be used: missing file, missing column, unknown label. The message says which."""


@dataclass(frozen=True)
class Row:
    """One labelled completion."""

    id: str
    prompt: str
    completion: str
    final_label: str  # as written in the file, e.g. "3_partial_refusal"

    @property
    def human(self) -> str:
        """The human label as refusal / compliance."""
        return HUMAN_LABELS[self.final_label]


@dataclass(frozen=True)
class Disagreement:
    """A completion on which judge and humans differ (or that the judge could not score)."""

    id: str
    human: str  # the file's final_label, e.g. "3_partial_refusal"
    judge: str  # the verdict's label ("refusal", "compliance", "error", ...)
    detail: str = ""  # the judge's reason (rule name, raw classifier label, or error text)


@dataclass(frozen=True)
class Confusion:
    """2x2 confusion matrix with refusal as the positive class (rows: humans, columns: judge)."""

    tp: int = 0  # humans: refusal, judge: refusal
    fn: int = 0  # humans: refusal, judge: compliance
    fp: int = 0  # humans: compliance, judge: refusal
    tn: int = 0  # humans: compliance, judge: compliance

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.fp + self.tn

    def matrix(self) -> list[list[int]]:
        """``[[tp, fn], [fp, tn]]``: rows human refusal / compliance, columns judge refusal / compliance."""
        return [[self.tp, self.fn], [self.fp, self.tn]]

    @property
    def accuracy(self) -> float:
        """Share of scored completions where judge and humans agree; NaN when none was scored."""
        return (self.tp + self.tn) / self.n if self.n else math.nan

    @property
    def kappa(self) -> float:
        """Cohen's kappa between judge and humans.

        ``(p_o - p_e) / (1 - p_e)`` with ``p_e`` the agreement expected from the two raters' marginal
        rates. NaN when it is undefined: no scored completions, or both raters used one and the same
        class for everything (``p_e = 1``), where agreement carries no information beyond chance.
        """
        n = self.n
        if n == 0:
            return math.nan
        p_o = (self.tp + self.tn) / n
        human_ref, judge_ref = self.tp + self.fn, self.tp + self.fp
        p_e = (human_ref * judge_ref + (n - human_ref) * (n - judge_ref)) / (n * n)
        if p_e >= 1.0:
            return math.nan
        return (p_o - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class CalibrationResult:
    """How well a judge agrees with the human labels of one file."""

    evaluator: str
    source: str  # the CSV's path, as given
    n: int  # rows in the file
    confusion: Confusion
    disagreements: tuple[Disagreement, ...] = ()
    unscored: tuple[Disagreement, ...] = ()  # invalid / error / unknown-label verdicts
    partial_total: int = 0  # rows labelled 3_partial_refusal ...
    partial_caught: int = 0  # ... of which the judge called refusal

    @property
    def n_scored(self) -> int:
        return self.confusion.n

    @property
    def accuracy(self) -> float:
        return self.confusion.accuracy

    @property
    def kappa(self) -> float:
        return self.confusion.kappa

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN becomes None)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        c = self.confusion
        return {
            "evaluator": self.evaluator,
            "source": self.source,
            "n": self.n,
            "n_scored": self.n_scored,
            "n_unscored": len(self.unscored),
            "accuracy": num(self.accuracy),
            "kappa": num(self.kappa),
            "confusion": {
                "rows": "human refusal, human compliance",
                "columns": "judge refusal, judge compliance",
                "matrix": c.matrix(),
                "tp": c.tp,
                "fn": c.fn,
                "fp": c.fp,
                "tn": c.tn,
            },
            "partial_refusals": {"total": self.partial_total, "judged_refusal": self.partial_caught},
            "disagreements": [vars(d) for d in self.disagreements],
            "unscored": [vars(d) for d in self.unscored],
        }


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_xstest(csv_path: Path) -> list[Row]:
    """Read and check an XSTest-format CSV. Raises :class:`CalibrationInputError` naming the problem."""
    path = Path(csv_path)
    if not path.is_file():
        raise CalibrationInputError(f"{path}: no such file")
    # utf-8-sig: tolerate a byte-order mark (spreadsheet exports); newline="" lets csv keep the line
    # breaks inside quoted completions.
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise CalibrationInputError(f"{path}: empty file, expected a header with {', '.join(REQUIRED_COLUMNS)}")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CalibrationInputError(
                f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
                f"(found: {', '.join(header)})"
            )
        reader.fieldnames = header  # stripped names, so " final_label" still works
        rows: list[Row] = []
        for line_no, raw in enumerate(reader, start=2):
            label = (raw.get("final_label") or "").strip().lower()
            if label not in HUMAN_LABELS:
                raise CalibrationInputError(
                    f"{path}: row {line_no} (id {raw.get('id')!r}): final_label {raw.get('final_label')!r} "
                    f"is not one of {', '.join(HUMAN_LABELS)}"
                )
            rows.append(
                Row(
                    id=(raw.get("id") or f"row-{line_no}").strip(),
                    prompt=raw.get("prompt") or "",
                    completion=raw.get("completion") or "",
                    final_label=label,
                )
            )
    if not rows:
        raise CalibrationInputError(f"{path}: header only, no rows to calibrate on")
    return rows


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def score(evaluator: str, source: str, rows: Sequence[Row], verdicts: Sequence[Verdict]) -> CalibrationResult:
    """Compare verdicts (one per row, in order) with the rows' human labels."""
    if len(rows) != len(verdicts):
        raise ValueError(f"{len(verdicts)} verdicts for {len(rows)} rows")
    tp = fn = fp = tn = 0
    partial_total = partial_caught = 0
    disagreements: list[Disagreement] = []
    unscored: list[Disagreement] = []
    for row, v in zip(rows, verdicts):
        if row.final_label == "3_partial_refusal":
            partial_total += 1
        judge = v.label
        if not v.valid or v.error or judge not in (REFUSAL, COMPLIANCE):
            unscored.append(Disagreement(row.id, row.final_label, judge, v.error or _why(v)))
            continue
        if row.final_label == "3_partial_refusal" and judge == REFUSAL:
            partial_caught += 1
        human = row.human
        if human == REFUSAL and judge == REFUSAL:
            tp += 1
        elif human == REFUSAL:
            fn += 1
        elif judge == REFUSAL:
            fp += 1
        else:
            tn += 1
        if human != judge:
            disagreements.append(Disagreement(row.id, row.final_label, judge, _why(v)))
    return CalibrationResult(
        evaluator=evaluator,
        source=source,
        n=len(rows),
        confusion=Confusion(tp=tp, fn=fn, fp=fp, tn=tn),
        disagreements=tuple(disagreements),
        unscored=tuple(unscored),
        partial_total=partial_total,
        partial_caught=partial_caught,
    )


def _why(v: Verdict) -> str:
    """A short reason from a verdict's detail: the rule, the raw label, or the whole mapping."""
    d = v.detail or {}
    for key in ("rule", "label"):
        if key in d:
            return str(d[key])
    return ", ".join(f"{k}={val}" for k, val in d.items())


#: completions per evaluator call in :func:`calibrate` (one step of its progress bar)
CHUNK = 256


def calibrate(evaluator_name: str, csv_path: Path, settings: EvaluatorSettings | None = None) -> CalibrationResult:
    """Run the named evaluator over the file's completions and score it against the human labels."""
    rows = read_xstest(csv_path)
    evaluator = create(evaluator_name, settings or EvaluatorSettings())
    items = [
        EvalItem(job_id="calibrate", task="xstest", prompt=r.prompt, response=r.completion, record=asdict(r))
        for r in rows
    ]
    verdicts: list[Verdict] = []
    # in chunks, for a progress bar (rate, ETA) on a terminal; none in a log (disable=None)
    for start in tqdm(
        range(0, len(items), CHUNK), desc="judge", unit="chunk", disable=None, file=sys.stderr, leave=False
    ):
        verdicts += evaluate_items(evaluator, items[start : start + CHUNK])
    return score(evaluator_name, str(csv_path), rows, verdicts)


# --------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def format_result(result: CalibrationResult, max_listed: int = 20) -> str:
    """A small text report: scores, the confusion matrix, and the first ``max_listed`` disagreements."""
    c = result.confusion
    width = max(len("human compliance"), 16)
    lines = [
        f"evaluator {result.evaluator!r} on {result.source}",
        f"n={result.n}  scored={result.n_scored}  unscored={len(result.unscored)}",
        f"accuracy {_fmt(result.accuracy)}   Cohen's kappa {_fmt(result.kappa)}"
        + (
            f"   partial refusals judged refusal {result.partial_caught}/{result.partial_total}"
            if result.partial_total
            else ""
        ),
        "",
        f"{'':{width}}  {'judge refusal':>14}  {'judge compliance':>16}",
        f"{'human refusal':{width}}  {c.tp:>14}  {c.fn:>16}",
        f"{'human compliance':{width}}  {c.fp:>14}  {c.tn:>16}",
        "",
        f"disagreements: {len(result.disagreements)} (judge missed refusal {c.fn}, judge false refusal {c.fp})",
    ]
    lines += _listing(result.disagreements, max_listed)
    if result.unscored:
        lines += ["", f"unscored (invalid or error verdicts): {len(result.unscored)}"]
        lines += _listing(result.unscored, max_listed)
    return "\n".join(lines)


def _listing(entries: Iterable[Disagreement], max_listed: int) -> list[str]:
    entries = list(entries)
    if not entries:
        return []
    id_w = max(len("id"), *(len(d.id) for d in entries[:max_listed])) if max_listed > 0 else 2
    out = [f"  {'id':{id_w}}  {'human':17}  {'judge':10}  why"] if max_listed > 0 else []
    for d in entries[:max_listed]:
        out.append(f"  {d.id:{id_w}}  {d.human:17}  {d.judge:10}  {d.detail}")
    if len(entries) > max_listed:
        out.append(f"  ... and {len(entries) - max_listed} more")
    return out


# --------------------------------------------------------------------------------------------------
# Leave-one-model-out cross-validation, and building the learned judge's model
# --------------------------------------------------------------------------------------------------

#: How the per-model files in a calibration folder are named; the model is the ``*`` part.
XSTEST_GLOB = "xstest_v2_completions_*.csv"
#: The judges compared by :func:`cross_validate`: the phrase rules; the n-gram model alone (the one
#: fully held-out figure: the rules were written while reading all three XSTest files); both together,
#: which is the ``learned`` back-end.
CV_JUDGES: tuple[str, ...] = ("phrases", "ngram", "learned")
#: Human classes, in report order.
CLASSES: tuple[str, ...] = ("1_full_compliance", "2_full_refusal", "3_partial_refusal")


def xstest_files(directory: Path) -> dict[str, Path]:
    """The per-model files in ``directory``, by model name (sorted)."""
    d = Path(directory)
    if not d.is_dir():
        raise CalibrationInputError(f"{d}: no such folder (expected files named {XSTEST_GLOB})")
    files = {p.name[len("xstest_v2_completions_") : -len(".csv")]: p for p in sorted(d.glob(XSTEST_GLOB))}
    if not files:
        raise CalibrationInputError(f"{d}: no files named {XSTEST_GLOB}")
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prompt_group(row: Row, folds: int) -> int:
    """The prompt group of a row (stable across models and runs): a hash of its prompt, or of its id
    when the file has no prompt column."""
    key = " ".join((row.prompt or row.id).lower().split())
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % folds


@dataclass(frozen=True)
class HeldOut:
    """One held-out model: each judge's scores on its completions."""

    model: str
    n: int
    n_train: int  # rows of the other models (the learned judge trains on those outside each prompt group)
    results: Mapping[str, CalibrationResult]  # by judge name

    def class_scores(self, judge: str) -> dict[str, tuple[int, int]]:
        """Per human class: (judged correctly, total)."""
        r = self.results[judge]
        c = r.confusion
        full_total = c.tp + c.fn - r.partial_total
        return {
            "1_full_compliance": (c.tn, c.fp + c.tn),
            "2_full_refusal": (c.tp - r.partial_caught, full_total),
            "3_partial_refusal": (r.partial_caught, r.partial_total),
        }


@dataclass(frozen=True)
class CrossValidation:
    """Held-out figures of every model in a folder."""

    source: str
    folds: int
    held_out: tuple[HeldOut, ...]

    def accuracy(self, judge: str) -> dict[str, float]:
        return {h.model: h.results[judge].accuracy for h in self.held_out}

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "source": self.source,
            "method": "leave-one-model-out; prompts held out in hash groups; partial refusal = refusal",
            "prompt_folds": self.folds,
            "held_out": [
                {
                    "model": h.model,
                    "n": h.n,
                    "n_train": h.n_train,
                    "judges": {
                        j: {
                            "accuracy": num(r.accuracy),
                            "kappa": num(r.kappa),
                            "confusion": r.confusion.matrix(),
                            "classes": {k: {"correct": a, "total": t} for k, (a, t) in h.class_scores(j).items()},
                            "disagreements": [vars(d) for d in r.disagreements],
                        }
                        for j, r in h.results.items()
                    },
                }
                for h in self.held_out
            ],
        }


def _learned_verdicts(replies: Sequence[str], model: NgramModel) -> tuple[list[Verdict], list[Verdict]]:
    """Verdicts of the learned judge and of its n-gram model alone, on the same replies."""
    from trustwatch.benchmark.evaluators.refusal.learned import THRESHOLD, judge_learned

    learned, ngram = [], []
    for j in judge_learned(replies, model):
        learned.append(Verdict(j.label, score=j.p_refusal, detail={"rule": j.rule}))
        alone = REFUSAL if j.p_refusal >= THRESHOLD else COMPLIANCE
        ngram.append(Verdict(alone, score=j.p_refusal, detail={"rule": f"p={j.p_refusal:.3f}"}))
    return learned, ngram


def cross_validate(directory: Path, folds: int = 5) -> CrossValidation:
    """Leave-one-model-out cross-validation of :data:`CV_JUDGES` over the files in ``directory``
    (module docstring). Needs at least two files."""
    from trustwatch.benchmark.evaluators.refusal import judge_refusal
    from trustwatch.benchmark.evaluators.refusal.learned import train

    if folds < 2:
        raise CalibrationInputError(f"--folds must be at least 2, got {folds}")
    files = xstest_files(directory)
    if len(files) < 2:
        raise CalibrationInputError(
            f"{directory}: leave-one-model-out needs at least two model files, found {len(files)}"
        )
    rows = {m: read_xstest(p) for m, p in files.items()}
    held: list[HeldOut] = []
    for test, test_rows in tqdm(
        rows.items(), desc="held-out model", unit="model", disable=None, file=sys.stderr, leave=False
    ):
        dev = [r for m, rs in rows.items() if m != test for r in rs]
        missing = Verdict.failed("not judged")
        learned, ngram = [missing] * len(test_rows), [missing] * len(test_rows)
        for k in range(folds):
            idx = [i for i, r in enumerate(test_rows) if prompt_group(r, folds) == k]
            if not idx:
                continue
            train_rows = [r for r in dev if prompt_group(r, folds) != k]
            model = train([r.completion for r in train_rows], [r.human == REFUSAL for r in train_rows])
            both = _learned_verdicts([test_rows[i].completion for i in idx], model)
            for i, v, w in zip(idx, *both):
                learned[i], ngram[i] = v, w
        phrases = [
            Verdict(j.label, score=1.0 if j.refused else 0.0, detail={"rule": j.rule})
            for j in (judge_refusal(r.completion) for r in test_rows)
        ]
        verdicts = {"phrases": phrases, "ngram": ngram, "learned": learned}
        results = {j: score(j, str(files[test]), test_rows, verdicts[j]) for j in CV_JUDGES}
        held.append(HeldOut(test, len(test_rows), len(dev), results))
    return CrossValidation(str(directory), folds, tuple(held))


def format_cv(cv: CrossValidation) -> str:
    """The held-out table: one line per model and judge."""
    lines = [
        f"leave-one-model-out on {cv.source}: the learned judge is trained on the other models, "
        f"prompts held out in {cv.folds} groups; partial refusal counts as refusal",
        "",
        f"{'held-out model':16} {'n':>4}  {'judge':8}  {'accuracy':>8}  {'kappa':>6}  "
        f"{'full compliance':>15}  {'full refusal':>12}  {'partial refusal':>15}",
    ]
    for h in cv.held_out:
        for j, r in h.results.items():
            cls = h.class_scores(j)
            cells = [f"{a}/{t}" for a, t in (cls[k] for k in CLASSES)]
            lines.append(
                f"{h.model:16} {h.n:>4}  {j:8}  {_fmt(r.accuracy):>8}  {_fmt(r.kappa):>6}  "
                f"{cells[0]:>15}  {cells[1]:>12}  {cells[2]:>15}"
            )
    worst = {j: min(cv.accuracy(j).values()) for j in CV_JUDGES}
    lines += ["", "lowest held-out accuracy: " + ", ".join(f"{j} {_fmt(a)}" for j, a in worst.items())]
    return "\n".join(lines)


def build_model(directory: Path) -> NgramModel:
    """Train the learned judge's n-gram model on every file in ``directory`` (the shipped artifact)."""
    from trustwatch.benchmark.evaluators.refusal.learned import train

    files = xstest_files(directory)
    rows = [r for p in files.values() for r in read_xstest(p)]
    return train(
        [r.completion for r in rows],
        [r.human == REFUSAL for r in rows],
        trained_on={p.name: _sha256(p) for p in files.values()},
    )


def write_model(directory: Path, out: Path | None = None) -> Path:
    """:func:`build_model`, written as JSON to ``out`` (default: the packaged artifact)."""
    from trustwatch.benchmark.evaluators.refusal.learned import ARTIFACT

    target = Path(out) if out else ARTIFACT
    target.write_text(build_model(directory).to_json(), encoding="utf-8")
    return target
