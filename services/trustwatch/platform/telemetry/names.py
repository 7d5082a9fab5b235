"""Every Prometheus metric name trustwatch exports, in one place.

Dashboards (k8s/monitoring) and alert rules are generated from or checked against this module.
"""

from __future__ import annotations

from typing import Final

# -- service health (every consuming service; label `service`) ------------------------------------
# Counter: messages taken from a topic and processed (label `topic`).
MESSAGES_CONSUMED: Final = "trustwatch_messages_consumed_total"
# Counter: messages produced (label `topic`).
MESSAGES_PRODUCED: Final = "trustwatch_messages_produced_total"
# Counter: messages sent to the dead-letter topic (label `reason_kind`: decode | process).
DEAD_LETTERS: Final = "trustwatch_dead_letters_total"
# Histogram: seconds to process one polled batch, from poll to commit.
BATCH_SECONDS: Final = "trustwatch_batch_seconds"
# Gauge: messages in the consumed topics not yet committed by the service's group.
CONSUMER_LAG: Final = "trustwatch_consumer_lag"
# Gauge: 1 while the service's transport loop works, 0 while its circuit breaker is open (a batch
# failed, e.g. a dependency is down; consumption pauses and is retried with backoff).
WORKER_HEALTHY: Final = "trustwatch_worker_healthy"
# Counter: offset commits the group refused (CommitFailedError: the partitions moved to another
# member, e.g. after a batch outlived max.poll.interval); the batch is redelivered.
COMMIT_FAILURES: Final = "trustwatch_commit_failures_total"

# -- generator (labels `target`, `backend`) ---------------------------------------------------------
# Counter: completions produced (label `status`: ok | error).
COMPLETIONS: Final = "trustwatch_completions_total"
# Histogram: seconds per generated reply, as the back-end measured it.
GENERATION_SECONDS: Final = "trustwatch_generation_seconds"
# Counter: tokens generated.
GENERATED_TOKENS: Final = "trustwatch_generated_tokens_total"

# -- judge (label `evaluator`) ----------------------------------------------------------------------
# Counter: verdicts (label `outcome`: valid | invalid | error).
VERDICTS: Final = "trustwatch_verdicts_total"
# Histogram: seconds per Evaluate call (a batch).
EVALUATE_SECONDS: Final = "trustwatch_evaluate_seconds"

# -- aggregator -------------------------------------------------------------------------------------
# Counter: judgments stored for the first time (duplicates are not counted).
JUDGMENTS_STORED: Final = "trustwatch_judgments_stored_total"
# Counter: judgments received again for an id already stored (at-least-once redelivery).
JUDGMENTS_DUPLICATE: Final = "trustwatch_judgments_duplicate_total"
# Gauge: a task metric of the newest complete run (by created time) per target (labels `target`,
# `dimension`, `task`, `metric`, `direction`: higher_is_better | lower_is_better). An older run never
# replaces a newer one's values; the aggregator restores them from the database at start.
TRUST_SCORE: Final = "trustwatch_trust_score"
# Gauge: the reference-compatible value of the same metric (same labels).
TRUST_SCORE_REFERENCE: Final = "trustwatch_trust_score_reference"
# Gauge: 95% interval bounds of the same metric (same labels and `bound`: low | high).
TRUST_SCORE_CI: Final = "trustwatch_trust_score_ci"
# Gauge: whether the same metric's reference value is the reference toolkit's exactly (same labels;
# 1: exact, every judge it reads is the reference's or none is involved; 0: approximate, see the
# report for the judges). No series when the metric has no reference value.
TRUST_SCORE_REFERENCE_EXACT: Final = "trustwatch_trust_score_reference_exact"
# Gauge: items behind the same metric (same labels and `kind`: total | valid | invalid | error;
# total = valid + invalid + error, invalid: replies the judge could not read, error: generation or
# judge failures).
TRUST_SCORE_ITEMS: Final = "trustwatch_trust_score_items"
# Gauge: judgments stored for an incomplete run against those it expects (labels `run`, `target`,
# `kind`: stored | expected); removed once the run is complete.
RUN_PROGRESS: Final = "trustwatch_run_progress"
# Gauge: planned judgments still missing (none, or a transient error) of an incomplete run past its
# deadline (labels `run`, `target`); removed once the run is complete. See TRUSTWATCH_RUN_DEADLINE_S.
RUN_OVERDUE_MISSING: Final = "trustwatch_run_overdue_missing"
# Gauge: unix time the newest complete run of a target was completed (label `target`), from the
# database, so it survives an aggregator restart.
LAST_RUN_COMPLETED: Final = "trustwatch_last_run_completed_timestamp_seconds"
# -- comparisons (aggregator): each target's newest complete run against the target's previous
# complete comparable run (`against="previous"`) and against its pinned baseline (`against="baseline"`,
# `trustwatch baseline pin RUN`), computed once when the run completes (trustwatch.benchmark.compare:
# paired tests, Holm-adjusted p-values). Labels `target`, `dimension`, `task`, `metric`, `direction`,
# `against`. An older run's comparison never replaces a newer one's; restored from the database at start.
# Gauge: the comparison's verdict as a state set (label `verdict`: regressed | improved | unchanged |
# inconclusive): 1 for the current verdict, 0 for the three others.
COMPARISON_VERDICT: Final = "trustwatch_comparison_verdict"
# Gauge: new - base; the paired difference over the items both runs judged when the metric is tested,
# else the difference of the reported values.
COMPARISON_DIFFERENCE: Final = "trustwatch_comparison_difference"
# Gauge: 95% paired-bootstrap interval bounds of the difference (same labels and `bound`: low | high);
# only for tested metrics.
COMPARISON_DIFFERENCE_CI: Final = "trustwatch_comparison_difference_ci"
# Gauge: the paired test's p-value adjusted (Holm) over every tested metric of the comparison; only
# for tested metrics.
COMPARISON_P_ADJUSTED: Final = "trustwatch_comparison_p_adjusted"
# Gauge (info, always 1): which runs a target's comparison compared (labels `target`, `against`,
# `base_run`, `new_run`, `comparable`: true | false; a not-comparable pair has no per-metric series).
COMPARISON_INFO: Final = "trustwatch_comparison_info"

ALL: Final = tuple(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and v.startswith("trustwatch_")
)
