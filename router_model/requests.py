"""The service's request bodies (pydantic): one definition for HTTP and in-process calls.

`LocalRouterClient` validates with the same models as the FastAPI app, so a task that would
get a 422 over HTTP is refused in process too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from router_model.contract import Analysis, ErrorKind
from router_model.policy import EXAMPLE_TASK

TOKENS = Field(ge=0, le=100_000_000)


class TaskIn(BaseModel):
    """One Stage-5 task to route: the field, token counts and the Stage-4 analysis."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_TASK]})

    field: str = Field(min_length=1, max_length=200)
    prompt_tokens: Annotated[int, TOKENS]
    context_tokens: Annotated[int, TOKENS] = 0
    expected_output_tokens: Annotated[int, TOKENS] | None = None
    analysis: Analysis = Field(default_factory=Analysis)
    brief: str | None = Field(None, max_length=20_000)
    course_id: str | None = Field(None, max_length=200)
    task_id: str | None = Field(None, max_length=200)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskIn] = Field(min_length=1, max_length=10_000)


class EscalateIn(BaseModel):
    """A gate result: where it happened and what the gate saw."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str | None = Field(None, max_length=200)
    tier: str | None = Field(None, max_length=200)
    similarity: float | None = Field(None, ge=0.0, le=1.0)
    schema_valid: bool
    error_kind: ErrorKind | None = None
    retry_count: int = Field(0, ge=0, le=1000)
    field: str | None = Field(None, max_length=200)  # default: the decision's field
