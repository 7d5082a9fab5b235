"""P4: trustwatch's vLLM path against the reference toolkit's way of generating.

The reference generates with Hugging Face ``transformers``: one prompt at a time, chat template,
``model.generate``, decode. That loop is written here from the transformers API (nothing of the
reference is imported), greedy, the same ``max_new_tokens``, on the same tiny model and prompts as
:class:`VllmBackend` gets. Reported: prompts/s of each and their ratio (target >= 20x).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trustwatch.tools.bench.generation import _measure, vllm_bench_step
from trustwatch.tools.bench.report import ratio_interval


def hf_one_at_a_time_step(model_dir: str, prompts: Sequence[str], max_tokens: int) -> Callable[[], tuple[int, int]]:
    """Load the model with transformers (CPU, eval mode); the step generates each prompt alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def step() -> tuple[int, int]:
        tokens = 0
        with torch.inference_mode():
            for p in prompts:
                text = tok.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                )
                enc = tok(text, return_tensors="pt", add_special_tokens=False)
                out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad)
                new = out[0, enc["input_ids"].shape[1] :]
                tok.decode(new, skip_special_tokens=True)
                tokens += int(new.shape[0])
        return tokens, 0

    return step


def bench_p4(model_dir: str, prompts: Sequence[str], max_tokens: int = 128, repeats: int = 3) -> dict[str, Any]:
    """The HF loop and ``VllmBackend.generate`` (one batch of every prompt), alternating."""
    from trustwatch.generator.backends.vllm_engine import VllmBackend

    backend = VllmBackend(model_dir, max_model_len=2048, seed=0)
    try:
        # Loaded and run on the engine's thread, as VllmBackend.generate runs: one OpenMP team for
        # both paths (a second team on this thread would slow both; see "One engine thread" in
        # trustwatch.generator.backends.vllm_engine).
        hf = backend.on_engine_thread(hf_one_at_a_time_step, model_dir, prompts, max_tokens)
        steps = {
            "transformers generate, one prompt at a time": lambda: backend.on_engine_thread(hf),
            "VllmBackend.generate": vllm_bench_step(backend, prompts, max_tokens),
        }
        for s in steps.values():
            s()  # warm-up
        rows = _measure(steps, len(prompts), repeats)
    finally:
        backend.close()
    return {
        "n": len(prompts),
        "max_tokens": max_tokens,
        "runs": rows,
        "speedup": rows[1]["prompts_per_s"] / rows[0]["prompts_per_s"],
        "speedup_interval": ratio_interval(rows[0], rows[1]),
        "token_speedup": rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"] if rows[0]["tokens_per_s"] else None,
    }
