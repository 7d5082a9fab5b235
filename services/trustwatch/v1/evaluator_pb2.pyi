from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvalItem(_message.Message):
    __slots__ = ("job_id", "task", "prompt", "response", "record_json", "generation_error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task: str
    prompt: str
    response: str
    record_json: str
    generation_error: str
    def __init__(self, job_id: _Optional[str] = ..., task: _Optional[str] = ..., prompt: _Optional[str] = ..., response: _Optional[str] = ..., record_json: _Optional[str] = ..., generation_error: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("job_id", "label", "valid", "score", "error", "detail_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    label: str
    valid: bool
    score: float
    error: str
    detail_json: str
    def __init__(self, job_id: _Optional[str] = ..., label: _Optional[str] = ..., valid: _Optional[bool] = ..., score: _Optional[float] = ..., error: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("evaluator", "items")
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    evaluator: str
    items: _containers.RepeatedCompositeFieldContainer[EvalItem]
    def __init__(self, evaluator: _Optional[str] = ..., items: _Optional[_Iterable[_Union[EvalItem, _Mapping]]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class ListEvaluatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EvaluatorInfo(_message.Message):
    __slots__ = ("name", "description", "offline")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    offline: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., offline: _Optional[bool] = ...) -> None: ...

class ListEvaluatorsResponse(_message.Message):
    __slots__ = ("evaluators",)
    EVALUATORS_FIELD_NUMBER: _ClassVar[int]
    evaluators: _containers.RepeatedCompositeFieldContainer[EvaluatorInfo]
    def __init__(self, evaluators: _Optional[_Iterable[_Union[EvaluatorInfo, _Mapping]]] = ...) -> None: ...
