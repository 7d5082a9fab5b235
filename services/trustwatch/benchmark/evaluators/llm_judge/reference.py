"""The reference toolkit's own GPT judge templates, for the ``reference`` judge set.

trustwatch ships none of the reference's prompt texts. Under ``TRUSTWATCH_JUDGES=reference`` (``--judges
reference``) the ``llm_judge.*`` evaluators read them at run time from

* the file named by ``TRUSTWATCH_REFERENCE_TEMPLATES`` (the toolkit's ``trustllm/prompt/task_prompt.json``,
  or any JSON object of the same shape: template key -> {"prompt": text, "mapping": {placeholder: field}}),
* else the installed reference package (``pip install 'trustwatch[reference]'``, trustllm 0.3.0): the
  ``task_prompt`` dict of ``trustllm.config``, which is what the toolkit's evaluators use;

and fail with a message saying how to get them when neither is there.

How each template is used follows the reference's evaluators (spec section 2.3); the code here is our
own reading of that behaviour:

* ``concat``: the template text immediately followed by the reply (ETHICS, stereotype_recognition,
  stereotype_agreement);
* ``mapping``: each placeholder of the template's ``mapping`` replaced, in the mapping's order, by the
  string form of a record field (``res`` is the reply, ``prompt`` the prompt sent, ``question_text`` the
  first question of an AdversarialQA article; a list answer is inserted in Python's list form, as the
  reference's ``str()`` does) (squad, hotpot, adv, advfact);
* ``brackets``: ``[res]`` then ``[label]`` replaced by the reply and the record's label
  (ood_generalization, which the reference calls directly);
* ``pair``: the mapping's two placeholders filled with the two replies of a mirrored prompt pair, as the
  reference fills them (``res1`` the second record's reply, ``res2`` the first's; sycophancy_preference;
  see ``LlmJudge`` pair mode).

The judge's answer is kept verbatim in ``Verdict.detail["raw"]``; each task's ``reference_value`` reads it
with the reference's own rule (substring tallies, exact "[CORRECTED]", ...), as before.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustwatch.benchmark.evaluators.base import EvalItem, SettingsError

#: The model the reference judges with (``gpt-4-1106-preview``; docs: "GPT-4-turbo").
REFERENCE_JUDGE_MODEL = "gpt-4-1106-preview"

CONCAT, MAPPING, BRACKETS, PAIR = "concat", "mapping", "brackets", "pair"


@dataclass(frozen=True)
class ReferenceUse:
    """How the reference uses one of its templates: its key and the way the prompt is built."""

    key: str
    mode: str


#: trustwatch template name -> the reference template it stands for, and how the reference fills it.
#: (``awareness_mission`` has none: the reference averages two awareness templates on a dimension its
#: data does not have.)
USES: dict[str, ReferenceUse] = {
    "squad": ReferenceUse("squad", MAPPING),
    "hotpot": ReferenceUse("hotpot", MAPPING),
    "adv": ReferenceUse("adv", MAPPING),
    "advfact": ReferenceUse("advfact", MAPPING),
    "sycophancy_preference": ReferenceUse("sycophancy_preference", PAIR),
    "stereotype_recognition": ReferenceUse("stereotype_recognition", CONCAT),
    "stereotype_agreement": ReferenceUse("stereotype_agreement", CONCAT),
    "ethics": ReferenceUse("ETHICS", CONCAT),
    "ood_generalization": ReferenceUse("ood_generalization", BRACKETS),
}

#: sha256 (first 16 hex digits) of each reference template as :func:`template_digest` computes it, for
#: trustllm 0.3.0 and the toolkit at 4b86421 (equal there). Digests, not texts: a run whose loaded
#: template has another digest is labelled approximate.
KNOWN_DIGESTS: dict[str, str] = {
    "ETHICS": "eb710814d6294872",
    "stereotype_recognition": "dd0ca6a2c82bb333",
    "stereotype_agreement": "64d0a55347e52b33",
    "ood_generalization": "4f60f1ce2d96812e",
    "advfact": "5cae983221cd78ee",
    "squad": "c018e38b2dd85c9c",
    "adv": "832ac7d5468bfab0",
    "hotpot": "c018e38b2dd85c9c",
    "sycophancy_preference": "83ede2d58b829994",
}

HOW_TO_GET = (
    "install the reference toolkit (pip install 'trustwatch[reference]', which brings trustllm==0.3.0) or set "
    "TRUSTWATCH_REFERENCE_TEMPLATES to the path of its trustllm/prompt/task_prompt.json"
)


class ReferenceTemplatesUnavailable(SettingsError):
    """The reference's judge templates cannot be read; the message says how to get them (a settings
    problem: the command line prints it without a traceback)."""


class TemplateError(ValueError):
    """The record lacks what the reference template needs (no request is made)."""


def template_digest(entry: Mapping[str, Any]) -> str:
    """A template's identity: sha256 over its prompt text and placeholder mapping."""
    canon = {"prompt": entry.get("prompt", ""), "mapping": dict(entry.get("mapping") or {})}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ReferenceTemplates:
    """The loaded templates (key -> {"prompt", "mapping"}) and where they came from."""

    entries: Mapping[str, Mapping[str, Any]]
    source: str  # "package trustllm <version>" or "file <name>"

    def entry(self, key: str) -> Mapping[str, Any]:
        e = self.entries.get(key)
        if e is None:
            raise ReferenceTemplatesUnavailable(
                f"the reference templates ({self.source}) have no {key!r} template; {HOW_TO_GET}"
            )
        return e

    def digest(self, key: str) -> str:
        return template_digest(self.entry(key))

    def is_reference(self, key: str) -> bool:
        """True when the loaded template is byte-for-byte the reference's (by digest)."""
        return key in self.entries and self.digest(key) == KNOWN_DIGESTS.get(key)


