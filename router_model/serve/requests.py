"""The service's request bodies (pydantic): one definition for HTTP and in-process calls.

`LocalRouterClient` validates with the same models as the FastAPI app, so a task that would
get a 422 over HTTP is refused in process too. Besides the field types and ranges, every
request is checked to be plain JSON that can be logged and answered: numbers are finite,
strings hold no lone UTF-16 surrogates, and the extra (untyped) Stage-4 analysis keys are
capped in number and size, because they go into the decision log verbatim.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from router_model.contract import EXAMPLE_TASK, Analysis, ErrorKind

TOKENS = Field(ge=0, le=100_000_000)
MAX_EXTRA_ANALYSIS_KEYS = 32      # extra analysis keys per task
MAX_EXTRA_ANALYSIS_KEY_CHARS = 64
MAX_EXTRA_ANALYSIS_VALUE_CHARS = 1_000  # each extra value, as JSON text
# A brief is a feature, not a payload: MiniLM reads its first 256 tokens (about 1,000
# characters), so a longer brief (a batch of 12 lessons' briefs runs past 20,000) is cut here
# rather than refused, and the decision log stays small.
BRIEF_MAX_CHARS = 20_000
MAX_NESTING = 32                  # containers inside containers, anywhere in a body
INT64 = 2**63


def clip_brief(value: Any) -> Any:
    """A string brief cut to `BRIEF_MAX_CHARS`; anything else is left for the type check."""
    return value[:BRIEF_MAX_CHARS] if isinstance(value, str) else value


class RequestValueError(ValueError):
    """A value that is not plain, loggable JSON; `loc` is its path in the body."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc)) or 'body'}: {message}")
        self.loc = loc
        self.message = message


def preview(value: Any, limit: int = 40) -> str:
    """A short, always-encodable picture of a value for an error message (never all of it)."""
    text = repr(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_plain_json(value: Any, loc: tuple[str | int, ...] = (), depth: int = 0) -> None:
    """Raise `RequestValueError` for NaN/Infinity, lone surrogates or too deep nesting."""
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, loc, depth)]
    while stack:
        v, where, d = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                raise RequestValueError(where, f"{v!r} is not a finite number")
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -INT64 <= v < INT64:
                raise RequestValueError(where, f"{preview(v, 24)} is outside the 64-bit "
                                               "integer range")
        elif isinstance(v, str):
            if has_lone_surrogate(v):
                raise RequestValueError(where, f"{preview(v)} contains a lone UTF-16 "
                                               "surrogate (not valid Unicode)")
        elif isinstance(v, dict | list):
            if d >= MAX_NESTING:
                raise RequestValueError(where, f"nested more than {MAX_NESTING} levels deep")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, child in items:
                if isinstance(k, str) and has_lone_surrogate(k):
                    raise RequestValueError(where, f"key {preview(k)} contains a lone UTF-16 "
                                                   "surrogate (not valid Unicode)")
                stack.append((child, (*where, k), d + 1))


def surely_plain(values: Any) -> bool:
    """True when every value is certainly plain: None, a bool, a finite float, a 64-bit
    integer or an ASCII string (no surrogate can hide in one). False only means "walk it
    with `check_plain_json`", which finds and names what fails, if anything does. A request
    of plain values, nearly all of them, skips the walk's Python steps."""
    for v in values:
        kind = type(v)
        if kind is float:
            if v - v != 0.0:  # NaN - NaN and inf - inf are NaN
                return False
        elif kind is int:
            if not -INT64 <= v < INT64:
                return False
        elif kind is str:
            if not v.isascii():
                return False
        elif v is not None and kind is not bool:
            return False
    return True


def check_extra_analysis(analysis: Analysis) -> None:
    extras = analysis.model_extra or {}
    if len(extras) > MAX_EXTRA_ANALYSIS_KEYS:
        raise RequestValueError(("analysis",), f"{len(extras)} extra keys is more than "
                                               f"{MAX_EXTRA_ANALYSIS_KEYS}")
    for key, value in extras.items():
        if len(key) > MAX_EXTRA_ANALYSIS_KEY_CHARS:
            raise RequestValueError(("analysis", preview(key, 20)),
                                    f"key is {len(key)} chars, more than "
                                    f"{MAX_EXTRA_ANALYSIS_KEY_CHARS}")
        # A container's JSON takes at least 2 characters per element: a long one is refused
        # before anything walks it (a 1.9M-element array once took seconds to refuse).
        least = (len(value) + 2 if isinstance(value, str) else
                 2 * len(value) + 1 if isinstance(value, list | dict) else 0)
        if least > MAX_EXTRA_ANALYSIS_VALUE_CHARS:
            raise RequestValueError(("analysis", key), f"value is at least {least} chars of "
                                    f"JSON, more than {MAX_EXTRA_ANALYSIS_VALUE_CHARS}")
        check_plain_json(value, ("analysis", key), depth=2)
        size = len(json.dumps(value))
        if size > MAX_EXTRA_ANALYSIS_VALUE_CHARS:
            raise RequestValueError(("analysis", key), f"value is {size} chars of JSON, more "
                                                       f"than {MAX_EXTRA_ANALYSIS_VALUE_CHARS}")


_ANALYSIS_FIELDS = tuple(Analysis.model_fields)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="after")
    def _plain_strings(self) -> Any:
        for name, value in self.__dict__.items():  # the fields' values (pydantic v2)
            if isinstance(value, str) and not value.isascii() and has_lone_surrogate(value):
                raise RequestValueError((name,), f"{preview(value)} contains a lone UTF-16 "
                                                 "surrogate (not valid Unicode)")
        return self


class TaskIn(_Strict):
    """One Stage-5 task to route: the field, token counts and the Stage-4 analysis."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [EXAMPLE_TASK]})

    field: str = Field(min_length=1, max_length=200)
    prompt_tokens: Annotated[int, TOKENS]
    context_tokens: Annotated[int, TOKENS] = 0
    expected_output_tokens: Annotated[int, TOKENS] | None = None
    analysis: Analysis = Field(default_factory=Analysis)
    brief: Annotated[str | None, BeforeValidator(clip_brief)] = None
    course_id: str | None = Field(None, max_length=200)
    task_id: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _plain_analysis(self) -> TaskIn:
        analysis = self.analysis
        # One walk over all typed fields (it names the field that fails), not one per
        # field, and only when a value is not surely plain.
        if not surely_plain(analysis.__dict__.values()):
            check_plain_json({name: getattr(analysis, name) for name in _ANALYSIS_FIELDS},
                             ("analysis",))
        if analysis.model_extra:
            check_extra_analysis(analysis)
        return self


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskIn] = Field(min_length=1, max_length=10_000)


class EscalateIn(_Strict):
    """A gate result: where it happened and what the gate saw."""

    decision_id: str | None = Field(None, max_length=200)
    tier: str | None = Field(None, max_length=200)
    similarity: float | None = Field(None, ge=0.0, le=1.0)
    schema_valid: bool
    error_kind: ErrorKind | None = None
    retry_count: int = Field(0, ge=0, le=1000)
    field: str | None = Field(None, max_length=200)  # default: the decision's field
