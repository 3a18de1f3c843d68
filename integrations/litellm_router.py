"""A LiteLLM routing plugin: `litellm.Router` asks the stage5 router which tier to call.

    pip install -e '.[litellm]'

    router = litellm.Router(model_list=[  # one model group, one deployment per tier
        {"model_name": "stage5", "litellm_params": {"model": "openai/openai/gpt-oss-20b",
         "api_base": ..., "api_key": ...}, "model_info": {"id": "gpt-oss-20b"}}, ...])
    strategy = Stage5RoutingStrategy(router, HttpRouterClient("http://127.0.0.1:8080"))
    router.set_custom_routing_strategy(strategy)
    answer = await ladder_completion(router, strategy, messages, stage5={...}, gate=...)

Each deployment names its tier in `model_info.id` (or `model_info.stage5_tier`). On every
call the strategy reads `metadata["stage5"]` of the request: a plain request is routed (the
router's `route`, from `field`/`analysis`/`brief` or from the messages alone), a request
carrying `escalate` (the previous attempt's gate result) takes the router's next step. The
decision of each request is kept under its `request_id`, so `ladder_completion` can gate an
answer and ask again until the router accepts: escalation works through LiteLLM.
LiteLLM keeps its own retries and cooldowns for provider errors.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import

from litellm.router import CustomRoutingStrategyBase

Gate = Callable[[str], Awaitable[tuple[float | None, bool]] | tuple[float | None, bool]]


class Stage5RoutingStrategy(CustomRoutingStrategyBase):
    """Picks the deployment of the tier the stage5 router chooses."""

    def __init__(self, llm_router: Any, client: Any, keep: int = 10_000) -> None:
        self.llm_router = llm_router
        self.client = client  # HttpRouterClient or LocalRouterClient
        self.keep = keep
        self._steps: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def deployment(self, tier: str) -> dict[str, Any]:
        for d in self.llm_router.model_list:
            info = d.get("model_info") or {}
            if tier in (info.get("stage5_tier"), info.get("id")):
                return d
        raise ValueError(f"no deployment in the litellm model_list has model_info.id (or "
                         f"stage5_tier) {tier!r}; add one per tier")

    def step(self, request_id: str) -> dict[str, Any] | None:
        """The router's answer (decision or escalation step) for a request id."""
        with self._lock:
            return self._steps.get(request_id)

    def _remember(self, request_id: str, step: dict[str, Any]) -> None:
        with self._lock:
            self._steps[request_id] = step
            while len(self._steps) > self.keep:
                self._steps.popitem(last=False)

    def pick(self, messages: Any, request_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
        meta = (request_kwargs or {}).get("metadata") or {}
        s5 = dict(meta.get("stage5") or {})
        request_id = str(s5.get("request_id") or uuid.uuid4().hex)
        if s5.get("escalate"):
            step = self.client.escalate(**s5["escalate"])
            tier = step["next_tier"]
        else:
            step = self.client.route(task_of(messages, s5))
            tier = step["start_tier"]
        self._remember(request_id, {**step, "tier": tier})
        return self.deployment(tier)

    async def async_get_available_deployment(self, model: str, messages: Any = None,
                                             input: Any = None, specific_deployment: Any = False,
                                             request_kwargs: Any = None) -> dict[str, Any]:
        import asyncio

        return await asyncio.to_thread(self.pick, messages, request_kwargs)

    def get_available_deployment(self, model: str, messages: Any = None, input: Any = None,
                                 specific_deployment: Any = False,
                                 request_kwargs: Any = None) -> dict[str, Any]:
        return self.pick(messages, request_kwargs)


def task_of(messages: Any, s5: Mapping[str, Any]) -> dict[str, Any]:
    """The routing task: the stage5 keys, or the messages' size alone."""
    text = "\n".join(str(m.get("content", "")) for m in messages or [])
    task = {"field": s5.get("field") or "unspecified",
            "prompt_tokens": math.ceil(len(text) / 4)}
    for key in ("analysis", "brief", "expected_output_tokens"):
        if s5.get(key) is not None:
            task[key] = s5[key]
    return task


async def ladder_completion(llm_router: Any, strategy: Stage5RoutingStrategy,
                            messages: list[dict[str, Any]], stage5: Mapping[str, Any],
                            gate: Gate, max_attempts: int = 8, model: str = "stage5",
                            **kwargs: Any) -> tuple[Any, list[str]]:
    """Call through LiteLLM, gate each answer, and follow the router's ladder until it
    accepts (or flags): (the last response, the tiers tried)."""
    request_id, escalate, tiers = uuid.uuid4().hex, None, []
    response = None
    for _ in range(max_attempts):
        block = {**stage5, "request_id": request_id, "escalate": escalate}
        response = await llm_router.acompletion(model=model, messages=messages,
                                                metadata={"stage5": block}, **kwargs)
        step = strategy.step(request_id)
        tiers.append(step["tier"])
        verdict = gate(response.choices[0].message.content or "")
        similarity, schema_valid = await verdict if hasattr(verdict, "__await__") else verdict
        nxt = strategy.client.escalate(
            decision_id=step.get("decision_id"), tier=step["tier"], similarity=similarity,
            schema_valid=schema_valid, retry_count=step.get("retry_count", 0),
            field=stage5.get("field"))
        if nxt["action"] in ("accept", "flag_for_review"):
            return response, tiers
        escalate = {"decision_id": step.get("decision_id"), "tier": step["tier"],
                    "similarity": similarity, "schema_valid": schema_valid,
                    "retry_count": step.get("retry_count", 0), "field": stage5.get("field")}
    return response, tiers
