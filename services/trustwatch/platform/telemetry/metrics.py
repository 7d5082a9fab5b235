"""Prometheus metric objects for services, created on a registry passed in (tests use a fresh one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trustwatch.platform.telemetry import names

_BATCH_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServiceMetrics:
    """Health metrics every consuming service exports (see names.py for meanings)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            names.MESSAGES_CONSUMED.removesuffix("_total"),
            "Messages processed",
            ["service", "topic"],
            registry=registry,
        )
        self.produced = Counter(
            names.MESSAGES_PRODUCED.removesuffix("_total"), "Messages produced", ["service", "topic"], registry=registry
        )
        self.dead_letters = Counter(
            names.DEAD_LETTERS.removesuffix("_total"),
            "Messages sent to the DLQ",
            ["service", "reason_kind"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            names.BATCH_SECONDS,
            "Seconds from poll to commit of one batch",
            ["service"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(names.CONSUMER_LAG, "Uncommitted messages in consumed topics", ["service"], registry=registry)
        self.worker_healthy = Gauge(
            names.WORKER_HEALTHY, "1: transport loop working; 0: circuit breaker open", ["service"], registry=registry
        )
        self.commit_failures = Counter(
            names.COMMIT_FAILURES.removesuffix("_total"),
            "Offset commits refused by the group",
            ["service"],
            registry=registry,
        )
        # generator
        self.completions = Counter(
            names.COMPLETIONS.removesuffix("_total"),
            "Completions produced",
            ["target", "backend", "status"],
            registry=registry,
        )
        self.generation_seconds = Histogram(
            names.GENERATION_SECONDS,
            "Seconds per reply",
            ["target", "backend"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.generated_tokens = Counter(
            names.GENERATED_TOKENS.removesuffix("_total"), "Tokens generated", ["target", "backend"], registry=registry
        )
        # judge
        self.verdicts = Counter(
            names.VERDICTS.removesuffix("_total"), "Verdicts", ["evaluator", "outcome"], registry=registry
        )
        self.evaluate_seconds = Histogram(
            names.EVALUATE_SECONDS,
            "Seconds per Evaluate batch",
            ["evaluator"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        # aggregator
        self.stored = Counter(names.JUDGMENTS_STORED.removesuffix("_total"), "Judgments stored", registry=registry)
        self.duplicates = Counter(
            names.JUDGMENTS_DUPLICATE.removesuffix("_total"), "Judgments received again", registry=registry
        )
        trust_labels = ["target", "dimension", "task", "metric", "direction"]
        self.trust = Gauge(names.TRUST_SCORE, "Task metric of the newest complete run", trust_labels, registry=registry)
        self.trust_ref = Gauge(
            names.TRUST_SCORE_REFERENCE, "Reference-compatible value", trust_labels, registry=registry
        )
        self.trust_ref_exact = Gauge(
            names.TRUST_SCORE_REFERENCE_EXACT,
            "1: the reference value is exactly the reference toolkit's; 0: approximate",
            trust_labels,
            registry=registry,
        )
        self.trust_ci = Gauge(names.TRUST_SCORE_CI, "95% interval bound", [*trust_labels, "bound"], registry=registry)
        self.trust_items = Gauge(
            names.TRUST_SCORE_ITEMS, "Items behind a metric", [*trust_labels, "kind"], registry=registry
        )
        self.run_progress = Gauge(
            names.RUN_PROGRESS,
            "Judgments stored vs expected (incomplete runs)",
            ["run", "target", "kind"],
            registry=registry,
        )
        self.run_overdue = Gauge(
            names.RUN_OVERDUE_MISSING,
            "Judgments missing from an incomplete run past its deadline",
            ["run", "target"],
            registry=registry,
        )
        self.last_run = Gauge(
            names.LAST_RUN_COMPLETED, "When the newest complete run finished (unix s)", ["target"], registry=registry
        )
        cmp_labels = [*trust_labels, "against"]
        self.comparison_verdict = Gauge(
            names.COMPARISON_VERDICT,
            "Verdict of the newest run against the previous or baseline run (1: current verdict)",
            [*cmp_labels, "verdict"],
            registry=registry,
        )
        self.comparison_diff = Gauge(
            names.COMPARISON_DIFFERENCE, "New minus base value of a metric", cmp_labels, registry=registry
        )
        self.comparison_diff_ci = Gauge(
            names.COMPARISON_DIFFERENCE_CI,
            "95% paired-bootstrap interval bound of the difference",
            [*cmp_labels, "bound"],
            registry=registry,
        )
        self.comparison_p = Gauge(
            names.COMPARISON_P_ADJUSTED, "Holm-adjusted p-value of the paired test", cmp_labels, registry=registry
        )
        self.comparison_info = Gauge(
            names.COMPARISON_INFO,
            "The runs a comparison compared (always 1)",
            ["target", "against", "base_run", "new_run", "comparable"],
            registry=registry,
        )
