"""The contract at the bottom of the house: what the generator, the router and training share.

One record per LLM call attempt (`AttemptRecord`, with the Stage-4 `Analysis`), the error
vocabulary (`ErrorKind`, with its gate-verdict and transient subsets), where a start tier came
from (`StartSource`), and the routing `Decision` that the policy returns, the service answers
and the decision log writes. Everything else imports these; this module imports no project
code, so a change here is the only way the vocabulary can change.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# What the gate said about an attempt that produced an output.
VerdictKind = Literal["none", "schema", "low_similarity", "severe_similarity"]
# Attempts that ended without a gate verdict: retried at the same tier, label nothing.
TransientKind = Literal["rate_limit", "timeout", "provider_error"]
# Provider outcomes after the client's own retries and same-tier fallbacks (issue 28): no
# gate verdict either, so they label nothing. `tier_unavailable`: every deployment of the
# tier failed or is cooling down, the only provider outcome that may move the ladder (with
# its own reason); `provider_rejected`: a permanent 4xx (bad request, auth, unknown model),
# which stops the task and never escalates.
ProviderKind = Literal["tier_unavailable", "provider_rejected"]
ErrorKind = Literal[VerdictKind, TransientKind, "context_overflow", ProviderKind]

GATE_VERDICTS: tuple[str, ...] = typing.get_args(VerdictKind)
TRANSIENT_ERRORS: tuple[str, ...] = typing.get_args(TransientKind)
PROVIDER_OUTCOMES: tuple[str, ...] = typing.get_args(ProviderKind)
ERROR_KINDS: tuple[str, ...] = (*GATE_VERDICTS, *TRANSIENT_ERRORS, "context_overflow",
                                 *PROVIDER_OUTCOMES)

# `rules_fallback`: the generator's router client answered from the local rules because
# router-serve could not be reached (issue 28).
StartSource = Literal["learned", "rules", "exploration", "override", "rules_fallback"]
START_SOURCES: tuple[str, ...] = typing.get_args(StartSource)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
Propensity = Annotated[float, Field(gt=0.0, le=1.0)]


class Analysis(BaseModel):
    """Stage-4 analysis_result features. Extra keys are allowed and carried through."""

    model_config = ConfigDict(extra="allow")

    domain: str | None = None
    audience_level: str | None = None
    language: str | None = None
    complexity: Unit | None = None
    analysis_completeness: Unit | None = None
    section_count: Count | None = None
    lesson_count: Count | None = None
    objective_count: Count | None = None
    source_tokens: Count | None = None


class AttemptRecord(BaseModel):
    """One LLM call attempt, with the routing decision that led to it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    timestamp: datetime
    course_id: Annotated[str, Field(min_length=1)]
    task_id: Annotated[str, Field(min_length=1)]
    field: Annotated[str, Field(min_length=1)]
    phase: Annotated[int, Field(ge=1, le=5)]
    attempt: Annotated[int, Field(ge=1)]
    tier: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1)]
    provider: Annotated[str, Field(min_length=1)]
    prompt_tokens: Count
    completion_tokens: Count
    context_tokens: Count
    analysis: Analysis = Field(default_factory=Analysis)
    brief: str | None = None  # the field's brief (instructions), for the optional embedding
    similarity: Unit | None
    schema_valid: bool
    passed: bool
    error_kind: ErrorKind
    cost_usd: Annotated[float, Field(ge=0.0)]
    latency_ms: Annotated[float, Field(ge=0.0)]
    decision_id: Annotated[str, Field(min_length=1)]
    router_version: Annotated[str, Field(min_length=1)]
    start_source: StartSource
    predicted_pass_prob: Unit | None = None
    propensity: Propensity
    escalation_reason: str | None = None
    # An audit's verdict on this output (a human, or a stronger judge): does it truly pass?
    # Set on a small audited sample; training estimates each tier's gate error from it.
    audit_passed: bool | None = None
    # The gate's view of the attempt (issue 27): the scorer's raw score and its calibrated
    # score on the seed's quality scale (the value `similarity` carries, the ladder's input),
    # both of the attempt's worst item, and the version of the gate that judged
    # (router_model.decide.gate.gate_version: scorer, settings, calibration map).
    gate_raw_score: float | None = None
    gate_calibrated_score: Unit | None = None
    gate_version: str | None = None
    # ---- issue 28: the provider's side of the attempt and the run (None in older logs) ----
    run_id: str | None = None  # the generator run (task ids carry it: runs train together)
    deployment: str | None = None  # which deployment of the tier answered (or failed last)
    response_model: str | None = None  # the `model` the provider's response named
    finish_reason: str | None = None  # the provider's finish reason (stop, length, ...)
    usage_prompt_tokens: Count | None = None  # billed prompt tokens (prompt_tokens above is
    #                                           the routing estimate, a model feature)
    usage_estimated: bool | None = None  # usage absent or implausible: tokens estimated
    provider_retries: Count | None = None  # failed provider calls absorbed before this
    #                                        outcome (retries and same-tier fallbacks)
    # ---- end issue 28 ----


@dataclass
class Decision:
    """A start tier for one task: what the generator gets and the decision log records.

    A plain dataclass, cheap to build on the serving path; pydantic validates it wherever it
    is parsed back (the decision-log record below).
    """

    decision_id: Annotated[str, Field(min_length=1)]
    router_version: str
    start_tier: str
    model: str
    provider: str
    base_url: str
    source: StartSource
    propensity: Propensity
    ladder: list[str]
    pass_probabilities: dict[str, float] = field(default_factory=dict)
    expected_costs: dict[str, float] = field(default_factory=dict)
    required_pass_prob: float | None = None
    fallback_reason: str | None = None
    unknown_categories: dict[str, str] = field(default_factory=dict)
    missing_features: list[str] = field(default_factory=list)
    router: str | None = None  # the registered router that decided (None: the learned policy)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy: every value is already JSON-ready (str, float, list, flat dict)."""
        return dict(self.__dict__)


# A typical Phase-3 request: the OpenAPI example, and the task the tests and benchmarks use.
EXAMPLE_TASK: dict[str, Any] = {
    "field": "lesson_content", "prompt_tokens": 4000, "context_tokens": 9000,
    "expected_output_tokens": 1800,
    "analysis": {"domain": "programming", "audience_level": "beginner", "language": "en",
                 "complexity": 0.3, "analysis_completeness": 0.9, "section_count": 5,
                 "lesson_count": 20, "objective_count": 6, "source_tokens": 20000}}

DECISION_LOG_VERSION = 1


class DecisionLogRecord(BaseModel):
    """One line of the decision log; it joins the attempt logs by `decision.decision_id`."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = DECISION_LOG_VERSION
    timestamp: datetime
    replica: str | None = None  # serve.replica of the process that decided (None before it)
    endpoint: Literal["route", "route_batch"]
    task: dict[str, Any]
    decision: Decision
    shadow: Decision | None = None