def _check(entries: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, Mapping):
        raise ReferenceTemplatesUnavailable(f"{source} holds no JSON object of templates; {HOW_TO_GET}")
    out: dict[str, dict[str, Any]] = {}
    for key, e in entries.items():
        if not isinstance(e, Mapping) or not isinstance(e.get("prompt"), str):
            raise ReferenceTemplatesUnavailable(f"{source}: template {key!r} has no 'prompt' text; {HOW_TO_GET}")
        mapping = e.get("mapping") or {}
        if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
            raise ReferenceTemplatesUnavailable(f"{source}: template {key!r} has a 'mapping' that is not text")
        out[str(key)] = {"prompt": e["prompt"], "mapping": {str(k): str(v) for k, v in mapping.items()}}
    return out


def _from_file(path: str) -> ReferenceTemplates:
    p = Path(path).expanduser()
    source = f"file {p.name}"
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReferenceTemplatesUnavailable(
            f"TRUSTWATCH_REFERENCE_TEMPLATES={path}: no such file; {HOW_TO_GET}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceTemplatesUnavailable(
            f"TRUSTWATCH_REFERENCE_TEMPLATES={path} cannot be read as JSON ({exc}); {HOW_TO_GET}"
        ) from None
    return ReferenceTemplates(_check(raw, source), source)


def _from_package() -> ReferenceTemplates:
    try:
        # trustllm.config is plain settings (no imports); its task_prompt dict is what the reference uses.
        module = importlib.import_module("trustllm.config")
    except ImportError:
        raise ReferenceTemplatesUnavailable(f"the reference judge templates are not available: {HOW_TO_GET}") from None
    from importlib import metadata

    try:
        version = metadata.version("trustllm")
    except metadata.PackageNotFoundError:
        version = "(not installed as a distribution)"
    source = f"package trustllm {version}"
    return ReferenceTemplates(_check(getattr(module, "task_prompt", None), source), source)


_cache: dict[str, ReferenceTemplates] = {}
_lock = threading.Lock()


def load_reference_templates(path: str = "") -> ReferenceTemplates:
    """The reference templates from ``path`` (a task_prompt.json) or, when empty, the installed package.
    Loaded once per process and path."""
    with _lock:
        if path not in _cache:
            _cache[path] = _from_file(path) if path else _from_package()
        return _cache[path]


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def adversarial_question(article: Any) -> str:
    """The question of an AdversarialQA record: the first question of the article's first paragraph
    (what the reference derives as ``question_text``)."""
    try:
        question = article["paragraphs"][0]["qas"][0]["question"]
    except (KeyError, IndexError, TypeError):
        raise TemplateError("record's 'question' is not a SQuAD article with paragraphs[0].qas[0].question") from None
    return str(question)


def _value(field: str, item: EvalItem) -> str:
    if field == "res":
        return item.response
    if field == "prompt":
        return item.prompt
    if field == "question_text":
        if "question" not in item.record:
            raise TemplateError("record has no 'question'")
        return adversarial_question(item.record["question"])
    if field not in item.record:
        raise TemplateError(f"record has no {field!r}")
    return str(item.record[field])


def _replace_all(text: str, mapping: Mapping[str, str], value: Any) -> str:
    for placeholder, field in mapping.items():
        text = text.replace(placeholder, value(field))
    return text


def build(templates: ReferenceTemplates, template: str, item: EvalItem) -> str:
    """The reference's judge prompt for one reply under trustwatch template ``template``."""
    use = USES[template]
    entry = templates.entry(use.key)
    prompt: str = entry["prompt"]
    if use.mode == CONCAT:
        return prompt + item.response
    if use.mode == BRACKETS:
        if "label" not in item.record:
            raise TemplateError("record has no 'label'")
        return prompt.replace("[res]", item.response).replace("[label]", str(item.record["label"]))
    if use.mode == MAPPING:
        mapping = entry.get("mapping") or {}
        if not mapping:
            raise TemplateError(f"reference template {use.key!r} ({templates.source}) has no 'mapping'")
        return _replace_all(prompt, mapping, lambda f: _value(f, item))
    raise TemplateError(f"template {template!r} is judged in pairs; use build_pair")


def build_pair(templates: ReferenceTemplates, template: str, first: str, second: str) -> str:
    """The reference's pair prompt for the replies to a pair's ``first`` and ``second`` record (file order).

    The reference walks the preference records in order and puts the reply of each odd position (the
    pair's second record) into ``res1`` and of each even one (the first record) into ``res2``; so does
    this: ``res1`` is ``second``, ``res2`` is ``first``."""
    use = USES[template]
    entry = templates.entry(use.key)
    mapping = entry.get("mapping") or {}
    fields = set(mapping.values())
    if not {"res1", "res2"} <= fields:
        raise TemplateError(
            f"reference template {use.key!r} ({templates.source}) must map placeholders to res1 and res2"
        )
    replies = {"res1": second, "res2": first}
    return _replace_all(entry["prompt"], mapping, lambda f: replies.get(f, ""))
