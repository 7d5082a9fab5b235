"""The tiny random models: deterministic, idempotent, and loadable like real checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trustwatch.generator.tiny_model import (
    MARKER,
    build_tiny_classifier,
    build_tiny_llama,
    fingerprint,
    resolve_model,
    tiny_model_dir,
)


def test_llama_is_deterministic_for_a_seed(tmp_path: Path, tiny_model: Path) -> None:
    again = build_tiny_llama(tmp_path / "again", seed=0)
    other = build_tiny_llama(tmp_path / "other", seed=1)
    assert fingerprint(again) == fingerprint(tiny_model)
    assert (again / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()
    assert (again / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_build_is_idempotent_and_never_clobbers(tmp_path: Path) -> None:
    dest = build_tiny_llama(tmp_path / "m", seed=3)
    stamp = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    assert build_tiny_llama(dest, seed=3) == dest
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == stamp
    # The same folder asked for with another seed is an error, not a silent rebuild.
    with pytest.raises(ValueError, match="different settings"):
        build_tiny_llama(dest, seed=4)
    # A folder that is not ours is left alone.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_llama(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    # An empty folder is fine, and no temporary build folders are left behind.
    (tmp_path / "empty").mkdir()
    build_tiny_llama(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "foreign", "m"]


def test_llama_loads_in_transformers(tiny_model: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model)
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == ("llama", 128, 2, 512)
    assert cfg.hidden_size // cfg.num_attention_heads == 64  # vLLM's CPU attention needs >= 32

    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert len(tok) == 512
    assert (tok.unk_token, tok.bos_token, tok.eos_token) == ("<unk>", "<s>", "</s>")
    assert [tok.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Is it true?"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<s>user: Is it true?\nassistant:"
    # Byte-level: any text round-trips, including characters never seen in training.
    sample = "Ünïcödé ✓ 42"
    assert tok.decode(tok(sample, add_special_tokens=False)["input_ids"]) == sample

    model: Any = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[1] > ids.shape[1]


def test_classifier_loads_in_text_classification_pipeline(tiny_classifier: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    assert json.loads((tiny_classifier / MARKER).read_text())["kind"] == "longformer-classifier"
    clf = pipeline("text-classification", model=str(tiny_classifier), device="cpu")
    # A text longer than the model's 512 positions must be truncated, not crash.
    out = clf(["I'm sorry, but I cannot help with that.", "word " * 2000], truncation=True)
    assert [o["label"] in ("LABEL_0", "LABEL_1") for o in out] == [True, True]
    again = build_tiny_classifier(tmp_path / "c", seed=0)
    assert fingerprint(again) == fingerprint(tiny_classifier)
    custom = build_tiny_classifier(tmp_path / "custom", labels=("safe", "refusal"))
    assert json.loads((custom / "config.json").read_text())["id2label"] == {"0": "safe", "1": "refusal"}


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTWATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert tiny_model_dir() == tmp_path / "cache" / "models" / "tiny-random"
    assert resolve_model("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert resolve_model("/models/x") == "/models/x"
    built = Path(resolve_model("tiny-random"))
    assert built == tiny_model_dir() and (built / MARKER).is_file()
    assert resolve_model("tiny-random") == str(built)
