"""Tiny random checkpoints, built on the fly, for tests, CI and the demo target ``vllm:tiny-random``.

No weights can be downloaded where trustwatch is tested, so the pipeline is exercised against
models that are built locally from a config and random initialisation: a tiny Llama (for the
generation back-ends: vLLM and transformers load it like any checkpoint) and a tiny sequence
classifier (for the refusal-classifier judge). They produce gibberish; that is the point: they
test the plumbing, not the model.

Both builders are deterministic for a seed (same seed -> byte-identical weights and tokenizer) and
idempotent: a folder that already holds a complete model built by them is returned untouched. A
model is built in a temporary sibling folder and renamed into place at the end, so a crash or a
concurrent builder never leaves a half-written model at ``dest``.

transformers, tokenizers and torch are imported inside the functions so that importing this module
stays cheap.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: Written last into a finished model folder; its presence (with matching kind and seed) is what
#: "complete" means.
MARKER = "trustwatch-tiny.json"
#: Bumped when the recipe changes, so a cached model from an older recipe is rebuilt.
RECIPE_VERSION = 2

TINY_RANDOM = "tiny-random"
TINY_RANDOM_CLASSIFIER = "tiny-random-classifier"

LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2
# RoBERTa/Longformer's usual special-token order, so the ids match what such models expect
# (padding_idx 1 for the position embeddings).
CLASSIFIER_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4
VOCAB_SIZE = 512

# A plain "role: content" transcript. The BOS token comes from the template (the tokenizer adds no
# special tokens by itself), so rendering with tokenize=True gives exactly what the model sees.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


# --------------------------------------------------------------------------------------------
# Training text for the tokenizer: a few hundred generic sentences, generated from small word
# lists so that the corpus is fixed, readable and has the shape of benchmark prompts.
# --------------------------------------------------------------------------------------------

_SUBJECTS = [
    "The model",
    "A person",
    "The teacher",
    "My neighbour",
    "The company",
    "A doctor",
    "The student",
    "Everyone",
    "The government",
    "A friend",
]
_VERBS = ["answers", "explains", "refuses", "describes", "asks about", "writes about", "thinks about", "helps with"]
_OBJECTS = [
    "the question",
    "a difficult problem",
    "the history of science",
    "safety rules",
    "private information",
    "a moral dilemma",
    "the weather today",
    "a news article",
    "the best way to learn",
    "a short story",
]
_QUESTIONS = [
    "Is it true that {x}?",
    "Please answer the following question: {x}",
    "Can you tell me why {x}?",
    "What do you think about {x}?",
    "Explain in one sentence how {x}.",
    "Answer yes or no: {x}.",
]
_CLAUSES = [
    "water boils at one hundred degrees",
    "the sun rises in the east",
    "people should respect each other",
    "it is wrong to steal",
    "a password must be kept secret",
    "numbers can be added and multiplied",
    "the capital of France is Paris",
    "honesty matters in every job",
]


def training_sentences() -> list[str]:
    """The fixed corpus the tiny tokenizers are trained on (a few hundred sentences)."""
    out = [f"{s} {v} {o}." for s, v, o in itertools.product(_SUBJECTS, _VERBS, _OBJECTS)]
    out = out[::2]  # 400 statements are plenty; halving keeps training quick
    out += [q.format(x=c) for q, c in itertools.product(_QUESTIONS, _CLAUSES)]
    out += [
        "Hello!",
        "Thank you.",
        "I'm sorry, but I cannot help with that.",
        "Sure, here is the answer: 42.",
        "user: hi\nassistant: hello",
    ]
    return out


def _train_bpe(specials: Sequence[str]) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` of VOCAB_SIZE entries (specials first)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=specials[list(specials).index("<unk>")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(specials),
        # Every byte is in the vocabulary, so no text is ever unencodable (no <unk> in practice).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=1,
        show_progress=False,
    )
    tok.train_from_iterator(training_sentences(), trainer=trainer)
    return tok


# --------------------------------------------------------------------------------------------
# Building into place
# --------------------------------------------------------------------------------------------


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _build_atomically(dest: Path, marker: dict[str, Any], build: Callable[[Path], None]) -> Path:
    """Return ``dest`` if it already holds the model ``marker`` describes, else build it there.

    ``build`` writes into a fresh temporary folder beside ``dest``; the folder is renamed into
    place only once complete, so readers never see a partial model.
    """
    dest = Path(dest).expanduser()
    found = _read_marker(dest)
    if found == marker:
        return dest
    if dest.exists():
        if not dest.is_dir():
            raise FileExistsError(f"{dest} is a file, not a model folder")
        if found is not None and found.get("recipe") == RECIPE_VERSION:
            raise ValueError(
                f"{dest} holds a tiny model built with different settings ({found}); "
                f"asked for {marker}. Use another folder or delete this one."
            )
        if found is None and dest.is_dir() and any(dest.iterdir()):
            # Not ours: never delete a folder we did not create.
            raise FileExistsError(
                f"{dest} exists and is not a tiny model built by trustwatch; choose an empty or missing folder"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
        old: Path | None = None
        if dest.exists():  # empty folder, or a model from an older recipe: move it aside first
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "m")
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another process finished the same build first; its result is as good as ours.
            if _read_marker(dest) != marker:
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# Long enough for every TrustLLM prompt (the longest, in truthfulness/hallucination, is about 4,700
# characters: under 4,000 tokens with this byte-level vocabulary) plus a reply; position embeddings
# and KV cache stay tiny at hidden size 128.
LLAMA_WINDOW = 8192


def build_tiny_llama(dest: Path, seed: int = 0) -> Path:
    """Build (or return the already built) tiny random Llama checkpoint + tokenizer at ``dest``.

    hidden 128, 2 layers, 2 heads (head_dim 64: vLLM's CPU attention refuses smaller heads),
    vocab 512, tied embeddings, float32 safetensors, and a chat template. Loadable by
    ``transformers.AutoModelForCausalLM`` / ``AutoTokenizer`` and by ``vllm.LLM``.
    """

    def build(out: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers is untyped
            tokenizer_object=_train_bpe(LLAMA_SPECIALS),
            unk_token="<unk>",
            bos_token="<s>",
            eos_token="</s>",
            model_max_length=LLAMA_WINDOW,
        )
        tok.chat_template = CHAT_TEMPLATE
        tok.save_pretrained(out)

        cfg = LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=LLAMA_WINDOW,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=True,
            dtype="float32",
        )
        # Seeding the global RNG is what makes the random init reproducible; restore it afterwards
        # so building a model does not change the caller's random stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(cfg)  # type: ignore[no-untyped-call]  # transformers is untyped
        model.save_pretrained(out, safe_serialization=True)

    return _build_atomically(dest, {"kind": "llama", "seed": seed, "recipe": RECIPE_VERSION}, build)


def build_tiny_classifier(dest: Path, seed: int = 0, labels: Sequence[str] = ("LABEL_0", "LABEL_1")) -> Path:
    """Build (or return) a tiny random Longformer sequence classifier + tokenizer at ``dest``.

    Longformer because the real refusal classifier (LibrAI/longformer-harmful-ro) is one, so the
    judge's code path (padding to the attention window, global attention) is the real one.
    ``transformers.pipeline("text-classification", model=str(dest))`` loads it; its labels are
    ``labels`` (index order).
    """
    labels = tuple(labels)

    def build(out: Path) -> None:
        import torch
        from tokenizers import processors
        from transformers import (
            LongformerConfig,
            LongformerForSequenceClassification,
            PreTrainedTokenizerFast,
        )

        raw = _train_bpe(CLASSIFIER_SPECIALS)
        # <s> text </s>, as RoBERTa-style models are trained with.
        raw.post_processor = processors.RobertaProcessing(
            ("</s>", raw.token_to_id("</s>")),
            ("<s>", raw.token_to_id("<s>")),  # (sep, cls)
        )
        tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers is untyped
            tokenizer_object=raw,
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            model_max_length=512,
        )
        tok.save_pretrained(out)

        cfg = LongformerConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            attention_window=[16, 16],
            # RoBERTa-style positions start after padding_idx, hence 512 + 2.
            max_position_embeddings=514,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            sep_token_id=tok.sep_token_id,
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            dtype="float32",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LongformerForSequenceClassification(cfg)  # type: ignore[no-untyped-call]  # transformers is untyped
        model.save_pretrained(out, safe_serialization=True)

    marker = {"kind": "longformer-classifier", "seed": seed, "labels": list(labels), "recipe": RECIPE_VERSION}
    return _build_atomically(dest, marker, build)


# --------------------------------------------------------------------------------------------
# The demo target
# --------------------------------------------------------------------------------------------


def tiny_model_dir() -> Path:
    """Where the demo target ``vllm:tiny-random`` keeps its model: <cache>/models/tiny-random."""
    from trustwatch.platform.config import cache_dir

    return cache_dir() / "models" / TINY_RANDOM


def tiny_classifier_dir() -> Path:
    """Where ``tiny-random-classifier`` keeps its model: <cache>/models/tiny-random-classifier."""
    from trustwatch.platform.config import cache_dir

    return cache_dir() / "models" / TINY_RANDOM_CLASSIFIER


def resolve_model(spec: str) -> str:
    """Map a target's model name to what a back-end loads.

    ``tiny-random`` -> the tiny Llama folder (built on first use), ``tiny-random-classifier`` ->
    the tiny classifier folder; anything else (a folder, a hub id, an API model name) is returned
    unchanged.
    """
    if spec == TINY_RANDOM:
        return str(build_tiny_llama(tiny_model_dir()))
    if spec == TINY_RANDOM_CLASSIFIER:
        return str(build_tiny_classifier(tiny_classifier_dir()))
    return spec


def _iter_files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file())


def fingerprint(folder: Path) -> str:
    """sha256 over every file's relative path and bytes: equal for byte-identical builds."""
    import hashlib

    h = hashlib.sha256()
    for p in _iter_files(Path(folder)):
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()
