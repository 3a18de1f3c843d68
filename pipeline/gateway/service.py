"""One gateway request through the ladder: route, call the tier, judge, escalate; every
attempt appended to the attempt log in the contract, as the generator writes it.

The decision comes from the router service in the same process (so it lands in the same
decision log as router-serve's), the calls from the generator's LLM client (retries,
deployments, cooldowns, streaming, usage checks: provider errors never climb the ladder),
the verdicts from `judge.Judge`, and the next step from the service's ladder.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.gateway.judge import Judge, Verdict
from pipeline.generator.llm_client import CallResult, LLMClient
from pipeline.generator.outcomes import PROVIDER_OUTCOMES, provider_fields, provider_step
from pipeline.generator.providers import Endpoint
from router_model.config import Catalog, check
from router_model.contract import AttemptRecord
from router_model.serve.core import RouterService
from router_model.serve.openai_route import decide
from router_model.tracing import gate_span, judged

# What the gateway passes from the client's request to the provider (the rest is its own).
PASSED_THROUGH = ("messages", "temperature", "top_p", "seed", "stop", "response_format",
                  "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
                  "reasoning_effort", "logit_bias", "user")


@dataclass(frozen=True)
class GatewaySettings:
    """`gateway` in config (conf/gateway/default.yaml holds the values)."""

    model_name: str
    max_attempts: int
    attempt_log: str | None
    course_id: str
    embedding_cache: str | None

    def __post_init__(self) -> None:
        check(self.max_attempts >= 1, "gateway.max_attempts", self.max_attempts,
              "must be >= 1")


@dataclass
class Outcome:
    """What the gateway answers: the accepted (or best) attempt and the path to it."""

    decision: dict[str, Any]
    call: CallResult
    tier: str
    tiers: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flagged: bool = False
    verdict: Verdict | None = None
    gate_ms: float = 0.0  # time spent judging (the similarity gate's MiniLM, mostly)


class AttemptLog:
    """The gateway's attempt log: one JSONL file, one line per attempt, appended whole."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: AttemptRecord) -> None:
        if self.path is None:
            return
        line = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class Gateway:
    """Routes, calls, judges and escalates one chat-completions request at a time."""

    def __init__(self, service: RouterService, llm: LLMClient, settings: GatewaySettings,
                 judge: Judge | None = None) -> None:
        self.service = service
        self.catalog: Catalog = service.catalog
        self.llm = llm
        self.settings = settings
        log = settings.attempt_log
        if log and "{replica}" in log:
            log = log.replace("{replica}", str(service.settings.replica))
        self.attempts = AttemptLog(log)
        self.judge = judge or Judge(service.gate, settings.embedding_cache, self.catalog.gate)

    def body_for(self, tier: str, request: dict[str, Any]) -> Any:
        """The provider body for each deployment: the client's request on the tier's model,
        with the tier's `request` settings (its token-limit name, reasoning effort, extra
        body) where the client set none."""
        req = self.catalog.tiers[tier].request
        limit = request.get("max_completion_tokens") or request.get("max_tokens")

        def body(ep: Endpoint) -> dict[str, Any]:
            out = {k: request[k] for k in PASSED_THROUGH if k in request}
            out["model"] = ep.model
            if limit:
                out[req.max_tokens_param] = limit
            if req.reasoning_effort and "reasoning_effort" not in out:
                out["reasoning_effort"] = req.reasoning_effort
            if req.extra_body:
                out["extra_body"] = dict(req.extra_body)
            return out
        return body

    async def complete(self, request: dict[str, Any], task: dict[str, Any],
                       info: dict[str, Any]) -> Outcome:
        """The ladder for one request (raises ProviderRejected / TierUnavailable)."""
        decision = decide(self.service, task, info.get("lam"))
        tier, retry, reason = decision["start_tier"], 0, None
        best: Outcome | None = None
        out = Outcome(decision=decision, call=None, tier=tier)  # type: ignore[arg-type]
        for attempt in range(1, self.settings.max_attempts + 1):
            call = await self.llm.complete_bodies(tier, self.body_for(tier, request))
            verdict = await self._judge(call, request, info, task, tier, out)
            self._log(task, decision, tier, attempt, call, verdict, reason)
            out.tiers.append(tier)
            out.cost_usd += call.cost_usd
            out.prompt_tokens += call.prompt_tokens
            out.completion_tokens += call.completion_tokens
            if call.error_kind in PROVIDER_OUTCOMES:
                step = provider_step(self.catalog, tier, call.error_kind, call.error)
            elif verdict.passed:
                out.call, out.tier, out.verdict = call, tier, verdict
                return out
            else:
                if call.content is not None and (best is None or (verdict.similarity or 0) > (
                        best.verdict.similarity or 0)):
                    best = Outcome(decision, call, tier, verdict=verdict)
                step = self.service.escalate(
                    decision_id=decision["decision_id"], tier=tier,
                    similarity=verdict.similarity, schema_valid=verdict.schema_valid,
                    error_kind=call.error_kind or verdict.kind, retry_count=retry,
                    field=task["field"])
                if step["action"] == "flag_for_review":
                    break
            tier, retry, reason = step["next_tier"], step["retry_count"], step["reason"]
        keep = best or Outcome(decision, call, tier, verdict=verdict)
        out.call, out.tier, out.verdict, out.flagged = keep.call, keep.tier, keep.verdict, True
        return out

    async def _judge(self, call: CallResult, request: dict[str, Any], info: dict[str, Any],
                     task: dict[str, Any], tier: str, out: Outcome) -> Verdict:
        if call.error_kind:
            return Verdict(None, False, False, call.error_kind, gated=True)
        started = time.perf_counter()
        with gate_span(tier) as span:
            language = (task.get("analysis") or {}).get("language")
            verdict = await self.judge.judge(call.content, request.get("response_format"),
                                             info.get("reference"), task["field"], language)
            judged(span, verdict.similarity, verdict.schema_valid, verdict.kind)
        out.gate_ms += (time.perf_counter() - started) * 1e3
        return verdict

    def _log(self, task: dict[str, Any], decision: dict[str, Any], tier: str, attempt: int,
             call: CallResult, verdict: Verdict, reason: str | None) -> None:
        spec = self.catalog.fields.get(task["field"])
        t = self.catalog.tiers[tier]
        self.attempts.append(AttemptRecord(
            timestamp=datetime.now(UTC), course_id=task.get("course_id") or
            self.settings.course_id, task_id=f"{task.get('task_id') or 'gw'}@"
            f"{decision['decision_id']}", field=task["field"],
            phase=spec.phase if spec else 3, attempt=attempt, tier=tier, model=t.model_id,
            provider=call.provider, prompt_tokens=task["prompt_tokens"],
            completion_tokens=call.completion_tokens, context_tokens=task.get(
                "context_tokens", 0), analysis=task.get("analysis") or {},
            brief=task.get("brief"), similarity=verdict.similarity,
            schema_valid=verdict.schema_valid, passed=verdict.passed,
            error_kind=verdict.kind, cost_usd=call.cost_usd,
            latency_ms=round(call.latency_ms, 1), decision_id=decision["decision_id"],
            router_version=decision["router_version"], start_source=decision["source"],
            predicted_pass_prob=(decision.get("pass_probabilities") or {}).get(tier),
            propensity=decision["propensity"], escalation_reason=reason,
            **provider_fields(call, None)))
