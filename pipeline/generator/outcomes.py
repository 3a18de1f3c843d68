"""What a provider call's outcome adds to the attempt log, and the run's id.

Kept beside the runner so the runner only calls them: the attempt record's provider fields
(deployment, response model, finish reason, billed usage, whether usage was estimated, how
many provider failures the client absorbed), the logged task id (the task's id plus the
run's, so logs of several runs train together), and the ladder step a provider outcome
takes instead of the gate's (`providers.provider_step`).
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.generator.llm_client import CallResult
from pipeline.generator.providers import ProviderRejected, TierUnavailable, provider_step
from router_model.contract import PROVIDER_OUTCOMES

__all__ = ["PROVIDER_OUTCOMES", "ProviderRejected", "TierUnavailable", "logged_task_id",
           "new_run_id", "provider_fields", "provider_step"]


def new_run_id() -> str:
    """A short random id for one run of a course (kept in its state file, so a resumed run
    keeps it; `generate.fresh=true` or another out_dir starts a new one)."""
    return uuid.uuid4().hex[:10]


def logged_task_id(task_id: str, run_id: str | None) -> str:
    """The task id the attempt log carries: unique per run. The prompt keeps the plain id
    (the provider simulator keys its hidden task effects by it, so runs stay comparable)."""
    return f"{task_id}@{run_id}" if run_id else task_id


def provider_fields(call: CallResult, run_id: str | None) -> dict[str, Any]:
    """The attempt record's issue-28 fields for one call outcome."""
    answered = call.error_kind is None or call.content is not None
    return {"run_id": run_id, "deployment": call.provider,
            "response_model": call.response_model, "finish_reason": call.finish_reason,
            "usage_prompt_tokens": call.prompt_tokens if answered else None,
            "usage_estimated": call.usage_estimated if answered else None,
            "provider_retries": call.retries}
