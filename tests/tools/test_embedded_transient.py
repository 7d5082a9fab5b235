"""Issue 8, errors are not final, end to end on the embedded pipeline: an endpoint fault leaves
transient error items, the run says how many and that re-running retries them, and re-running the
same command regenerates exactly those; the model's own (final) failures are not retried."""

from collections.abc import Sequence

from trustwatch.generator.backends._kinds import failed
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult
from trustwatch.platform.store import Store
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools.embedded import run_embedded
from trustwatch.v1 import messages_pb2 as pb

SUITE = {
    "name": "emb",
    "tasks": [{"task": "truthfulness/external", "limit": 12}, {"task": "safety/misuse", "limit": 8}],
}


class _Flaky(Backend):
    """Fails every ``every``-th prompt it sees, as the endpoint (transient) or as the model (final)."""

    preferred_batch = 5

    def __init__(self, transient_every: int = 0, final_every: int = 0) -> None:
        self.transient_every, self.final_every = transient_every, final_every
        self.prompts: list[str] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        out = []
        for r in requests:
            self.prompts.append(r.request_id)
            n = len(self.prompts)
            if self.transient_every and n % self.transient_every == 0:
                out.append(failed(r.request_id, "gave up after 6 attempts: HTTP 503", pb.ERROR_KIND_TRANSIENT))
            elif self.final_every and n % self.final_every == 1:
                out.append(failed(r.request_id, "HTTP 400: content filter", pb.ERROR_KIND_FINAL))
            else:
                out.append(GenResult(r.request_id, text="Answer: Supports.", completion_tokens=3))
        return out


def test_rerun_retries_exactly_the_transient_items(tmp_path, data_dir):
    db = f"sqlite:///{tmp_path}/r.db"
    suite, target = parse_suite(SUITE), [parse_target("vllm:fake")]
    outage = _Flaky(transient_every=3, final_every=7)
    said: list[str] = []
    (r1,) = run_embedded(suite, target, data_dir, db, lambda t: outage, progress=said.append)
    store = Store(db)
    transient = store.transient_job_ids(r1.run_id)
    final = {r.job_id for r in store.judgments(r1.run_id) if r.error_kind == pb.ERROR_KIND_FINAL}
    assert len(transient) == 20 // 3 and final and not final & set(transient)
    assert any(
        f"{len(transient)} item(s) ended with a transient error" in m and "retries exactly those" in m for m in said
    ), said

    healthy = _Flaky()
    said.clear()
    (r2,) = run_embedded(suite, target, data_dir, db, lambda t: healthy, progress=said.append)
    assert sorted(healthy.prompts) == transient  # exactly the transient items, no more
    assert store.transient_job_ids(r1.run_id) == [] and not any("transient" in m for m in said)
    rows = store.judgments(r1.run_id)
    assert len(rows) == 20 and {r.job_id for r in rows if r.error} == final  # final errors stay
    assert sum(t.n_items for t in r2.tasks.values()) == 20

    assert r2.run_id == r1.run_id  # the run with transient errors was incomplete: resumed
    third = _Flaky()
    (r3,) = run_embedded(suite, target, data_dir, db, lambda t: third, progress=lambda s: None)
    # r1 is now complete, so the next invocation is a new measurement: a new run, every prompt again.
    assert r3.run_id != r1.run_id and len(third.prompts) == 20
