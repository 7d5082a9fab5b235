from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_TRANSIENT: _ClassVar[ErrorKind]
    ERROR_KIND_FINAL: _ClassVar[ErrorKind]
    ERROR_KIND_POISON: _ClassVar[ErrorKind]
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_TRANSIENT: ErrorKind
ERROR_KIND_FINAL: ErrorKind
ERROR_KIND_POISON: ErrorKind

class JobRef(_message.Message):
    __slots__ = ("job_id", "run_id", "task", "item_id", "sample", "target")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    run_id: str
    task: str
    item_id: str
    sample: int
    target: str
    def __init__(self, job_id: _Optional[str] = ..., run_id: _Optional[str] = ..., task: _Optional[str] = ..., item_id: _Optional[str] = ..., sample: _Optional[int] = ..., target: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "max_tokens", "top_p", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    max_tokens: int
    top_p: float
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("name", "backend", "model", "base_url", "api_key_env")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    model: str
    base_url: str
    api_key_env: str
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ..., model: _Optional[str] = ..., base_url: _Optional[str] = ..., api_key_env: _Optional[str] = ...) -> None: ...

class PromptJob(_message.Message):
    __slots__ = ("ref", "prompt", "sampling", "target", "record_json", "created_unix_ms", "legacy_job_id", "legacy_run_id", "legacy_task", "legacy_item_id", "legacy_sample")
    REF_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEGACY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_TASK_FIELD_NUMBER: _ClassVar[int]
    LEGACY_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    ref: JobRef
    prompt: str
    sampling: SamplingParams
    target: Target
    record_json: str
    created_unix_ms: int
    legacy_job_id: str
    legacy_run_id: str
    legacy_task: str
    legacy_item_id: str
    legacy_sample: int
    def __init__(self, ref: _Optional[_Union[JobRef, _Mapping]] = ..., prompt: _Optional[str] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., record_json: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., legacy_job_id: _Optional[str] = ..., legacy_run_id: _Optional[str] = ..., legacy_task: _Optional[str] = ..., legacy_item_id: _Optional[str] = ..., legacy_sample: _Optional[int] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("ref", "prompt", "text", "error", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "record_json", "created_unix_ms", "error_kind", "original_chars", "legacy_job_id", "legacy_run_id", "legacy_task", "legacy_item_id", "legacy_sample", "legacy_target")
    REF_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_CHARS_FIELD_NUMBER: _ClassVar[int]
    LEGACY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_TASK_FIELD_NUMBER: _ClassVar[int]
    LEGACY_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LEGACY_TARGET_FIELD_NUMBER: _ClassVar[int]
    ref: JobRef
    prompt: str
    text: str
    error: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    record_json: str
    created_unix_ms: int
    error_kind: ErrorKind
    original_chars: int
    legacy_job_id: str
    legacy_run_id: str
    legacy_task: str
    legacy_item_id: str
    legacy_sample: int
    legacy_target: str
    def __init__(self, ref: _Optional[_Union[JobRef, _Mapping]] = ..., prompt: _Optional[str] = ..., text: _Optional[str] = ..., error: _Optional[str] = ..., finish_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., latency_s: _Optional[float] = ..., record_json: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., error_kind: _Optional[_Union[ErrorKind, str]] = ..., original_chars: _Optional[int] = ..., legacy_job_id: _Optional[str] = ..., legacy_run_id: _Optional[str] = ..., legacy_task: _Optional[str] = ..., legacy_item_id: _Optional[str] = ..., legacy_sample: _Optional[int] = ..., legacy_target: _Optional[str] = ...) -> None: ...

class Judgment(_message.Message):
    __slots__ = ("ref", "evaluator", "label", "valid", "score", "error", "detail_json", "response", "record_json", "created_unix_ms", "error_kind", "generation_error", "legacy_job_id", "legacy_run_id", "legacy_task", "legacy_item_id", "legacy_sample", "legacy_target")
    REF_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    LEGACY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_TASK_FIELD_NUMBER: _ClassVar[int]
    LEGACY_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEGACY_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LEGACY_TARGET_FIELD_NUMBER: _ClassVar[int]
    ref: JobRef
    evaluator: str
    label: str
    valid: bool
    score: float
    error: str
    detail_json: str
    response: str
    record_json: str
    created_unix_ms: int
    error_kind: ErrorKind
    generation_error: str
    legacy_job_id: str
    legacy_run_id: str
    legacy_task: str
    legacy_item_id: str
    legacy_sample: int
    legacy_target: str
    def __init__(self, ref: _Optional[_Union[JobRef, _Mapping]] = ..., evaluator: _Optional[str] = ..., label: _Optional[str] = ..., valid: _Optional[bool] = ..., score: _Optional[float] = ..., error: _Optional[str] = ..., detail_json: _Optional[str] = ..., response: _Optional[str] = ..., record_json: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., error_kind: _Optional[_Union[ErrorKind, str]] = ..., generation_error: _Optional[str] = ..., legacy_job_id: _Optional[str] = ..., legacy_run_id: _Optional[str] = ..., legacy_task: _Optional[str] = ..., legacy_item_id: _Optional[str] = ..., legacy_sample: _Optional[int] = ..., legacy_target: _Optional[str] = ...) -> None: ...

class PlannedPair(_message.Message):
    __slots__ = ("job_id", "evaluator", "task", "item_id", "sample", "record_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    evaluator: str
    task: str
    item_id: str
    sample: int
    record_json: str
    def __init__(self, job_id: _Optional[str] = ..., evaluator: _Optional[str] = ..., task: _Optional[str] = ..., item_id: _Optional[str] = ..., sample: _Optional[int] = ..., record_json: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("run_id", "kind", "target", "manifest_json", "expected_jobs", "expected_judgments", "created_unix_ms", "planned", "deadline_unix_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[RunEvent.Kind]
        STARTED: _ClassVar[RunEvent.Kind]
        JOBS_PUBLISHED: _ClassVar[RunEvent.Kind]
        PLANNED: _ClassVar[RunEvent.Kind]
    KIND_UNSPECIFIED: RunEvent.Kind
    STARTED: RunEvent.Kind
    JOBS_PUBLISHED: RunEvent.Kind
    PLANNED: RunEvent.Kind
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JOBS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_JUDGMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    kind: RunEvent.Kind
    target: str
    manifest_json: str
    expected_jobs: int
    expected_judgments: int
    created_unix_ms: int
    planned: _containers.RepeatedCompositeFieldContainer[PlannedPair]
    deadline_unix_ms: int
    def __init__(self, run_id: _Optional[str] = ..., kind: _Optional[_Union[RunEvent.Kind, str]] = ..., target: _Optional[str] = ..., manifest_json: _Optional[str] = ..., expected_jobs: _Optional[int] = ..., expected_judgments: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., planned: _Optional[_Iterable[_Union[PlannedPair, _Mapping]]] = ..., deadline_unix_ms: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("source_topic", "partition", "offset", "key", "payload", "reason", "service", "created_unix_ms")
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    source_topic: str
    partition: int
    offset: int
    key: bytes
    payload: bytes
    reason: str
    service: str
    created_unix_ms: int
    def __init__(self, source_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., reason: _Optional[str] = ..., service: _Optional[str] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...
